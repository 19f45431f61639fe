#!/usr/bin/env node
// The `mgllava` command line: parse, call the library, format. Every user mistake ends as one
// line on stderr and a non-zero exit.

import { Command, Option, InvalidArgumentError } from 'commander';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { readFileSync } from 'node:fs';
import { InputError } from '../core/errors.js';
import { runEncode } from './encode.js';
import { runChat } from './chat.js';
import { runQuantize, runQuantizeReport } from './quantize.js';
import { DEFAULT_BLOCK_SIZE } from '../model/llm/quantize.js';
import { runExport } from './export.js';
import { runDetect } from './detect.js';
import { runTrain } from './train.js';
import { runPullPreset } from './pull-preset.js';
import { PRESETS } from '../hub/presets.js';
import { BENCHMARKS } from '../eval/benchmarks.js';
import { TINY_MODEL, resolveModelFiles, withDefaultModel } from '../model/model-files.js';
import { runPull } from './pull.js';
import { runTokenize } from './tokenize.js';
import { runSynth } from './synth.js';
import { rerun, tunedMallocEnv } from './malloc-tuning.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

function nonNegativeInt(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n)) throw new InvalidArgumentError('expected a non-negative integer');
  return n;
}

function number(v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError('expected a number');
  return n;
}

function unitInterval(v: string): number {
  const n = number(v);
  if (n < 0 || n > 1) throw new InvalidArgumentError('expected a number in [0, 1]');
  return n;
}

/** Detection flags shared by chat and encode (used when no --boxes are given). */
function detectorOptions(cmd: Command): Command {
  return cmd
    .option('--detector <dir>', 'OWLv2 folder: find boxes with it when no --boxes are given (default: mgllava_config.json "detector")')
    .option('--tags <list>', 'comma-separated tags for the detector ("a photo of {tag}" each; default: the config\'s, else COCO-80)')
    .option('--coco', 'detector tags: the 80 COCO classes')
    .option('--threshold <t>', 'detector score threshold in [0, 1] (default: the config\'s, else 0.2)', unitInterval);
}

