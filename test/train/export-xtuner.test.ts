// exportXtuner: the XTuner config it writes, run by python3 with stand-in modules for everything
// it imports (XTuner, mmengine, torch, transformers, peft and the release's mg_llava cannot be
// installed here), compared with the release's own config for the same stage; the data files;
// the one-line errors.
//
// The reference, test/train/data/xtuner-release-configs.json, was recorded once from
// PhoenixZ810/MG-LLaVA (the commit is in the file): the release's
// mg_llava/config/vicuna/fuse_more_vicuna7b_clip_L_14_336_{pretrain,sft}_padding.py, with its
// placeholder paths and its numbers replaced by this test's (the exact text substitutions are
// listed in the file, each matching once), run through PRELUDE below (python3 -c PRELUDE FILE),
// then the SFT config's evaluation-benchmark entries (val_*/test_*) removed: the export has no
// benchmarks and leaves them out, which mmengine reads as "no validation".

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, TINY } from '../helpers/fixtures.js';
import { tempDir } from '../weights/torch-builders.js';
import { MAX_LENGTH } from '../../src/train/labels.js';
import { XtunerExportOptions, exportXtuner } from '../../src/train/export-xtuner.js';
import { assertInputError } from '../helpers/errors.js';

/**
 * Runs a config file (argv[1]) with inert stand-ins for exactly the modules and names the
 * release's configs import (any other import fails) and prints the config dict as mmengine's
 * lazy-import Config keeps it (top-level variables less the imported names) as JSON: referenced
 * names as {"$ref": "module.name"}, tuples as {"$tuple": [...]}.
 */
const PRELUDE = `import ast, json, sys, types

# Every module and name the release's MG-LLaVA configs import (mg_llava/config/*/fuse_*_padding.py),
# as inert stand-ins; any other import fails.
RELEASE_IMPORTS = {
    'torch': [],
    'torch.optim': ['AdamW'],
    'mmengine.dataset': ['DefaultSampler'],
    'mmengine.hooks': ['CheckpointHook', 'DistSamplerSeedHook', 'IterTimerHook', 'LoggerHook', 'ParamSchedulerHook'],
    'mmengine.optim': ['AmpOptimWrapper', 'CosineAnnealingLR', 'LinearLR'],
    'peft': ['LoraConfig'],
    'transformers': ['AutoModelForCausalLM', 'AutoTokenizer', 'BitsAndBytesConfig', 'CLIPImageProcessor', 'CLIPVisionModel'],
    'xtuner.dataset': ['ConcatDataset'],
    'xtuner.dataset.collate_fns': ['mm_collate_fn'],
    'xtuner.dataset.map_fns': ['llava_map_fn', 'template_map_fn_factory'],
    'xtuner.dataset.samplers': ['LengthGroupedSampler'],
    'xtuner.dataset.evaluation': ['MMEDataset', 'MultipleChoiceDataset', 'POPEDataset', 'HallusionDataset', 'TextVQADataset',
                                  'GeneralVQADataset', 'VQADataset', 'MathDataset', 'MMVPDataset'],
    'xtuner.engine.hooks': ['DatasetInfoHook', 'EvaluateChatHook'],
    'xtuner.engine.runner': ['TrainLoop', 'ValLoop', 'TestLoop'],
    'xtuner.utils': ['PROMPT_TEMPLATE'],
    'mg_llava.evaluation': ['MGLLaVAProxyEvalDataset', 'GQADataset', 'VQAv2Dataset'],
    'mg_llava.module': ['MultiFuseObjectLLaVAModel', 'MGLLaVADataset', 'OpenCLIPVisionTower'],
}


class Ref:
    """A name the config refers to (a type, a function, PROMPT_TEMPLATE.vicuna); never called."""

    def __init__(self, name):
        self._name = name

    def __getattr__(self, attr):
        if attr.startswith('__'):
            raise AttributeError(attr)
        return Ref(self._name + '.' + attr)

    def __call__(self, *args, **kwargs):
        raise TypeError('the config calls ' + self._name + '; configs only name their types')


for module, names in RELEASE_IMPORTS.items():
    parts = module.split('.')
    for i in range(1, len(parts) + 1):
        package = sys.modules.setdefault('.'.join(parts[:i]), types.ModuleType('.'.join(parts[:i])))
        package.__path__ = []  # a package: imports of its other submodules reach RefuseImports
    for name in names:
        setattr(sys.modules[module], name, Ref(module + '.' + name))


class RefuseImports:
    def find_spec(self, name, path=None, target=None):
        raise ImportError(name + ' is not imported by the release configs')


sys.meta_path.insert(0, RefuseImports())

path = sys.argv[1]
with open(path, encoding='utf-8') as f:
    source = f.read()
# mmengine's lazy-import configs drop the imported names from the config dict.
imported = set()
for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.ImportFrom):
        imported |= {a.asname or a.name for a in node.names}
    elif isinstance(node, ast.Import):
        imported |= {(a.asname or a.name).split('.')[0] for a in node.names}
scope = {'__name__': '__config__', '__file__': path}
exec(compile(source, path, 'exec'), scope)


def encode(v):
    if isinstance(v, Ref):
        return {'$ref': v._name}
    if isinstance(v, tuple):
        return {'$tuple': [encode(x) for x in v]}
    if isinstance(v, list):
        return [encode(x) for x in v]
    if isinstance(v, dict):
        if not all(isinstance(k, str) for k in v):
            raise TypeError('non-string dict key in the config')
        return {k: encode(x) for k, x in v.items()}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise TypeError('unexpected value in the config: ' + type(v).__name__)


config = {k: encode(v) for k, v in scope.items()
          if not k.startswith('__') and k not in imported and not isinstance(v, types.ModuleType)}
print(json.dumps(config, ensure_ascii=False))
`;

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function evalConfig(path: string): { [key: string]: Json } {
  try {
    return JSON.parse(execFileSync('python3', ['-c', PRELUDE, path], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })) as { [key: string]: Json };
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    if (err.code === 'ENOENT') assert.fail('python3 is needed for this test (it runs the exported XTuner config with stand-in modules) and was not found on PATH; install Python 3');
    assert.fail(`python3 could not run ${path}:\n${err.stderr ?? err.message}`);
  }
}

