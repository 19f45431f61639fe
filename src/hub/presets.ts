// What `mgllava pull --preset NAME` fetches for each released MG-LLaVA: the release's checkpoint,
// its base LLM, both vision encoders and the detector, with the prompt template. One small table,
// easy to correct: the names come from the release's README (github.com/PhoenixZ810/MG-LLaVA:
// "Our checkpoints are available at ... huggingface.co/PhoenixZ/MG-LLaVA", the LLM, CLIP,
// ConvNeXt and OWLv2 links under "Before Train" and "Inference"); this machine cannot reach the
// Hub, so the checkpoint's file inside PhoenixZ/MG-LLaVA is found by a pattern over the repo's
// file list, and a preset whose file is missing or ambiguous says so in one line.

export interface RepoFiles {
  repo: string;
  /** Globs of the files needed (the rest of the repo is not fetched). */
  include: readonly string[];
}

export interface ModelPreset {
  name: string;
  title: string;
  /** The release's checkpoint repository and a pattern that picks the variant's file in it. */
  checkpoint: { repo: string; file: RegExp };
  llm: RepoFiles;
  template: string;
}

/** Weights in either form a repo may hold them (one of each kind is used). */
const WEIGHTS = ['*.safetensors', '*.safetensors.index.json', 'pytorch_model*.bin', 'pytorch_model.bin.index.json'];
const LLM_FILES = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer.model', 'tokenizer_config.json', 'special_tokens_map.json', ...WEIGHTS];

export const CLIP: RepoFiles = { repo: 'openai/clip-vit-large-patch14-336', include: ['config.json', 'preprocessor_config.json', 'model.safetensors', 'pytorch_model.bin'] };
export const CONVNEXT: RepoFiles = {
  repo: 'laion/CLIP-convnext_large_d_320.laion2B-s29B-b131K-ft-soup',
  include: ['open_clip_config.json', 'open_clip_model.safetensors', 'open_clip_pytorch_model.bin'],
};
export const OWLV2: RepoFiles = {
  repo: 'google/owlv2-large-patch14-ensemble',
  include: ['config.json', 'preprocessor_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'vocab.json', 'merges.txt', 'model.safetensors', 'pytorch_model.bin'],
};

const RELEASE = 'PhoenixZ/MG-LLaVA';
/** A checkpoint file of the release: a torch file, safetensors, or a DeepSpeed folder's model states. */
const ckpt = (variant: string) => new RegExp(`${variant}.*\\.(pth|safetensors|bin|pt)$`, 'i');

export const PRESETS: readonly ModelPreset[] = [
  { name: 'mg-llava-vicuna-7b', title: 'MG-LLaVA with Vicuna-1.5-7B', checkpoint: { repo: RELEASE, file: ckpt('vicuna[-_]?7b') }, llm: { repo: 'lmsys/vicuna-7b-v1.5', include: LLM_FILES }, template: 'vicuna' },
  { name: 'mg-llava-vicuna-13b', title: 'MG-LLaVA with Vicuna-1.5-13B', checkpoint: { repo: RELEASE, file: ckpt('vicuna[-_]?13b') }, llm: { repo: 'lmsys/vicuna-13b-v1.5', include: LLM_FILES }, template: 'vicuna' },
  { name: 'mg-llava-llama3-8b', title: 'MG-LLaVA with LLaMA-3-8B-Instruct', checkpoint: { repo: RELEASE, file: ckpt('llama[-_]?3') }, llm: { repo: 'meta-llama/Meta-Llama-3-8B-Instruct', include: LLM_FILES }, template: 'llama3_chat' },
  { name: 'mg-llava-phi3', title: 'MG-LLaVA with Phi-3-mini-4k-instruct (3.8B)', checkpoint: { repo: RELEASE, file: ckpt('phi[-_]?3') }, llm: { repo: 'microsoft/Phi-3-mini-4k-instruct', include: LLM_FILES }, template: 'phi3_chat' },
  { name: 'mg-llava-yi-34b', title: 'MG-LLaVA with Yi-1.5-34B-Chat', checkpoint: { repo: RELEASE, file: ckpt('yi[-_]?(1\\.5[-_]?)?34b') }, llm: { repo: '01-ai/Yi-1.5-34B-Chat', include: LLM_FILES }, template: 'qwen_chat' },
];

export function findPreset(name: string): ModelPreset | undefined {
  return PRESETS.find((p) => p.name === name);
}

/**
 * The variant's checkpoint among the release repo's files: exactly one match, or a one-line
 * reason (the table above is then what to correct).
 */
export function pickCheckpoint(p: ModelPreset, files: readonly string[]): { file: string } | { error: string } {
  // A DeepSpeed folder (`iter_N.pth/`) holds optimiser shards beside the model states: only the
  // model states count (the loader takes their folder).
  const hits = files.filter((f) => p.checkpoint.file.test(f) && !/optim_states/.test(f));
  if (hits.length === 1) return { file: hits[0]! };
  const what = `preset ${p.name}: ${hits.length === 0 ? 'no' : `${hits.length}`} file${hits.length === 1 ? '' : 's'} in ${p.checkpoint.repo} match ${p.checkpoint.file}`;
  return { error: hits.length ? `${what} (${hits.slice(0, 5).join(', ')}); correct the table in src/hub/presets.ts` : `${what}; correct the table in src/hub/presets.ts` };
}