function positiveInt(v: string): number {
  const n = nonNegativeInt(v);
  if (n === 0) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

function bits(v: string): 4 | 8 {
  if (v !== '4' && v !== '8') throw new InvalidArgumentError('expected 4 or 8');
  return Number(v) as 4 | 8;
}

function stage(v: string): 1 | 2 {
  if (v !== '1' && v !== '2') throw new InvalidArgumentError('expected 1 (pretraining: fusion and projectors) or 2 (instruction tuning: the LLM too)');
  return Number(v) as 1 | 2;
}

function ratio(v: string): number {
  const n = number(v);
  if (n < 0 || n >= 1) throw new InvalidArgumentError('expected a number in [0, 1)');
  return n;
}

function nonNegative(v: string): number {
  const n = number(v);
  if (n < 0) throw new InvalidArgumentError('expected a non-negative number');
  return n;
}

function positive(v: string): number {
  const n = number(v);
  if (n <= 0) throw new InvalidArgumentError('expected a positive number');
  return n;
}

function collect(v: string, prev: string[] = []): string[] {
  return [...prev, ...v.split(',').map((s) => s.trim()).filter((s) => s)];
}

function blockSize(v: string): number {
  const n = positiveInt(v);
  if (n < 16 || (n & (n - 1)) !== 0) throw new InvalidArgumentError('expected a power of two, at least 16');
  return n;
}

function modelOptions(cmd: Command, dflt = 'the bundled demo model, models/demo (it knows only the shapes world of mgllava synth)'): Command {
  return cmd
    .option('--model <dir>', `model folder with mgllava_config.json (default: ${dflt})`)
    .option('--checkpoint <file>', 'MG-LLaVA checkpoint (.pth or .safetensors), release layout')
    .option('--llm <dir>', 'base LLM folder, release layout')
    .option('--visual-encoder <dir>', 'CLIP ViT folder (HF layout), release layout')
    .option('--visual-encoder-aux <dir>', 'ConvNeXt folder (open_clip layout), release layout')
    .option('--threads <n>', 'onnxruntime intra-op threads (default: one per core)', positiveInt);
}

/** Where this machine's pre-packed weights go (src/runtime/packed-cache.ts). */
function packedCacheOptions(cmd: Command): Command {
  return cmd
    .option('--packed-cache <dir>', 'folder for weights pre-packed for this CPU: the first load writes them, later loads map them (default: $MGLLAVA_CACHE_DIR/packed or ~/.cache/mgllava/packed)')
    .option('--no-packed-cache', 'pack the weights in memory at every load instead');
}

export function buildProgram(): Command {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const program = new Command('mgllava')
    .description('MG-LLaVA multimodal model on onnxruntime')
    .version(pkg.version)
    .showHelpAfterError(false)
    // Needed for `eval` (options of its own and of its subcommands): a command's options come before its subcommand.
    .enablePositionalOptions()
    // Commander's own errors (unknown option, missing argument) in the same one-line form.
    .configureOutput({ outputError: (str, write) => write(`mgllava: ${str.replace(/^error: /, '')}`) });

  detectorOptions(packedCacheOptions(modelOptions(program.command('encode'))))
    .description('encode an image or a video (and its detector boxes) into visual tokens, saved as safetensors')
    .option('--image <file>', 'image to encode (JPEG, PNG, WebP, ...)')
    .option('--boxes <file>', 'detector boxes JSON {"boxes": [[x0,y0,x1,y1],...], "labels": [...], "scores": [...]} in image pixels')
    .option('--video <file>', 'a video instead of an image (any format ffmpeg reads): its sampled frames\' tokens; also writes frame_indices, frame_box_counts')
    .option('--video-boxes <file>', 'the release\'s video box JSON (the entry of the video\'s stem, one per sampled frame, in frame pixels)')
    .option('--frames <n>', 'frames to sample from the video (default 8)', positiveInt)
    .option('--no-pad', 'video: do not pad the frames to square')
    .requiredOption('--out <file>', 'output .safetensors: image_tokens, box_tokens, boxes, pixel_values, pixel_values_aux')
    .option('--box-limit <n>', 'if more boxes than this survive NMS, keep the top 20 per label (5 when n <= 50; 0 = no cap)', nonNegativeInt, 100)
    .addOption(new Option('--max-pixels <n>', 'refuse images with more pixels than this').argParser(positiveInt).default(100_000_000))
    .option('-q, --quiet', 'no progress on stderr')
    .action(async (o) => runEncode(withDefaultModel(o)));
  detectorOptions(packedCacheOptions(modelOptions(program.command('chat'))))
    .description('ask a question, about an image, a video or neither; without a question, an interactive session')
    .argument('[question...]', 'the question (words are joined with spaces); omit for an interactive session')
    .option('--image <file>', 'image to ask about (JPEG, PNG, WebP, ...)')
    .option('--boxes <file>', 'detector boxes JSON for the image (as for encode)')
    .option('--visual-cache <file>', 'visual tokens written by `mgllava encode` (instead of --image/--boxes)')
    .option('--video <file>', 'video to ask about (any format ffmpeg reads; needs Debian\'s ffmpeg): the release\'s <video> prompt over its sampled frames')
    .option('--video-boxes <file>', 'the release\'s video box JSON [{"video": "name.ext", "frames": [{boxes, labels, scores}, ...]}], the entry of the video\'s stem, one per sampled frame, in frame pixels')
    .option('--frames <n>', 'frames to sample from the video (np.linspace over all of them; default 8, the release\'s)', positiveInt)
    .option('--no-pad', 'video: do not pad the frames to square (the release pads: pad_image_to_square)')
    .option('--template <name>', 'prompt template: vicuna, llama3_chat, phi3_chat, qwen_chat (default: the model config\'s)')
    .option('--system <text>', 'system text for the template (default: its system block with an empty text, as the release\'s evaluation prompts)')
    .option('--no-system', 'no system block at all: the prompt as training builds it (and the release\'s chat.py without --system)')
    .option('--max-new-tokens <n>', 'most tokens to generate', positiveInt, 2048)
    .option('--temperature <t>', 'sampling temperature; 0 = greedy', number, 0.1)
    .option('--top-k <k>', 'sample from the k most likely tokens (0 = off)', nonNegativeInt, 40)
    .option('--top-p <p>', 'sample from the smallest set with this much probability (1 = off)', number, 0.75)
    .option('--repetition-penalty <r>', '> 1 discourages repeating generated tokens', number, 1)
    .option('--seed <n>', 'random seed for sampling', nonNegativeInt, 0)
    .option('--box-limit <n>', 'box cap as for encode (0 = no cap)', nonNegativeInt, 100)
    .addOption(new Option('--max-pixels <n>', 'refuse images with more pixels than this').argParser(positiveInt).default(100_000_000))
    .option('--json', 'print one JSON object (text, ids, prompt_tokens, logprobs, timings) instead of streaming text')
    .option('-q, --quiet', 'no progress on stderr')
    .action(async (words: string[], o) => {
      const question = words.length ? words.join(' ') : undefined;
      await runChat(question, withDefaultModel(o));
    });
  packedCacheOptions(program.command('detect'))
    .description('find objects in an image with an OWLv2 detector: boxes, labels and scores, drawn to a PNG on request')
    .requiredOption('--detector <dir>', 'OWLv2 model folder (HF Owlv2ForObjectDetection: config.json, model.safetensors, tokenizer.json)')
    .requiredOption('--image <file>', 'image to search (JPEG, PNG, WebP, ...)')
    .option('--tags <list>', 'comma-separated tags to look for, e.g. "cat,table,red square" (prompts "a photo of {tag}")')
    .option('--coco', 'look for the 80 COCO classes')
    .option('--threshold <t>', 'keep boxes scoring above this, in [0, 1]', unitInterval, 0.2)
    .option('--json', 'print the release\'s box JSON {"boxes": [[x0,y0,x1,y1],...], "labels": [...], "scores": [...]} in image pixels')
    .option('--int-boxes', 'truncate box coordinates to integers, as the release stores them')
    .option('--draw <out.png>', 'write the image with the labelled boxes drawn, as PNG')
    .addOption(new Option('--processor <generation>', 'image processing of transformers 5 (black padding, the default) or 4 (grey padding, scipy resize: how the release\'s box files were made)').choices(['transformers5', 'transformers4']))
    .addOption(new Option('--max-pixels <n>', 'refuse images with more pixels than this').argParser(positiveInt).default(100_000_000))
    .option('--threads <n>', 'onnxruntime intra-op threads (default: one per core)', positiveInt)
    .option('-q, --quiet', 'no progress on stderr')
    .action(async (o) => runDetect(o));
  program.command('quantize')
    .description('write a 4-bit or 8-bit copy of an LLM folder (onnxruntime MatMulNBits weights) that chat --llm and loadModel read; or, with --report, measure the error of each weight format on it')
    .option('--llm <dir>', 'LLM folder to quantize (config.json, tokenizer, weights)')
    .option('--checkpoint <file>', "MG-LLaVA checkpoint whose fine-tuned llm.* weights replace the folder's before quantizing")
    .option('--model <dir>', 'instead of --llm/--checkpoint: a model folder (mgllava_config.json); its LLM and checkpoint')
    .option('--out <dir>', 'folder to create (it must not exist; its parent must)')
    .option('--bits <n>', 'bits per weight: 4 or 8', bits, 4)
    .option('--block-size <n>', 'weights per scale along the input dimension (a power of two >= 16; 128 measured as accurate as llama.cpp\'s Q4_0 at 4 bits, and faster than 32)', blockSize, DEFAULT_BLOCK_SIZE)
    .option('--symmetric', 'no zero points: scale from max |w| per block (default: min/max and a zero point per block)')
    .option('--head-bits <n>', 'the output head\'s bits, 4 or 8 (default 8: ~2% more bytes on a 7B, and the head\'s share of the error gone; 4 keeps it at --bits 4)', bits)
    .option('--report', 'write nothing: print each format\'s bits per weight and relative RMS error on the --llm folder\'s Linear weights (ours: q{4,8}-b{32,64,128}-{zp,sym}[-f16]; llama.cpp\'s: Q4_0, Q8_0, Q4_K_M)')
    .option('--formats <list>', 'with --report: only these formats, comma-separated (default: all)')
    .option('--rows <n>', 'with --report: evenly spaced rows measured per matrix, 0 for all', nonNegativeInt, 64)
    .option('--json', 'with --report: one JSON object instead of the table')
    .option('-q, --quiet', 'no progress on stderr')
    .action(async (o) => {
      if (o.model) {
        if (o.llm || o.checkpoint) throw new InputError('give --model, or --llm (and --checkpoint), not both', '--model');
        const f = resolveModelFiles({ model: o.model });
        if (!f.llm) throw new InputError(`${o.model}: its mgllava_config.json names no "llm"`, '--model');
        o = { ...o, llm: f.llm, checkpoint: f.checkpoint };
      }
      if (!o.llm) throw new InputError('missing --llm (or --model with a mgllava_config.json)', '--llm');
      if (o.report) {
        if (o.out) throw new InputError('--report writes nothing: give --out to quantize, or --report to measure', '--out');
        if (o.headBits !== undefined) throw new InputError('--head-bits goes with quantizing; --report measures every format (the -h8 ones hold the head at 8 bits)', '--head-bits');
        return runQuantizeReport({ llm: o.llm, checkpoint: o.checkpoint, formats: o.formats, rows: o.rows, json: o.json, quiet: o.quiet });
      }
      if (!o.out) throw new InputError('missing --out (the folder to create), or give --report to measure formats', '--out');
      for (const k of ['formats', 'json'] as const) if (o[k]) throw new InputError(`--${k} goes with --report`, `--${k}`);
      if (o.headBits !== undefined && o.headBits < o.bits) throw new InputError(`--head-bits ${o.headBits} is below --bits ${o.bits}: the head gets at least the others' bits`, '--head-bits');
      return runQuantize(o);
    });
  program.command('export')
    .description('write a trained model folder (mgllava train --out) as one self-contained folder: each part (clip/, convnext/, llm/) with its trained tensors in place, nothing stored twice')
    .requiredOption('--model <dir>', 'model folder with mgllava_config.json (e.g. a training run\'s output)')
    .requiredOption('--out <dir>', 'folder to create (it must not exist)')
    .addOption(new Option('--dtype <type>', 'float type of the written tensors').choices(['f32', 'f16', 'bf16']).default('f32'))
    .option('-q, --quiet', 'no summary on stderr')
    .action((o) => runExport({ model: o.model, out: o.out, dtype: (o.dtype as string).toUpperCase() as 'F32' | 'F16' | 'BF16', quiet: o.quiet }));
  modelOptions(program.command('train'), 'the tiny random-weight fixture, fixtures/tiny/mgllava')
    .description('train MG-LLaVA: stage 1 (fuse_module, projector, bbox_projector) or stage 2 (the LLM too), from LLaVA-format data')
    .requiredOption('--stage <n>', '1: pretraining (encoders and LLM frozen); 2: instruction tuning (the LLM learns too)', stage)
    .requiredOption('--data <file>', 'training samples: a JSON list of {id, image?, conversations: [{from, value}]} (or pre-tokenized {id, image?, input_ids, labels})')
    .option('--image-folder <dir>', 'folder the samples\' image paths are relative to (default: the data file\'s folder)')
    .option('--boxes <file>', 'detector boxes: a JSON list of {id, boxes, labels, scores} matched to samples by id, in image pixels')
    .requiredOption('--out <dir>', 'output model folder (a checkpoint: chat --model and --resume read it), replaced atomically at each save')
    .option('--epochs <n>', 'passes over the data (default 1)', positiveInt)
    .option('--max-steps <n>', 'iterations in all (one batch each), instead of --epochs', positiveInt)
    .option('--batch-size <n>', 'samples per iteration', positiveInt, 1)
    .option('--grad-accum <n>', 'iterations per optimiser update (the loss of each divided by n)', positiveInt, 1)
    .option('--lr <x>', 'peak learning rate (default: the release\'s 1e-3 for stage 1, 2e-5 for stage 2)', positive)
    .addOption(new Option('--lr-schedule <kind>', 'after the warm-up: cosine to 0, or constant').choices(['cosine', 'constant']).default('cosine'))
    .option('--warmup-ratio <x>', 'fraction of the iterations warming up linearly from 1e-5 x lr', ratio, 0.03)
    .option('--max-grad-norm <x>', 'clip the gradient norm to this (0: off)', nonNegative, 1)
    .option('--weight-decay <x>', 'AdamW decoupled weight decay', nonNegative, 0)
    .option('--lora <r>', 'train LoRA adapters of rank r on the LLM\'s linear layers instead of the LLM (merged into llm.* on save; the adapter also on its own)', positiveInt)
    .option('--lora-alpha <a>', 'LoRA scale numerator: updates are scaled by alpha / r (default: r)', positive)
    .option('--trainable <patterns>', 'also train these tensors, by checkpoint name (`*` wildcards, comma-separated; e.g. "llm.model.norm*")', collect)
    .option('--seed <n>', 'seed of the data order', nonNegativeInt, 2024)
    .option('--save-every <n>', 'write the checkpoint every n iterations too (always at the end)', positiveInt)
    .option('--resume <dir>', 'continue a run from its checkpoint folder (same data and settings)')
    .option('--save-first-grads <file>', 'write the first update\'s raw gradients (before clipping) as .safetensors')
    .option('--template <name>', 'prompt template: vicuna, llama3_chat, phi3_chat, qwen_chat (default: the model config\'s)')
    .option('--feature-cache <dir>', 'keep the frozen encoders\' outputs per image here, for later runs on the same images (default: in memory, this run only)')
    .option('--export-xtuner <dir>', 'instead of training here, write the same job as the release\'s XTuner config and data files (for a GPU cluster)')
    .option('--json', 'one JSON object per iteration on stdout (step, loss, lr, grad_norm, tokens_per_s, eta_ms)')
    .option('-q, --quiet', 'no progress on stderr')
    .action(async (o) => runTrain(o, o.checkpoint || o.llm || o.visualEncoder || o.visualEncoderAux ? undefined : TINY_MODEL));
  program.command('synth')
    .description('write a synthetic shapes data set: images, boxes, stage-1 captions, stage-2 questions, and eval TSVs (MMBench-style MCQ, POPE, GQA-style VQA) with their boxes')
    .requiredOption('--out <dir>', 'folder to create (it must not exist; its parent must)')
    .requiredOption('--images <n>', 'training images', positiveInt)
    .option('--seed <n>', 'random seed (the same seed gives the same files, byte for byte)', nonNegativeInt, 0)
    .option('--questions <k>', 'question turns per stage-2 sample and per eval image in vqa.tsv', positiveInt, 6)
    .option('--eval-images <n>', 'evaluation images (default: images / 10, at least 1, at most 500; 0: no eval folder)', nonNegativeInt)
    .addOption(new Option('--format <f>', 'image format').choices(['jpg', 'png']).default('jpg'))
    .option('--quality <q>', 'JPEG quality 1..100', positiveInt, 92)
    .option('--max-objects <n>', 'objects per image uniform in 1..n (the world: 6; fewer make a curriculum\'s easy scenes)', positiveInt, 6)
    .option('--types <list>', 'stage-2 question types, comma-separated (default: all: count, count_size, count_all, exists, exists_size, colour, shape, left_of)', (v: string) => v.split(',').map((t) => t.trim()))
    .option('--repeat-questions', 'stage-2 samples may ask a question twice (default: redrawn, which skews yes/no answers toward "No" on scenes with few kinds of objects)')
    .option('--json', 'print one JSON object {out, images, stage2Questions, evalImages, mcqRows, popeRows, vqaRows, seconds}')
    .option('-q, --quiet', 'no progress on stderr')
    .action(async (o) => runSynth(o));
  program.command('tokenize')
    .description('token ids of a text with a model folder\'s tokenizer (tokenizer.json or SentencePiece tokenizer.model), or the text of ids')
    .argument('[text]', 'text to encode (put -- before a text that starts with -)')
    .requiredOption('--llm <dir>', 'LLM folder with the tokenizer')
    .option('--special', 'encode: add BOS/EOS as tokenizer_config.json says; decode: keep special tokens in the text')
    .option('--decode <ids>', 'decode these comma-separated ids (e.g. 1,2,3) instead')
    .option('--json', 'print {"ids": [...], "pieces": [...]} (decode: {"text": ...})')
    .action((text: string | undefined, o) => runTokenize(text, o));
  program.command('pull')
    .description('download a model repository from the Hugging Face Hub into its cache (shared with Python\'s huggingface_hub); prints the snapshot folder. With --preset: every part of a released MG-LLaVA and a model folder for chat')
    .argument('[repo_id]', 'repository, e.g. openai/clip-vit-large-patch14-336 (or --preset)')
    .option('--preset <name>', `a released MG-LLaVA: ${PRESETS.map((p) => p.name).join(', ')} (with --out)`)
    .option('--out <dir>', 'with --preset: the model folder to write (mgllava_config.json pointing into the cache)')
    .option('--quantize <bits>', 'with --preset: quantize the LLM to 4 or 8 bits into the model folder', bits)
    .option('--revision <rev>', 'branch, tag or commit hash', 'main')
    .option('--include <glob...>', 'only files matching these patterns (`*` any characters, `/` included; `?` one; a trailing `/`: a folder), as huggingface_hub\'s allow_patterns')
    .option('--cache-dir <dir>', 'cache folder (default: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub)')
    .option('--json', 'print {"repo", "revision", "commit", "path", "files"} instead of the folder')
    .option('-q, --quiet', 'no progress on stderr')
    .action(async (repoId: string | undefined, o) => {
      if (o.preset) {
        if (repoId) throw new InputError('give a repository or --preset, not both', '--preset');
        if (!o.out) throw new InputError('--preset needs --out DIR (the model folder to write)', '--out');
        return runPullPreset({ ...o, preset: o.preset, out: o.out });
      }
      if (o.out || o.quantize) throw new InputError('--out and --quantize go with --preset', '--out');
      if (!repoId) throw new InputError('name a repository (e.g. openai/clip-vit-large-patch14-336) or a --preset', 'repo_id');
      return runPull(repoId, o);
    });
  detectorOptions(packedCacheOptions(modelOptions(program.command('serve'))))
    .description('serve the model over HTTP: OpenAI-compatible /v1/chat/completions (images as data URLs, streaming), /v1/models, /health, /metrics')
    .option('--host <addr>', 'address to listen on (loopback by default; anything else reaches beyond this machine)', '127.0.0.1')
    .option('--port <n>', 'port (0: any free one)', nonNegativeInt, 8080)
    .option('--api-key <key>', 'require Authorization: Bearer KEY on every /v1 route')
    .option('--parallel <n>', 'requests answered at once, their tokens decoded together (one decoder run per step for all)', positiveInt, 1)
    .option('--max-queue <n>', 'requests waiting beyond the running ones; more get 429', nonNegativeInt, 16)
    .addOption(new Option('--max-pixels <n>', 'refuse images with more pixels than this').argParser(positiveInt).default(100_000_000))
    .option('--max-body <bytes>', 'largest request body and fetched image', positiveInt, 20 * 1024 * 1024)
    .option('--cors <origin>', 'allow browser pages from this origin (Access-Control-Allow-Origin)')
    .option('--allow-local-files', 'let image_url be a file:// path on this machine')
    .option('--template <name>', 'prompt template (default: the model config\'s)')
    .option('-q, --quiet', 'no log lines on stderr')
    .action(async (o) => (await import('./serve.js')).runServe(withDefaultModel(o)));
  const benchNames = BENCHMARKS.map((b) => b.name).join(', ');
  const evalCmd = detectorOptions(packedCacheOptions(modelOptions(program.command('eval'))))
    // eval's own options come before `score` / `merge`, whose --out and --json are theirs.
    .enablePositionalOptions()
    .description('run a benchmark on a local model or an OpenAI-compatible endpoint with the release\'s prompts, resumable and shardable, scored the VLMEvalKit way; `eval score` scores a predictions file, `eval merge` combines shards')
    .option('--bench <name>', benchNames)
    .option('--data <file...>', 'benchmark file: a VLMEvalKit TSV (base64 images), or the LLaVA jsonl question file(s) (POPE: its three files), or the video QA questions JSON')
    .option('--images <dir>', 'folder of the images (or videos) the data file names')
    .option('--answers <file>', 'answers for a jsonl or video data file: TextVQA_0.5.1_val.json, GQA testdev_balanced_questions.json, the video QA answers JSON')
    .option('--boxes <file>', 'the release\'s box JSON for this benchmark: a list of {id, boxes, labels, scores}, id = the item\'s index / question_id; video QA: the release\'s video box JSON [{video, frames: [...]}], keyed by the video\'s file stem, its first entry\'s extension naming the videos (default: the model\'s detector, its boxes kept in the run folder)')
    .option('--no-boxes', 'no boxes at all (not the release\'s setting)')
    .option('--endpoint <url>', 'evaluate an OpenAI-compatible chat-completions server instead of a local model (e.g. http://127.0.0.1:8000/v1)')
    .option('--endpoint-model <name>', 'the model name to request (default: the first the server lists)')
    .option('--api-key-env <var>', 'environment variable with the endpoint\'s API key', 'OPENAI_API_KEY')
    .option('--concurrency <n>', 'requests in flight at once (endpoint; video QA: also the judge)', positiveInt, 4)
    .option('--out <dir>', 'run folder: run.json, predictions.jsonl (appended as items are answered; a rerun continues), predictions TSV, scores')
    .option('--limit <n>', 'only the first n items (of the shard)', positiveInt)
    .option('--shard <i/n>', 'answer shard i of n (1-based; contiguous blocks), for n processes or machines; then eval merge')
    .addOption(new Option('--prompt-style <style>', 'release: the release\'s prompts; vlmevalkit: VLMEvalKit\'s default prompts').choices(['release', 'vlmevalkit']).default('release'))
    .option('--max-new-tokens <n>', 'answer length limit (the release evaluates with 100)', positiveInt, 100)
    .option('--official-vqa-normalisation', 'textvqa: score with the official TextVQA evaluator (MMF m4c, as the release) instead of VLMEvalKit\'s rules')
    .option('--frames <n>', 'video QA: frames sampled per video (np.linspace, as the release; default 8; part of the run)', positiveInt)
    .option('--judge-url <url>', 'video QA: score through the Video-ChatGPT judge at this OpenAI-compatible API (verdicts kept in the run folder\'s judge.jsonl); without it: an exact-match score, not the paper\'s')
    .option('--judge-model <name>', 'video QA: the judge model (default gpt-3.5-turbo)')
    .option('--judge-key-env <var>', 'video QA: environment variable with the judge\'s API key (default OPENAI_API_KEY)')
    .addOption(new Option('--max-pixels <n>', 'refuse images with more pixels than this').argParser(positiveInt).default(100_000_000))
    .option('--template <name>', 'prompt template (default: the model config\'s)')
    .option('--json', 'print one JSON object {bench, dataset, out, total, made, resumed, predictions, overall, table, files}')
    .option('-q, --quiet', 'no progress on stderr')
    .action(async (o) => {
      if (!o.bench) throw new InputError(`give --bench NAME (${benchNames}), or a subcommand: score, merge`, '--bench');
      if (!o.data) throw new InputError('give --data FILE', '--data');
      if (!o.out) throw new InputError('give --out RUN_DIR (the run folder; a rerun with it continues)', '--out');
      return (await import('./eval.js')).runEvalRun(o.endpoint ? o : withDefaultModel(o));
    });
  evalCmd.command('score')
    .description('score a predictions TSV (benchmark columns but image, plus prediction) against its benchmark TSV, the VLMEvalKit way')
    .requiredOption('--bench <name>', benchNames)
    .requiredOption('--data <file>', 'benchmark TSV (VLMEvalKit format); video QA: the questions JSON')
    .requiredOption('--predictions <file>', 'predictions TSV, rows matched by index (video QA: also the release\'s [{id, question, answer, pred}] JSON)')
    .option('--answers <file>', 'video QA: the answers JSON (matched to the questions by position)')
    .option('--judge-url <url>', 'video QA: an OpenAI-compatible API for the Video-ChatGPT judge (without it: an exact-match score, not the paper\'s)')
    .option('--judge-model <name>', 'video QA: the judge model', 'gpt-3.5-turbo')
    .option('--judge-key-env <var>', 'video QA: environment variable with the judge\'s API key', 'OPENAI_API_KEY')
    .option('--concurrency <n>', 'video QA: judge requests in flight at once', positiveInt, 4)
    .option('--out <dir>', 'write <dataset>_acc.csv / _score.csv, <dataset>_results.tsv, summary.json and summary.md here (video QA: also judge.jsonl, the verdicts, reused by a rerun)')
    .option('--json', 'print one JSON object {bench, dataset, overall, table, items}')
    .option('--official-vqa-normalisation', 'textvqa: score with the official TextVQA evaluator (MMF m4c, as the release) instead of VLMEvalKit\'s rules')
    .option('-q, --quiet', 'no progress on stderr')
    .action(async (o) => (await import('./eval.js')).runEvalScore(o));
  evalCmd.command('merge')
    .description('combine the predictions of eval runs (the shards of one run) and score them as one')
    .argument('<run_dir...>', 'run folders of the same benchmark, data, model and settings')
    .option('--out <dir>', 'folder for the merged predictions and scores (default: the first RUN_DIR + ".merged")')
    .option('--data <file...>', 'where the data files are now, if not where the runs read them')
    .option('--images <dir>', 'where the image folder is now')
    .option('--answers <file>', 'where the answers file is now')
    .option('--official-vqa-normalisation', 'textvqa: score with the official TextVQA evaluator (MMF m4c, as the release) instead of VLMEvalKit\'s rules')
    .option('--json', 'print one JSON object')
    .action(async (runs: string[], o) => (await import('./eval.js')).runEvalMerge(runs, o));
  return program;
}

async function main(argv: string[]): Promise<void> {
  // A reader that went away (`| head`) ends the command quietly, not with a stack trace.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });
  try {
    await buildProgram().parseAsync(argv);
  } catch (e) {
    if (e instanceof InputError) {
      process.stderr.write(`mgllava: ${e.message}\n`);
    } else {
      const err = e as Error;
      process.stderr.write(`mgllava: internal error: ${err.message}\n`);
      if (process.env.MGLLAVA_DEBUG) process.stderr.write(`${err.stack}\n`);
    }
    process.exitCode = 1;
  }
}

// Run again with glibc's malloc tuned for onnxruntime (src/cli/malloc-tuning.ts), unless done.
const tuned = tunedMallocEnv(process.env);
if (tuned) {
  try {
    process.exitCode = await rerun(tuned);
  } catch {
    await main(process.argv); // could not start the child: go on untuned
  }
} else {
  await main(process.argv);
}