interface Recorded {
  release_commit: string;
  pretrain: { config: { [key: string]: Json } };
  sft: { config: { [key: string]: Json } };
}
const RECORDED = JSON.parse(readFileSync(join(ROOT, 'test', 'train', 'data', 'xtuner-release-configs.json'), 'utf8')) as Recorded;

/** Data: an image sample with a string id, one with an int id, a text-only one. */
function dataset(dir: string): { data: string; images: string; boxes: string } {
  const images = join(dir, 'images');
  mkdirSync(join(images, 'coco'), { recursive: true });
  writeFileSync(join(images, 'a.jpg'), 'not decoded by the export');
  writeFileSync(join(images, 'coco', 'b.jpg'), 'not decoded by the export');
  const conv = (q: string, a: string) => [{ from: 'human', value: q }, { from: 'gpt', value: a }];
  const data = join(dir, 'llava.json');
  writeFileSync(data, JSON.stringify([
    { id: 'a', image: 'a.jpg', conversations: conv('<image>\nWhat is it?', 'A cat.') },
    { id: 2, image: 'coco/b.jpg', conversations: conv('Where?\n<image>', 'On a mat.') },
    { id: 'c', conversations: conv('Hello', 'Hi.') },
  ]));
  const boxes = join(dir, 'boxes.json');
  writeFileSync(boxes, JSON.stringify([
    { id: 'a', boxes: [[1, 2, 30, 40]], labels: ['cat'], scores: [0.9] },
    { id: 2, boxes: [[0, 0, 5, 5], [2, 2, 9, 9]], labels: ['mat', 'cat'], scores: [0.5, 0.25] },
    { id: 'unused', boxes: [], labels: [], scores: [] },
  ]));
  return { data, images, boxes };
}

const STAGE1 = { batchSize: 4, gradAccum: 2, epochs: 2, lr: 0.0002, weightDecay: 0.01, maxGradNorm: 0.5, warmupRatio: 0.05, saveEvery: 50, seed: 7 };
const STAGE2 = { batchSize: 2, gradAccum: 4, epochs: 1, lr: 0.00001, weightDecay: 0, maxGradNorm: 2, warmupRatio: 0.1, saveEvery: 20, seed: 11 };
const PRETRAINED = join(TINY, 'mgllava', 'iter_1.pth');

