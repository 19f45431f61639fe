#!/usr/bin/env node
// The `mgllava` command line: parse, call the library, format. Every user mistake ends as one
// line on stderr and a non-zero exit.

import { Command, Option, InvalidArgumentError } from 'commander';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { readFileSync } from 'node:fs';
import { InputError } from '../core/errors.js';
import { runEncode } from './encode.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
/** The tiny random-weight model shipped with the package (reference fixtures layout). */
export const BUNDLED_MODEL = join(ROOT, 'fixtures', 'tiny', 'mgllava');

function nonNegativeInt(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n)) throw new InvalidArgumentError('expected a non-negative integer');
  return n;
}

function positiveInt(v: string): number {
  const n = nonNegativeInt(v);
  if (n === 0) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

function modelOptions(cmd: Command): Command {
  return cmd
    .option('--model <dir>', 'model folder with mgllava_config.json (default: the bundled tiny model)')
    .option('--checkpoint <file>', 'MG-LLaVA checkpoint (.pth or .safetensors), release layout')
    .option('--llm <dir>', 'base LLM folder, release layout')
    .option('--visual-encoder <dir>', 'CLIP ViT folder (HF layout), release layout')
    .option('--visual-encoder-aux <dir>', 'ConvNeXt folder (open_clip layout), release layout')
    .option('--threads <n>', 'onnxruntime intra-op threads (default: one per core)', positiveInt);
}

export function buildProgram(): Command {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const program = new Command('mgllava')
    .description('MG-LLaVA multimodal model on onnxruntime')
    .version(pkg.version)
    .showHelpAfterError(false)
    // Commander's own errors (unknown option, missing argument) in the same one-line form.
    .configureOutput({ outputError: (str, write) => write(`mgllava: ${str.replace(/^error: /, '')}`) });

  modelOptions(program.command('encode'))
    .description('encode an image (and its detector boxes) into visual tokens, saved as safetensors')
    .requiredOption('--image <file>', 'image to encode (JPEG, PNG, WebP, ...)')
    .option('--boxes <file>', 'detector boxes JSON {"boxes": [[x0,y0,x1,y1],...], "labels": [...], "scores": [...]} in image pixels')
    .requiredOption('--out <file>', 'output .safetensors: image_tokens, box_tokens, boxes, pixel_values, pixel_values_aux')
    .option('--box-limit <n>', 'if more boxes than this survive NMS, keep the top 20 per label (5 when n <= 50; 0 = no cap)', nonNegativeInt, 100)
    .addOption(new Option('--max-pixels <n>', 'refuse images with more pixels than this').argParser(positiveInt).default(100_000_000))
    .option('-q, --quiet', 'no progress on stderr')
    .action(async (o) => runEncode({ ...o, model: o.model ?? defaultModel(o) }));
  return program;
}

/** The bundled model when the user named no model parts at all. */
function defaultModel(o: { checkpoint?: string; visualEncoder?: string; visualEncoderAux?: string }): string | undefined {
  return o.checkpoint || o.visualEncoder || o.visualEncoderAux ? undefined : BUNDLED_MODEL;
}

async function main(argv: string[]): Promise<void> {
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

await main(process.argv);
