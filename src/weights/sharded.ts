// Sharded checkpoints: `model.safetensors.index.json` (or `pytorch_model.bin.index.json`), i.e.
// {"metadata": {...}, "weight_map": {tensor name: shard file name}}, with shard names relative
// to the index's folder. The shards are opened once each and presented as one WeightStore.

import { readFileSync, existsSync } from 'node:fs';
import { dirname, join, isAbsolute } from 'node:path';
import { InputError } from '../core/errors.js';
import { TensorRef, WeightStore } from './types.js';
import { SafetensorsStore } from './safetensors.js';
import { TorchCheckpointStore } from './torch-checkpoint.js';

export class ShardedStore implements WeightStore {
  private constructor(
    readonly path: string,
    /** tensor name -> the shard store holding it (insertion order = the index's order). */
    private readonly owner: Map<string, WeightStore>,
    readonly metadata: Readonly<Record<string, unknown>>,
  ) {}

  static open(indexPath: string): ShardedStore {
    let text: string;
    try {
      text = readFileSync(indexPath, 'utf8');
    } catch (e) {
      throw new InputError(`${indexPath}: cannot open weight index (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, indexPath);
    }
    let index: { weight_map?: unknown; metadata?: unknown };
    try {
      index = JSON.parse(text) as typeof index;
    } catch {
      throw new InputError(`${indexPath}: weight index is not valid JSON`, indexPath);
    }
    const map = index.weight_map;
    if (!map || typeof map !== 'object' || Array.isArray(map)) {
      throw new InputError(`${indexPath}: weight index has no "weight_map" object`, indexPath);
    }
    const folder = dirname(indexPath);
    const shards = new Map<string, { store: WeightStore; names: Set<string> }>();
    const owner = new Map<string, WeightStore>();
    for (const [name, file] of Object.entries(map as Record<string, unknown>)) {
      if (typeof file !== 'string' || isAbsolute(file) || file.split(/[\\/]/).includes('..')) {
        throw new InputError(`${indexPath}: weight_map entry ${name} has a bad shard name ${JSON.stringify(file)}`, indexPath);
      }
      let shard = shards.get(file);
      if (!shard) {
        const shardPath = join(folder, file);
        if (!existsSync(shardPath)) {
          throw new InputError(`${indexPath}: shard ${file} is missing (expected at ${shardPath})`, shardPath);
        }
        const store = file.endsWith('.safetensors') ? SafetensorsStore.open(shardPath) : TorchCheckpointStore.open(shardPath);
        shard = { store, names: new Set(store.keys()) };
        shards.set(file, shard);
      }
      if (!shard.names.has(name)) throw new InputError(`${indexPath}: tensor ${name} is not in its shard ${file}`, join(folder, file));
      owner.set(name, shard.store);
    }
    const metadata = (index.metadata && typeof index.metadata === 'object' ? index.metadata : {}) as Record<string, unknown>;
    return new ShardedStore(indexPath, owner, metadata);
  }

  keys(): string[] {
    return [...this.owner.keys()];
  }

  get(name: string): TensorRef | undefined {
    return this.owner.get(name)?.get(name);
  }
}