function options(stage: 1 | 2, extra: Partial<XtunerExportOptions> = {}): XtunerExportOptions {
  const dir = tempDir();
  const d = dataset(dir);
  return {
    out: join(dir, 'export'), stage, llm: join(TINY, 'llm'), visualEncoder: join(TINY, 'clip'), visualEncoderAux: join(TINY, 'convnext'),
    template: 'vicuna', data: d.data, imageFolder: d.images, boxes: d.boxes,
    ...(stage === 1 ? STAGE1 : { ...STAGE2, pretrainedCheckpoint: PRETRAINED }),
    ...extra,
  };
}

/** Our paths as the recording's tokens. */
function tokenized(v: Json, o: XtunerExportOptions): Json {
  const tokens: [string, string][] = [
    [o.out, '<OUT>'], [o.imageFolder, '<IMAGES>'], [join(TINY, 'llm'), '<LLM>'], [join(TINY, 'clip'), '<CLIP>'],
    [join(TINY, 'convnext'), '<CONVNEXT>'], [PRETRAINED, '<PRETRAINED>'],
  ];
  if (typeof v === 'string') {
    for (const [p, t] of tokens) if (v === p || v.startsWith(`${p}/`)) return t + v.slice(p.length);
    return v;
  }
  if (Array.isArray(v)) return v.map((x) => tokenized(x, o));
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, tokenized(x, o)]));
  return v;
}

function exported(o: XtunerExportOptions): { [key: string]: Json } {
  const r = exportXtuner(o);
  return tokenized(evalConfig(r.config), o) as { [key: string]: Json };
}

function at(cfg: Json, path: string): Json {
  let v: Json = cfg;
  for (const k of path.split('.')) {
    assert.ok(v !== null && typeof v === 'object', `${path}: ${k} of a non-container`);
    v = Array.isArray(v) ? v[Number(k)]! : (v as { [key: string]: Json })[k]!;
    assert.notEqual(v, undefined, `${path}: no ${k}`);
  }
  return v;
}

const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

/** Where each setting lands in the release's config (through its variables), epoch form. */
function where(s: typeof STAGE1): [string, number, string[]][] {
  return [
    ['lr', s.lr, ['lr', 'optim_wrapper.optimizer.lr']],
    ['batch size', s.batchSize, ['batch_size', 'train_dataloader.batch_size']],
    ['grad accumulation', s.gradAccum, ['accumulative_counts', 'optim_wrapper.accumulative_counts']],
    ['max_length', MAX_LENGTH, ['max_length', 'llava_dataset.max_length', 'train_dataloader.dataset.max_length']],
    ['warmup ratio', s.warmupRatio, ['warmup_ratio']],
    ['warmup end', s.warmupRatio * s.epochs, ['param_scheduler.0.end', 'param_scheduler.1.begin']],
    ['max-norm', s.maxGradNorm, ['max_norm', 'optim_wrapper.clip_grad.max_norm']],
    ['weight decay', s.weightDecay, ['weight_decay', 'optim_wrapper.optimizer.weight_decay']],
    ['epochs', s.epochs, ['max_epochs', 'train_cfg.max_epochs', 'param_scheduler.1.end']],
    ['save steps', s.saveEvery, ['save_steps', 'default_hooks.checkpoint.interval', 'train_cfg.val_interval']],
    ['seed', s.seed, ['randomness.seed']],
  ];
}

for (const [stage, form, s] of [[1, 'pretrain', STAGE1], [2, 'sft', STAGE2]] as const) {
  test(`stage ${stage}: the config evaluates to the release's ${form} config with our paths and numbers`, () => {
    const ours = exported(options(stage));
    const release = RECORDED[form].config;
    assert.deepEqual(ours, release);
    // Our numbers sit where the release's config has its own (the recording got them through the
    // release's variables; ours must match there, and equal the options).
    for (const [what, value, paths] of where(s)) {
      for (const p of paths) {
        assert.equal(at(release, p), value, `release ${what} at ${p}`);
        assert.equal(at(ours, p), value, `our ${what} at ${p}`);
      }
    }
    assert.equal(at(ours, 'max_length'), 1472);
    assert.equal(at(ours, 'train_dataloader.dataset.type.$ref'), 'mg_llava.module.MGLLaVADataset');
    assert.equal(at(ours, 'model.type.$ref'), 'mg_llava.module.MultiFuseObjectLLaVAModel');
    assert.equal(at(ours, 'train_dataloader.collate_fn.type.$ref'), 'xtuner.dataset.collate_fns.mm_collate_fn');
    assert.equal(at(ours, 'model.freeze_llm'), stage === 1);
  });
}

