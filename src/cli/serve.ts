// `mgllava serve`: the OpenAI-compatible server (src/server) from the command line. Ctrl-C or
// SIGTERM stops accepting, cancels what waits and runs, and exits.

import { InputError } from '../core/errors.js';
import type { ModelSpec } from '../model/model-files.js';
import { startServer } from '../server/server.js';
import { tagsFromFlags } from './detect.js';

export interface ServeArgs extends ModelSpec {
  host: string;
  port: number;
  apiKey?: string;
  parallel: number;
  maxQueue: number;
  maxPixels: number;
  maxBody: number;
  cors?: string;
  allowLocalFiles?: boolean;
  threads?: number;
  template?: string;
  packedCache?: string | false;
  tags?: string;
  coco?: boolean;
  threshold?: number;
  quiet?: boolean;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

export async function runServe(a: ServeArgs): Promise<void> {
  const log = (s: string) => {
    if (!a.quiet) process.stderr.write(`${s}\n`);
  };
  if (!LOOPBACK.has(a.host)) log(`mgllava: note: listening on ${a.host}, beyond this machine${a.apiKey ? '' : ' and without --api-key'}`);
  const tags = tagsFromFlags(a, false);
  const detection = tags !== undefined || a.threshold !== undefined ? { ...(tags ? { tags } : {}), ...(a.threshold !== undefined ? { threshold: a.threshold } : {}) } : undefined;
  const server = await startServer({
    host: a.host,
    port: a.port,
    apiKey: a.apiKey,
    maxQueue: a.maxQueue,
    maxBody: a.maxBody,
    cors: a.cors,
    allowLocalFiles: a.allowLocalFiles ?? false,
    worker: {
      spec: { model: a.model, checkpoint: a.checkpoint, llm: a.llm, visualEncoder: a.visualEncoder, visualEncoderAux: a.visualEncoderAux, detector: a.detector },
      threads: a.threads,
      template: a.template,
      packedCache: a.packedCache,
      maxPixels: a.maxPixels,
      parallel: a.parallel,
      ...(detection ? { detection } : {}),
    },
  });
  log(`mgllava: serving on ${server.url} (loading the model...)`);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log(`mgllava: ${signal}: stopping`);
    void server.close().then(() => process.exit(0));
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  try {
    const info = await server.ready;
    log(`mgllava: ready: model ${info.id} (${info.template}${info.detector ? ', detector' : ''}) at ${server.url}/v1`);
  } catch (e) {
    await server.close();
    throw new InputError(`the model failed to load: ${(e as Error).message}`);
  }
  await new Promise(() => undefined); // until a signal
}
