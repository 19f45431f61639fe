// `mgllava pull --preset NAME --out DIR`: every part one released MG-LLaVA needs (presets.ts),
// each pulled into the Hugging Face cache (client.ts), then a model folder whose
// mgllava_config.json points into the cache's snapshots; with `quantize`, the LLM (with the
// checkpoint's llm.* weights) quantized into the folder right after. Of a repository's weights
// only one form is fetched: safetensors when it has them, else the PyTorch `.bin` files.

import { mkdirSync, renameSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { InputError } from '../core/errors.js';
import { quantizeLlm } from '../model/llm/quantize.js';
import { NBits } from '../weights/nbits.js';
import { Env, isOffline } from './cache.js';
import { HubClient, PullProgress, PullResult, pull, pullFromCache } from './client.js';
import { globFilter } from './glob.js';
import { CLIP, CONVNEXT, ModelPreset, OWLV2, RepoFiles, findPreset, pickCheckpoint, PRESETS } from './presets.js';

export interface PresetPullOptions {
  preset: string;
  out: string;
  quantize?: NBits;
  cacheDir?: string;
  env?: Env;
  /** Which repository is being pulled, then its progress. */
  onRepo?: (repo: string, what: string) => void;
  onProgress?: (p: PullProgress) => void;
  onNote?: (message: string) => void;
}

export interface PresetPullResult {
  /** The model folder written. */
  out: string;
  parts: Record<'checkpoint' | 'llm' | 'visual_encoder' | 'visual_encoder_aux' | 'detector', string>;
  pulls: PullResult[];
}

const isWeight = (f: string) => /\.(safetensors|bin)$|\.index\.json$/.test(f);

/** The include patterns with only one form of weights: safetensors when the repo has them. */
export function oneWeightForm(include: readonly string[], files: readonly string[]): string[] {
  const wanted = files.filter(globFilter(include));
  const safe = wanted.some((f) => f.endsWith('.safetensors'));
  return [...include.filter((p) => !isWeight(p)), ...(safe ? include.filter((p) => /safetensors/.test(p)) : include.filter((p) => /\.bin/.test(p)))];
}

export async function pullPreset(o: PresetPullOptions): Promise<PresetPullResult> {
  const preset = findPreset(o.preset);
  if (!preset) throw new InputError(`unknown preset "${o.preset}" (known: ${PRESETS.map((p) => p.name).join(', ')})`, '--preset');
  const out = resolve(o.out);
  if (existsSync(out)) throw new InputError(`${o.out}: already exists; --out names a new model folder`, o.out);
  if (!existsSync(dirname(out))) throw new InputError(`${dirname(out)}: no such folder (the parent of --out)`, o.out);
  const env = o.env ?? process.env;
  const offline = isOffline(env);
  const client = offline ? undefined : new HubClient({ env });
  const pulls: PullResult[] = [];

  /** The repo's file list: from the Hub, or offline from the cached snapshot. */
  const listFiles = async (repo: string): Promise<string[]> =>
    client ? (await client.revisionInfo(repo, 'main')).files.map((f) => f.path) : pullFromCache({ repoId: repo, cacheDir: o.cacheDir, env }).files;
  const fetchRepo = async (r: RepoFiles, what: string, include?: string[]): Promise<PullResult> => {
    o.onRepo?.(r.repo, what);
    const inc = include ?? oneWeightForm(r.include, await listFiles(r.repo));
    const res = await pull({ repoId: r.repo, include: inc, cacheDir: o.cacheDir, env, onProgress: o.onProgress, onNote: o.onNote });
    pulls.push(res);
    return res;
  };

  // The release's checkpoint: the variant's file in its repository.
  const picked = pickCheckpoint(preset, await listFiles(preset.checkpoint.repo));
  if ('error' in picked) throw new InputError(picked.error, '--preset');
  const ck = await fetchRepo({ repo: preset.checkpoint.repo, include: [picked.file] }, 'the MG-LLaVA checkpoint', [picked.file]);
  const ckPath = join(ck.path, picked.file);
  // DeepSpeed model states load through their folder (weights/zero-checkpoint.ts).
  const checkpoint = basename(ckPath).startsWith('mp_rank_') ? dirname(ckPath) : ckPath;
  const llm = (await fetchRepo(preset.llm, 'the base LLM')).path;
  const clip = (await fetchRepo(CLIP, 'CLIP ViT-L/14-336')).path;
  const convnext = (await fetchRepo(CONVNEXT, 'ConvNeXt-L (LAION)')).path;
  const owl = (await fetchRepo(OWLV2, 'the OWLv2 detector')).path;

  // The folder is built beside and renamed into place: a failure leaves nothing at --out.
  const tmp = join(dirname(out), `.${basename(out)}.partial-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  let llmDir = llm;
  try {
    if (o.quantize) {
      const q = join(tmp, `llm-q${o.quantize}`);
      o.onRepo?.(preset.llm.repo, `quantizing the LLM to ${o.quantize} bits`);
      await quantizeLlm({ llm, checkpoint, out: q, bits: o.quantize });
      llmDir = join(out, `llm-q${o.quantize}`);
    }
    const config = configFor(preset, { checkpoint, llm: llmDir, clip, convnext, owl });
    writeFileSync(join(tmp, 'mgllava_config.json'), `${JSON.stringify(config, null, 1)}\n`);
    renameSync(tmp, out);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  return { out, parts: { checkpoint, llm: llmDir, visual_encoder: clip, visual_encoder_aux: convnext, detector: owl }, pulls };
}

function configFor(p: ModelPreset, parts: { checkpoint: string; llm: string; clip: string; convnext: string; owl: string }): Record<string, unknown> {
  return {
    preset: p.name,
    checkpoint: parts.checkpoint,
    llm: parts.llm,
    visual_encoder: parts.clip,
    visual_encoder_aux: parts.convnext,
    prompt_template: p.template,
    visual_select_layer: -2,
    image_size_aux: 768,
    box_feat_size: 56,
    projector_depth: 2,
    detector: { path: parts.owl, tags: 'coco' },
  };
}