test('maxSteps: max_iters and iteration-based schedules in place of epochs, all else as the release', () => {
  const ours = exported(options(1, { maxSteps: 300 }));
  const want = clone(RECORDED.pretrain.config);
  delete want['max_epochs'];
  want['max_iters'] = 300;
  want['train_cfg'] = { type: { $ref: 'xtuner.engine.runner.TrainLoop' }, max_iters: 300, val_interval: STAGE1.saveEvery };
  const end = STAGE1.warmupRatio * 300;
  want['param_scheduler'] = [
    { type: { $ref: 'mmengine.optim.LinearLR' }, start_factor: 1e-5, by_epoch: false, begin: 0, end },
    { type: { $ref: 'mmengine.optim.CosineAnnealingLR' }, eta_min: 0, by_epoch: false, begin: end, end: 300 },
  ];
  assert.deepEqual(ours, want);
});

test('LoRA: llm_lora=dict(type=LoraConfig, ...) on the release model class (it takes llm_lora), base LLM frozen', () => {
  // MultiFuseObjectLLaVAModel(*args, **kwargs) -> BoxLLaVAModel -> xtuner LLaVAModel.__init__(..., llm_lora=None, ...)
  const ours = exported(options(2, { lora: { r: 8, alpha: 16 } }));
  const want = clone(RECORDED.sft.config);
  const model = want['model'] as { [key: string]: Json };
  model['freeze_llm'] = true;
  model['llm_lora'] = { type: { $ref: 'peft.LoraConfig' }, r: 8, lora_alpha: 16, lora_dropout: 0, bias: 'none', task_type: 'CAUSAL_LM' };
  assert.deepEqual(ours, want);
  // Stage 1 with LoRA imports peft itself (the release's pretrain form does not).
  assert.deepEqual(at(exported(options(1, { lora: { r: 4, alpha: 8 } })), 'model.llm_lora.r'), 4);
});

test('other templates and hub ids go where the release names them', () => {
  for (const template of ['llama3_chat', 'phi3_chat', 'qwen_chat']) {
    const ours = exported(options(2, { template, llm: 'meta-llama/Meta-Llama-3-8B-Instruct' }));
    const ref = { $ref: `xtuner.utils.PROMPT_TEMPLATE.${template}` };
    for (const p of ['prompt_template', 'model.template', 'llava_dataset.template_map_fn.template']) assert.deepEqual(at(ours, p), ref, p);
    for (const p of ['llm_name_or_path', 'tokenizer.pretrained_model_name_or_path', 'model.llm.pretrained_model_name_or_path']) {
      assert.equal(at(ours, p), 'meta-llama/Meta-Llama-3-8B-Instruct', p);
    }
  }
});

test('the stand-ins refuse an import the release does not make', () => {
  const path = join(tempDir(), 'bad.py');
  writeFileSync(path, 'from xtuner.model import LLaVAModel\nmodel = dict(type=LLaVAModel)\n');
  assert.throws(() => evalConfig(path), /xtuner\.model is not imported by the release configs/);
});

