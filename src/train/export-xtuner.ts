// Hand a `mgllava train` run to the release's own stack for cluster-scale training: a folder with
// an XTuner config in the form of the release's mg_llava/config/*/fuse_more_*_{pretrain,sft}_padding.py
// (stage 1 -> pretrain form, stage 2 -> sft form), the data files as `mgllava train` reads them,
// and a README.txt with the command. The release trains with XTuner on mmengine:
// `python xtuner/tools/train.py CONFIG --seed 2024 --launcher slurm --deepspeed deepspeed_zero2`
// (script/train_pretrain.sh, train_sft.sh), i.e. `NPROC_PER_NODE=8 xtuner train CONFIG
// --deepspeed deepspeed_zero2 --seed 2024` with XTuner's launcher.
//
// Units: mmengine counts an iteration per dataloader batch of `batch_size` on each device and
// steps the schedule every iteration, as `mgllava train` does (src/train/trainer.ts), so maxSteps
// and saveEvery carry over as they are (max_iters, save_steps).

import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, rmdirSync, statSync, writeFileSync, readdirSync, mkdtempSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { InputError } from '../core/errors.js';
import { detectionsFromObject } from '../preprocess/boxes.js';
import { indexBoxEntries } from '../preprocess/box-index.js';
import { TEMPLATE_NAMES } from '../tokenizer/templates.js';

export interface XtunerExportOptions {
  /** The folder to write (must not exist, or be empty). */
  out: string;
  stage: 1 | 2;
  /** HF folder or hub id. */
  llm: string;
  /** HF CLIP folder or hub id. */
  visualEncoder: string;
  /** open_clip ConvNeXt folder (the release reads open_clip_config.json from it). */
  visualEncoderAux: string;
  /** XTuner PROMPT_TEMPLATE name: vicuna, llama3_chat, phi3_chat, qwen_chat. */
  template: string;
  /** LLaVA JSON list. */
  data: string;
  imageFolder: string;
  /** Box JSON list {id, boxes, labels, scores}; without it every image has no boxes. */
  boxes?: string;
  /** Stage 2 starts from stage 1's checkpoint: a torch file or a DeepSpeed folder. */
  pretrainedCheckpoint?: string;
  epochs?: number;
  /** Iterations in all (overrides epochs, as in `mgllava train`). */
  maxSteps?: number;
  batchSize: number;
  gradAccum: number;
  lr: number;
  warmupRatio: number;
  maxGradNorm: number;
  weightDecay: number;
  seed: number;
  /** Checkpoint every N iterations (default: the release's 500 / 1000). */
  saveEvery?: number;
  lora?: { r: number; alpha: number };
}

export interface XtunerExport {
  /** The folder written. */
  dir: string;
  config: string;
  data: string;
  boxes: string;
  readme: string;
  /** Samples in the data file; image samples that got an empty box entry. */
  samples: number;
  emptyBoxEntries: number;
  /** The training command (also in README.txt). */
  command: string;
}

const DATA_NAME = 'data.json';
const BOXES_NAME = 'boxes.json';
const README_NAME = 'README.txt';
/** The release names the ConvNeXt by this string; OpenCLIPVisionTower picks convnext_large_d_320 from 'large' and 'd-320'. */
const AUX_NAME = 'model_zoo/OpenAI/openclip-convnext-large-d-320-laion2B-s29B-b131K-ft-soup';

