// ConvNeXt trunk (timm layout, as inside open_clip's convnext_large_d_320): the four stage
// outputs at strides 4, 8, 16, 32. For ConvNeXt-L at 768 px: [B,192,192,192], [B,384,96,96],
// [B,768,48,48], [B,1536,24,24]. Head and text tower are not used.

import { Graph, Value } from '../graph/graph.js';
import { conv2d, gelu, layerNorm, layerNorm2d, linear, toNCHW, toNHWC } from '../graph/blocks.js';
import { InputError } from '../core/errors.js';
import { Params } from './params.js';
import { WeightStore } from '../weights/types.js';

export interface ConvNextConfig {
  depths: number[];
  dims: number[];
  eps: number;
}

/**
 * The architecture read off the checkpoint itself (block counts and channel widths), so the
 * same code serves every size; open_clip's config only names a timm model.
 */
export function convNextConfig(store: WeightStore, prefix = 'visual.trunk.'): ConvNextConfig {
  const depths: number[] = [];
  const dims: number[] = [];
  const dw = (s: number, b: number) => store.get(`${prefix}stages.${s}.blocks.${b}.conv_dw.weight`);
  if (!store.get(`${prefix}stem.0.weight`)) throw new InputError(`${store.path}: no ConvNeXt trunk (missing ${prefix}stem.0.weight)`, store.path);
  for (let s = 0; dw(s, 0); s++) {
    let d = 0;
    while (dw(s, d)) d++;
    depths.push(d);
    dims.push(dw(s, 0)!.shape[0]!);
  }
  if (depths.length !== 4) throw new InputError(`${store.path}: expected 4 ConvNeXt stages, found ${depths.length}`, store.path);
  return { depths, dims, eps: 1e-6 };
}

/** pixel_values_aux [B, 3, S, S] -> the four stage outputs (NCHW). */
export function convNextStages(g: Graph, p: Params, c: ConvNextConfig, pixels: Value): Value[] {
  const [d0] = c.dims as [number];
  // Stem: Conv 4x4/4 + LayerNorm2d
  let x = conv2d(g, pixels, p.take('stem.0.weight', [d0, 3, 4, 4]), p.take('stem.0.bias', [d0]), { stride: 4 }, 'stem');
  x = layerNorm2d(g, x, p.take('stem.1.weight', [d0]), p.take('stem.1.bias', [d0]), c.eps, 'stem.ln');
  const outs: Value[] = [];
  for (let s = 0; s < 4; s++) {
    const C = c.dims[s]!;
    const st = p.sub(`stages.${s}.`);
    if (s > 0) {
      // Downsample: LayerNorm2d + Conv 2x2/2
      const Cin = c.dims[s - 1]!;
      x = layerNorm2d(g, x, st.take('downsample.0.weight', [Cin]), st.take('downsample.0.bias', [Cin]), c.eps, `s${s}.down.ln`);
      x = conv2d(g, x, st.take('downsample.1.weight', [C, Cin, 2, 2]), st.take('downsample.1.bias', [C]), { stride: 2 }, `s${s}.down`);
    }
    for (let b = 0; b < c.depths[s]!; b++) {
      const k = st.sub(`blocks.${b}.`);
      const n = `s${s}.b${b}`;
      // Depthwise 7x7, then channels-last LN -> Linear 4x -> GELU -> Linear -> gamma, residual.
      let h = conv2d(g, x, k.take('conv_dw.weight', [C, 1, 7, 7]), k.take('conv_dw.bias', [C]), { pad: 3, groups: C }, `${n}.dw`);
      h = toNHWC(g, h);
      h = layerNorm(g, h, k.take('norm.weight', [C]), k.take('norm.bias', [C]), c.eps, `${n}.ln`);
      h = gelu(g, linear(g, h, k.take('mlp.fc1.weight', [4 * C, C]), k.take('mlp.fc1.bias', [4 * C]), `${n}.fc1`));
      h = linear(g, h, k.take('mlp.fc2.weight', [C, 4 * C]), k.take('mlp.fc2.bias', [C]), `${n}.fc2`);
      h = g.op1('Mul', [h, k.take('gamma', [C])]);
      x = g.op1('Add', [x, toNCHW(g, h)], {}, { name: `${n}.out` });
    }
    outs.push(x);
  }
  return outs;
}