test('the folder: data with string ids, a box entry per image sample, images left in place, README with the command', () => {
  const o = options(1);
  const r = exportXtuner(o);
  assert.deepEqual(readdirSync(r.dir).sort(), ['README.txt', 'boxes.json', 'data.json', 'fuse_more_mgllava_clip_L_14_336_pretrain_padding.py']);
  const data = JSON.parse(readFileSync(r.data, 'utf8')) as { id: unknown; image?: string }[];
  assert.deepEqual(data.map((d) => d.id), ['a', '2', 'c']);
  assert.deepEqual(data.map((d) => d.image), ['a.jpg', 'coco/b.jpg', undefined]);
  assert.deepEqual(JSON.parse(readFileSync(r.boxes, 'utf8')), [
    { id: 'a', boxes: [[1, 2, 30, 40]], labels: ['cat'], scores: [0.9] },
    { id: '2', boxes: [[0, 0, 5, 5], [2, 2, 9, 9]], labels: ['mat', 'cat'], scores: [0.5, 0.25] },
  ]);
  assert.equal(r.samples, 3);
  assert.equal(r.emptyBoxEntries, 0);
  const readme = readFileSync(r.readme, 'utf8');
  assert.ok(readme.includes(`NPROC_PER_NODE=8 xtuner train ${r.config} --deepspeed deepspeed_zero2 --seed 7 --work-dir ${join(r.dir, 'work_dirs')}`), readme);
  assert.equal(r.command, `NPROC_PER_NODE=8 xtuner train ${r.config} --deepspeed deepspeed_zero2 --seed 7 --work-dir ${join(r.dir, 'work_dirs')}`);
  assert.match(readme, /open_clip_pytorch_model\.bin/); // the fixture ConvNeXt has only safetensors
  // Without a box file: an empty entry per image sample (the release needs one per image).
  const nb = exportXtuner(options(2, { boxes: undefined }));
  assert.deepEqual(JSON.parse(readFileSync(nb.boxes, 'utf8')), [
    { id: 'a', boxes: [], labels: [], scores: [] },
    { id: '2', boxes: [], labels: [], scores: [] },
  ]);
  assert.equal(nb.emptyBoxEntries, 2);
  assert.ok(readdirSync(nb.dir).includes('fuse_more_mgllava_clip_L_14_336_sft_padding.py'));
});

test('bad input: one-line InputErrors naming the path, nothing written', () => {
  const esc = (p: string) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const o = options(1);
  mkdirSync(o.out);
  writeFileSync(join(o.out, 'x'), '');
  assertInputError(() => exportXtuner(o), new RegExp(`^${esc(o.out)}: already exists`));
  const missing = options(1);
  assertInputError(() => exportXtuner({ ...missing, data: join(missing.imageFolder, 'nope.json') }), /nope\.json: cannot read training data \(no such file\)/);
  const noBox = options(1);
  writeFileSync(noBox.boxes!, JSON.stringify([{ id: 'a', boxes: [], labels: [], scores: [] }]));
  assertInputError(() => exportXtuner(noBox), new RegExp(`^${esc(noBox.boxes!)}: sample 2: no box entry`));
  const badBox = options(1);
  writeFileSync(badBox.boxes!, JSON.stringify([{ id: 'a', boxes: [[5, 5, 1, 1]], labels: ['x'], scores: [1] }, { id: 2, boxes: [], labels: [], scores: [] }]));
  assertInputError(() => exportXtuner(badBox), /boxes\.json: sample a: boxes\[0\].*x1 < x0/);
  const noImage = options(1, { imageFolder: tempDir() });
  assertInputError(() => exportXtuner(noImage), /a\.jpg: image of sample a not found/);
  assertInputError(() => exportXtuner(options(2, { pretrainedCheckpoint: join(TINY, 'mgllava', 'model.safetensors') })), /model\.safetensors: XTuner loads pretrained_pth with torch\.load/);
  assertInputError(() => exportXtuner(options(2, { pretrainedCheckpoint: undefined })), /pretrainedCheckpoint is needed for stage 2/);
  assertInputError(() => exportXtuner(options(1, { maxGradNorm: 0 })), /maxGradNorm must be above 0/);
  assertInputError(() => exportXtuner(options(1, { template: 'llama2' })), /template "llama2" is not one of vicuna/);
  assertInputError(() => exportXtuner(options(1, { visualEncoderAux: join(TINY, 'clip') })), /clip: no open_clip_config\.json/);
  assertInputError(() => exportXtuner(options(1, { llm: './no/such/llm' })), /no\/such\/llm: not found \(llm/);
  assertInputError(() => exportXtuner(options(1, { batchSize: 0 })), /batchSize must be a positive integer/);
  // None of these left a folder or a temporary folder behind.
  for (const opt of [missing, noBox, badBox, noImage]) {
    assert.equal(existsSync(opt.out), false);
    assert.deepEqual(readdirSync(join(opt.out, '..')).filter((n) => n.includes('.tmp-')), []);
  }
});