/** Write the export folder atomically: a temporary folder beside `out`, renamed into place. */
export function exportXtuner(opts: XtunerExportOptions): XtunerExport {
  const s = settings(opts);
  const out = resolve(opts.out);
  if (existsSync(out) && (!statSync(out).isDirectory() || readdirSync(out).length > 0)) {
    throw new InputError(`${out}: already exists; the export writes a new folder`, out);
  }
  const { dataText, boxesText, samples, emptyBoxEntries, firstImage } = convertData(opts, s.imageFolder);
  const names = { config: `fuse_more_mgllava_clip_L_14_336_${s.stage === 1 ? 'pretrain' : 'sft'}_padding.py` };
  const paths = { data: join(out, DATA_NAME), boxes: join(out, BOXES_NAME), config: join(out, names.config), readme: join(out, README_NAME) };
  const command = `NPROC_PER_NODE=8 xtuner train ${paths.config} --deepspeed deepspeed_zero2 --seed ${s.seed} --work-dir ${join(out, 'work_dirs')}`;
  const config = configText(s, { data: paths.data, boxes: paths.boxes, firstImage });
  const readme = readmeText(s, { out, config: paths.config, command, samples, emptyBoxEntries });

  mkdirSync(dirname(out), { recursive: true });
  const tmp = mkdtempSync(join(dirname(out), `.${basename(out)}.tmp-`));
  try {
    writeFileSync(join(tmp, DATA_NAME), dataText);
    writeFileSync(join(tmp, BOXES_NAME), boxesText);
    writeFileSync(join(tmp, names.config), config);
    writeFileSync(join(tmp, README_NAME), readme);
    if (existsSync(out)) rmdirSync(out); // empty (checked above)
    renameSync(tmp, out);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw new InputError(`${out}: cannot write the export (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, out);
  }
  return { dir: out, ...paths, samples, emptyBoxEntries, command };
}

/** Validated settings, paths resolved. */
interface Settings {
  stage: 1 | 2;
  llm: string;
  visualEncoder: string;
  visualEncoderAux: string;
  template: string;
  imageFolder: string;
  pretrained?: string;
  epochs: number;
  maxSteps?: number;
  batchSize: number;
  gradAccum: number;
  lr: number;
  warmupRatio: number;
  maxGradNorm: number;
  weightDecay: number;
  seed: number;
  saveSteps: number;
  /** The release keeps 2 checkpoints in pretraining, 1 in SFT (save_total_limit). */
  saveTotalLimit: number;
  lora?: { r: number; alpha: number };
  auxNotes: string[];
}

function settings(o: XtunerExportOptions): Settings {
  const bad = (what: string, why: string) => new InputError(`${what} ${why}`, what);
  const posInt = (v: number | undefined, what: string) => {
    if (v !== undefined && !(Number.isInteger(v) && v > 0)) throw bad(what, `must be a positive integer, got ${v}`);
    return v;
  };
  const finite = (v: number, what: string, ok: (x: number) => boolean, range: string) => {
    if (!(Number.isFinite(v) && ok(v))) throw bad(what, `must be ${range}, got ${v}`);
    return v;
  };
  if (o.stage !== 1 && o.stage !== 2) throw bad('stage', `must be 1 or 2, got ${String(o.stage)}`);
  if (!TEMPLATE_NAMES.includes(o.template)) throw bad('template', `"${o.template}" is not one of ${TEMPLATE_NAMES.join(', ')}`);
  // xtuner/tools/train.py hands DeepSpeed gradient_clipping 1.0 when the config has no clip_grad,
  // and mmengine would clip to 0 with max_norm 0: "no clipping" has no XTuner spelling.
  finite(o.maxGradNorm, 'maxGradNorm', (x) => x > 0, 'above 0 (the release always clips; XTuner cannot express no clipping)');
  if (o.lora) {
    posInt(o.lora.r, 'lora.r');
    finite(o.lora.alpha, 'lora.alpha', (x) => x > 0, 'above 0');
  }
  const aux = resolve(o.visualEncoderAux);
  // OpenCLIPVisionTower.__init__ opens <vision_tower_path>/open_clip_config.json, load_model
  // <vision_tower_path>/open_clip_pytorch_model.bin.
  if (!existsSync(join(aux, 'open_clip_config.json'))) throw new InputError(`${aux}: no open_clip_config.json (visualEncoderAux must be an open_clip ConvNeXt folder)`, aux);
  const auxNotes: string[] = [];
  if (!existsSync(join(aux, 'open_clip_pytorch_model.bin'))) auxNotes.push(`${aux} has no open_clip_pytorch_model.bin, the file the release's OpenCLIPVisionTower loads; put it there before training`);
  const timm = readTimmName(aux);
  if (timm !== 'convnext_large') auxNotes.push(`${aux} is a ${timm ?? 'ConvNeXt of unknown kind'}; the release always builds convnext_large_d_320 (its fusion expects 1536 channels)`);
  const imageFolder = resolve(o.imageFolder);
  if (!existsSync(imageFolder) || !statSync(imageFolder).isDirectory()) throw new InputError(`${imageFolder}: image folder not found`, imageFolder);
  let pretrained: string | undefined;
  if (o.stage === 2) {
    if (!o.pretrainedCheckpoint) throw bad('pretrainedCheckpoint', 'is needed for stage 2 (the release starts SFT from the stage-1 checkpoint, pretrained_pth)');
    pretrained = resolve(o.pretrainedCheckpoint);
    if (!existsSync(pretrained)) throw new InputError(`${pretrained}: pretrained checkpoint not found`, pretrained);
    // xtuner.model.utils.guess_load_checkpoint: a file goes to torch.load, a folder to DeepSpeed's
    // get_fp32_state_dict_from_zero_checkpoint; safetensors is neither.
    const isDir = statSync(pretrained).isDirectory();
    if (/\.safetensors$/.test(pretrained) || (isDir && existsSync(join(pretrained, 'model.safetensors')))) {
      throw new InputError(`${pretrained}: XTuner loads pretrained_pth with torch.load or as a DeepSpeed folder, not safetensors; give a .pth checkpoint (e.g. the stage-1 XTuner run's iter_N.pth)`, pretrained);
    }
  } else if (o.pretrainedCheckpoint) {
    throw bad('pretrainedCheckpoint', 'is for stage 2 (the release pretrains from the base models)');
  }
  return {
    stage: o.stage,
    llm: modelRef(o.llm, 'llm'),
    visualEncoder: modelRef(o.visualEncoder, 'visualEncoder'),
    visualEncoderAux: aux,
    template: o.template,
    imageFolder,
    pretrained,
    epochs: o.epochs === undefined ? 1 : finite(o.epochs, 'epochs', (x) => x > 0, 'above 0'),
    maxSteps: posInt(o.maxSteps, 'maxSteps'),
    batchSize: posInt(o.batchSize, 'batchSize')!,
    gradAccum: posInt(o.gradAccum, 'gradAccum')!,
    lr: finite(o.lr, 'lr', (x) => x > 0, 'above 0'),
    warmupRatio: finite(o.warmupRatio, 'warmupRatio', (x) => x >= 0 && x < 1, 'in [0, 1)'),
    maxGradNorm: o.maxGradNorm,
    weightDecay: finite(o.weightDecay, 'weightDecay', (x) => x >= 0, 'at least 0'),
    seed: finite(o.seed, 'seed', (x) => Number.isInteger(x) && x >= 0 && x < 2 ** 32, 'an integer in [0, 2^32)'),
    saveSteps: posInt(o.saveEvery, 'saveEvery') ?? (o.stage === 1 ? 500 : 1000),
    saveTotalLimit: o.stage === 1 ? 2 : 1,
    lora: o.lora,
    auxNotes,
  };
}

/** A local folder (absolute path) or a Hugging Face hub id `owner/name` as from_pretrained takes it. */
function modelRef(p: string, what: string): string {
  if (existsSync(p)) return resolve(p);
  if (/^[A-Za-z0-9][\w.-]*\/[\w.-]+$/.test(p)) return p;
  throw new InputError(`${p}: not found (${what}: a folder or a hub id owner/name)`, p);
}

function readTimmName(aux: string): string | undefined {
  try {
    const cfg = JSON.parse(readFileSync(join(aux, 'open_clip_config.json'), 'utf8')) as { model_cfg?: { vision_cfg?: { timm_model_name?: unknown } } };
    const n = cfg.model_cfg?.vision_cfg?.timm_model_name;
    return typeof n === 'string' ? n : undefined;
  } catch {
    return undefined;
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function readJson(path: string, what: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new InputError(`${path}: cannot read ${what} (${code === 'ENOENT' ? 'no such file' : code ?? (e as Error).message})`, path);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new InputError(`${path}: not valid JSON (${(e as Error).message})`, path);
  }
}

/**
 * The data files in the release's forms. LLaVA samples keep their fields, with `id` as a string:
 * MGLLaVADataset keys the box file by str(item['id']) and looks samples up by their own id, so an
 * int id would miss. The box file gets one {id, boxes, labels, scores} per image sample: the
 * given entry (validated as `mgllava train` validates it), or, without a box file, an empty one
 * (MGLLaVADataset needs box_json_path and an entry per image; no boxes -> its [0,0,0,0] box).
 */
function convertData(o: XtunerExportOptions, imageFolder: string) {
  const dataPath = resolve(o.data);
  const doc = readJson(dataPath, 'training data');
  if (!Array.isArray(doc)) throw new InputError(`${dataPath}: expected a JSON list of samples`, dataPath);
  const boxPath = o.boxes === undefined ? undefined : resolve(o.boxes);
  const boxIndex = boxPath === undefined ? undefined : readBoxIndex(boxPath);
  const boxes: { id: string; boxes: unknown; labels: unknown; scores: unknown }[] = [];
  const seen = new Set<string>();
  let emptyBoxEntries = 0;
  let firstImage: string | undefined;
  const samples = doc.map((raw: unknown, i: number) => {
    const fail = (why: string, where = `sample at index ${i}`) => new InputError(`${dataPath}: ${where}: ${why}`, dataPath);
    if (!isObject(raw)) throw fail('expected an object {id, image?, conversations}');
    const rawId = raw['id'];
    if (typeof rawId !== 'string' && typeof rawId !== 'number') throw fail('"id" must be a string or a number');
    const id = String(rawId);
    if ('input_ids' in raw || 'labels' in raw) throw fail('pre-tokenized samples cannot be exported (the release\'s data_path takes LLaVA conversations)', `sample ${id}`);
    if (raw['video']) throw fail('video samples are not supported', `sample ${id}`);
    const conv = raw['conversations'];
    if (!Array.isArray(conv) || !conv.every((m) => isObject(m) && typeof m['from'] === 'string' && typeof m['value'] === 'string')) {
      throw fail('"conversations" must be a list of {from, value} strings', `sample ${id}`);
    }
    const image = raw['image'];
    if (image !== undefined && image !== null && typeof image !== 'string') throw fail('"image" must be a string', `sample ${id}`);
    if (image) {
      const file = resolve(imageFolder, image); // os.path.join(image_folder, image)
      if (!existsSync(file)) throw new InputError(`${file}: image of sample ${id} not found`, file);
      firstImage ??= file;
      if (!seen.has(id)) {
        seen.add(id);
        if (boxIndex) {
          const entry = boxIndex.get(id);
          if (entry === undefined) throw new InputError(`${boxPath}: sample ${id}: no box entry with this id`, boxPath);
          detectionsFromObject(entry, `${boxPath}: sample ${id}`);
          const e = entry as Record<string, unknown>;
          boxes.push({ id, boxes: e['boxes'], labels: e['labels'], scores: e['scores'] });
        } else {
          boxes.push({ id, boxes: [], labels: [], scores: [] });
          emptyBoxEntries++;
        }
      }
    }
    return { ...raw, id };
  });
  return { dataText: JSON.stringify(samples), boxesText: JSON.stringify(boxes), samples: samples.length, emptyBoxEntries, firstImage };
}

/** The box file by String(id) (see indexBoxEntries). */
function readBoxIndex(path: string): Map<string, unknown> {
  return indexBoxEntries(readJson(path, 'box file'), path);
}

// ---- the Python config -------------------------------------------------------------------------

/** A Python str literal (single quotes, as the release writes them). */
function py(s: string): string {
  let out = "'";
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '\\' || ch === "'") out += `\\${ch}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (c < 0x20 || c === 0x7f) out += `\\x${c.toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return `${out}'`;
}

/** A number as Python writes it; `float` keeps a float literal for integral values (lr = 1.0). */
function num(x: number, float = false): string {
  if (Number.isInteger(x)) return float ? x.toFixed(1) : String(x);
  return String(x); // JS spells non-integers as valid Python floats (0.0002, 1e-7)
}

function configText(s: Settings, files: { data: string; boxes: string; firstImage?: string }): string {
  const sft = s.stage === 2;
  const iters = s.maxSteps !== undefined;
  const form = sft ? 'sft' : 'pretrain';
  const lines: string[] = [];
  const add = (...l: string[]) => lines.push(...l);
  add(
    `# XTuner config for MG-LLaVA stage ${s.stage} (${sft ? 'instruction tuning' : 'pretraining'}), written by mgllava's export`,
    `# for the same data and settings as its \`mgllava train\` run, in the form of the release's`,
    `# mg_llava/config/*/fuse_more_*_${form}_padding.py: the same variables, model, dataset, sampler,`,
    '# collate function, optimiser, schedule and hooks. Run it from a checkout of the release (README.txt).',
    'import torch',
    'from mmengine.dataset import DefaultSampler',
    'from mmengine.hooks import CheckpointHook, DistSamplerSeedHook, IterTimerHook, LoggerHook, ParamSchedulerHook',
    'from mmengine.optim import AmpOptimWrapper, CosineAnnealingLR, LinearLR',
    'from torch.optim import AdamW',
    ...(sft || s.lora ? ['from peft import LoraConfig'] : []),
    'from transformers import AutoModelForCausalLM, AutoTokenizer, CLIPImageProcessor, CLIPVisionModel',
    'from xtuner.dataset.collate_fns import mm_collate_fn',
    'from xtuner.dataset.map_fns import llava_map_fn, template_map_fn_factory',
    ...(sft ? ['from xtuner.dataset.samplers import LengthGroupedSampler'] : []),
    'from xtuner.engine.hooks import DatasetInfoHook',
    'from xtuner.engine.runner import TrainLoop',
    'from xtuner.utils import PROMPT_TEMPLATE',
    'from mg_llava.module import MultiFuseObjectLLaVAModel, MGLLaVADataset, OpenCLIPVisionTower',
    '',
    '# ---- PART 1: settings ----',
    '# Model',
    `llm_name_or_path = ${py(s.llm)}`,
    `visual_encoder_name_or_path = ${py(s.visualEncoder)}`,
    `visual_encoder_aux_name = ${py(AUX_NAME)}  # OpenCLIPVisionTower builds convnext_large_d_320 from this name`,
    `visual_encoder_aux_path = ${py(s.visualEncoderAux)}`,
    ...(sft ? ['# The stage-1 checkpoint SFT starts from', `pretrained_pth = ${py(s.pretrained!)}`] : []),
    '',
    '# Data: the LLaVA samples and their boxes beside this file; images read in place',
    ...(sft ? [`box_json_path = ${py(files.boxes)}`] : []),
    `data_path = ${py(files.data)}`,
    'offline_processed_text_folder = None',
    `image_folder = ${py(s.imageFolder)}`,
    `prompt_template = PROMPT_TEMPLATE.${s.template}`,
    'max_length = int(2048 - (336 // 14) ** 2)  # text positions: 2048 less the 576 image tokens',
    'image_size_aux = 768',
    ...(sft ? ['limit_num = 100  # box cap of MGLLaVADataset'] : []),
    '',
    '# Scheduler & Optimizer',
    `batch_size = ${s.batchSize}  # per device; the global batch is devices x batch_size x accumulative_counts`,
    `accumulative_counts = ${s.gradAccum}`,
    'dataloader_num_workers = 4',
    iters ? `max_iters = ${s.maxSteps}  # iterations (batches per device), as mgllava train --max-steps counts them` : `max_epochs = ${num(s.epochs)}`,
    'optim_type = AdamW',
    `lr = ${num(s.lr, true)}`,
    'betas = (0.9, 0.999)',
    `weight_decay = ${num(s.weightDecay)}`,
    `max_norm = ${num(s.maxGradNorm)}  # grad clip`,
    `warmup_ratio = ${num(s.warmupRatio, true)}`,
    '',
    '# Save',
    `save_steps = ${s.saveSteps}`,
    `save_total_limit = ${s.saveTotalLimit}  # Maximum checkpoints to keep (-1 means unlimited)`,
    '',
    '# Generation checks during training (EvaluateChatHook; left off, as in the release)',
    'evaluation_freq = save_steps',
    "SYSTEM = ''",
    `evaluation_images = ${py(files.firstImage ?? '')}`,
    "evaluation_inputs = ['Describe this image.']",
    ...(sft ? ['', 'pad_image_to_square = True'] : []),
    '',
    '# ---- PART 2: model, tokenizer, image processor ----',
    'tokenizer = dict(',
    '    type=AutoTokenizer.from_pretrained,',
    '    pretrained_model_name_or_path=llm_name_or_path,',
    '    trust_remote_code=True,',
    "    padding_side='right',",
    ')',
    '',
    'image_processor = dict(',
    '    type=CLIPImageProcessor.from_pretrained,',
    '    pretrained_model_name_or_path=visual_encoder_name_or_path,',
    '    trust_remote_code=True,',
    ')',
    '',
    'model = dict(',
    '    type=MultiFuseObjectLLaVAModel,',
    // With LoRA the base LLM stays frozen and only the adapters train (XTuner's LoRA configs).
    `    freeze_llm=${sft && !s.lora ? 'False' : 'True'},`,
    '    freeze_visual_encoder=True,',
    ...(sft ? ['    pretrained_pth=pretrained_pth,'] : []),
    '    tokenizer=tokenizer,',
    '    template=prompt_template,',
    '    image_processor=image_processor,',
    '    llm=dict(',
    '        type=AutoModelForCausalLM.from_pretrained,',
    '        pretrained_model_name_or_path=llm_name_or_path,',
    '        trust_remote_code=True,',
    '    ),',
    ...(s.lora
      ? [
          // LLaVAModel.__init__(llm_lora=...) wraps the LLM with peft.get_peft_model; target_modules
          // None = every linear layer but the output head (xtuner find_all_linear_names).
          `    llm_lora=dict(type=LoraConfig, r=${s.lora.r}, lora_alpha=${num(s.lora.alpha)}, lora_dropout=0.0, bias='none', task_type='CAUSAL_LM'),`,
        ]
      : []),
    '    visual_encoder=dict(type=CLIPVisionModel.from_pretrained, pretrained_model_name_or_path=visual_encoder_name_or_path),',
    '    visual_encoder_aux=dict(',
    '        type=OpenCLIPVisionTower,',
    '        vision_tower=visual_encoder_aux_name,',
    '        vision_tower_path=visual_encoder_aux_path,',
    '        optimize_vision_tower_aux=False,',
    '        use_last_feat=True,',
    '    ),',
    ')',
    '',
    '# ---- PART 3: dataset and dataloader ----',
    'llava_dataset = dict(',
    '    type=MGLLaVADataset,',
    '    data_path=data_path,',
    '    offline_processed_text_folder=offline_processed_text_folder,',
    `    box_json_path=${sft ? 'box_json_path' : py(files.boxes)},`,
    '    image_folder=image_folder,',
    '    tokenizer=tokenizer,',
    '    image_processor=image_processor,',
    '    dataset_map_fn=llava_map_fn,',
    '    template_map_fn=dict(type=template_map_fn_factory, template=prompt_template),',
    '    max_length=max_length,',
    `    pad_image_to_square=${sft ? 'pad_image_to_square' : 'True'},`,
    '    image_size_aux=image_size_aux,',
    ...(sft ? ['    limit_num=limit_num,'] : []),
    ')',
    '',
    'train_dataloader = dict(',
    '    batch_size=batch_size,',
    '    num_workers=dataloader_num_workers,',
    '    pin_memory=True,',
    '    dataset=llava_dataset,',
    sft
      ? "    sampler=dict(type=LengthGroupedSampler, length_property='modality_length', per_device_batch_size=batch_size * accumulative_counts),"
      : '    sampler=dict(type=DefaultSampler, shuffle=True),',
    "    collate_fn=dict(type=mm_collate_fn, extra_collate_keys=['gt_boxes', 'gt_labels', 'pixel_values_aux']),",
    ')',
    '',
    '# ---- PART 4: optimiser and schedule ----',
    '# (xtuner train --deepspeed swaps AmpOptimWrapper for DeepSpeedOptimWrapper and hands DeepSpeed',
    '# accumulative_counts, batch_size and max_norm; bf16 where the GPUs have it)',
    'optim_wrapper = dict(',
    '    type=AmpOptimWrapper,',
    '    optimizer=dict(type=optim_type, lr=lr, betas=betas, weight_decay=weight_decay),',
    '    clip_grad=dict(max_norm=max_norm, error_if_nonfinite=False),',
    '    accumulative_counts=accumulative_counts,',
    "    loss_scale='dynamic',",
    "    dtype='float16',",
    ')',
    '',
    '# Linear warm-up from lr * 1e-5 over warmup_ratio of the run, then cosine annealing to 0,',
    '# both stepped every iteration',
    'param_scheduler = [',
    ...(iters
      ? [
          '    dict(type=LinearLR, start_factor=1e-5, by_epoch=False, begin=0, end=warmup_ratio * max_iters),',
          '    dict(type=CosineAnnealingLR, eta_min=0.0, by_epoch=False, begin=warmup_ratio * max_iters, end=max_iters),',
        ]
      : [
          '    dict(type=LinearLR, start_factor=1e-5, by_epoch=True, begin=0, end=warmup_ratio * max_epochs, convert_to_iter_based=True),',
          '    dict(type=CosineAnnealingLR, eta_min=0.0, by_epoch=True, begin=warmup_ratio * max_epochs, end=max_epochs, convert_to_iter_based=True),',
        ]),
    ']',
    '',
    `train_cfg = dict(type=TrainLoop, ${iters ? 'max_iters=max_iters' : 'max_epochs=max_epochs'}, val_interval=save_steps)`,
    '',
    '# ---- PART 5: runtime ----',
    'custom_hooks = [dict(type=DatasetInfoHook, tokenizer=tokenizer)]',
    '',
    'default_hooks = dict(',
    '    timer=dict(type=IterTimerHook),',
    '    logger=dict(type=LoggerHook, log_metric_by_epoch=False, interval=10),',
    '    param_scheduler=dict(type=ParamSchedulerHook),',
    '    # save_optimizer=False: a plain iter_N.pth file (mmengine >= 0.10.3), else a DeepSpeed folder',
    '    checkpoint=dict(type=CheckpointHook, save_optimizer=False, by_epoch=False, interval=save_steps, max_keep_ckpts=save_total_limit),',
    '    sampler_seed=dict(type=DistSamplerSeedHook),',
    ')',
    '',
    "env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0), dist_cfg=dict(backend='nccl'))",
    'visualizer = None',
    "log_level = 'INFO'",
    'load_from = None',
    'resume = False',
    `randomness = dict(seed=${s.seed}, deterministic=False)  # the seed of the mgllava train run`,
    'log_processor = dict(by_epoch=False)',
    '',
  );
  return lines.join('\n');
}

function readmeText(s: Settings, f: { out: string; config: string; command: string; samples: number; emptyBoxEntries: number }): string {
  const form = s.stage === 1 ? 'pretraining (stage 1)' : 'instruction tuning (stage 2)';
  const notes = [
    ...s.auxNotes,
    ...(f.emptyBoxEntries ? [`${f.emptyBoxEntries} image samples have no boxes (no box file was given): ${BOXES_NAME} lists them with empty boxes`] : []),
    ...(s.lora ? ['LoRA: the checkpoints hold the adapters (llm.base_model.model.*.lora_A.default.weight, ...), which `mgllava chat` does not merge yet'] : []),
    ...(s.stage === 2 ? ['the release\'s SFT sampler groups samples by length (LengthGroupedSampler), so the data order differs from mgllava train\'s'] : []),
  ];
  return [
    `MG-LLaVA ${form} for XTuner, exported by mgllava for the same data and settings as its \`mgllava train\` run.`,
    '',
    'Files',
    `  ${basename(f.config)}  the XTuner config (the form of the release's fuse_more_*_${s.stage === 1 ? 'pretrain' : 'sft'}_padding.py)`,
    `  ${DATA_NAME}  the LLaVA samples (${f.samples}), ids as strings`,
    `  ${BOXES_NAME}  one {id, boxes, labels, scores} per image sample`,
    `  images are read from ${s.imageFolder} (not copied)`,
    '',
    'Run (on a machine with the release installed: git clone https://github.com/PhoenixZ810/MG-LLaVA;',
    "cd MG-LLaVA; pip install -e '.[all]'), from the release's folder so that mg_llava imports:",
    '',
    '  export PYTHONPATH=$PYTHONPATH:$(pwd)',
    `  ${f.command}`,
    '',
    `or under Slurm as the release's script/train_${s.stage === 1 ? 'pretrain' : 'sft'}.sh does:`,
    `  srun ... python xtuner/tools/train.py ${f.config} --seed ${s.seed} --launcher slurm --deepspeed deepspeed_zero2`,
    '',
    `Batch: ${s.batchSize} per device x ${s.gradAccum} accumulation steps; the global batch is devices x ${s.batchSize * s.gradAccum}`,
    `(mgllava train ran ${s.batchSize * s.gradAccum} on one device; the release used 8 GPUs).`,
    '',
    `Checkpoints: ${join(f.out, 'work_dirs')}/iter_N.pth, a torch file, or a folder when DeepSpeed saves the optimizer`,
    'with it. `mgllava chat --checkpoint iter_N.pth` reads both (ZeRO-1/2; a ZeRO-3 folder needs DeepSpeed\'s',
    'zero_to_fp32.py first).',
    ...(notes.length ? ['', 'Check before running', ...notes.map((n) => `  - ${n}`)] : []),
    '',
  ].join('\n');
}
