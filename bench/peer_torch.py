"""The reference stack for `npm run bench`: MG-LLaVA's vision side written directly in PyTorch
with the release's semantics (HF CLIP eager attention, timm ConvNeXt, the Conv-Gate fusion,
torchvision roi_align), on the same weights and inputs as mgllava-ts.

usage: peer_torch.py MODEL_DIR INPUTS.safetensors THREADS RUNS [--frames]
prints one JSON line {load, encoder, boxes, rss} (seconds, GiB), medians over RUNS.
--frames (bench/video-vision.ts): INPUTS holds a video's frames, pixel_values [F,3,336,336] and
pixel_values_aux [F,3,768,768], boxes [sum k,4] and box_counts [F]; the frames go through the
towers, fusion and projector as one batch, every frame's boxes through one roi_align against
that frame's features; the JSON adds total (median of encoder + boxes per run).
Needs Debian's python3-torch, python3-torchvision and libopenblas0-pthread (without an optimised
BLAS, Debian's torch is ~50x slower and the comparison is meaningless).
"""
import json
import os
import resource
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

torch.set_grad_enabled(False)


def load_safetensors(path):
    with open(path, 'rb') as f:
        b = f.read()
    n = struct.unpack('<Q', b[:8])[0]
    header = json.loads(b[8:8 + n])
    header.pop('__metadata__', None)
    base = 8 + n
    out = {}
    for k, v in header.items():
        s, e = v['data_offsets']
        raw = b[base + s:base + e]
        if v['dtype'] == 'F32':
            a = np.frombuffer(raw, dtype='<f4').copy()
        elif v['dtype'] == 'BF16':  # upcast: bf16 bits are the top half of f32
            a = (np.frombuffer(raw, dtype='<u2').astype(np.uint32) << 16).view(np.float32)
        elif v['dtype'] == 'F16':
            a = np.frombuffer(raw, dtype='<f2').astype(np.float32)
        else:
            raise ValueError(v['dtype'])
        out[k] = torch.from_numpy(a.reshape(v['shape']))
    return out


def clip_forward(w, cfg, pv, select=-2):
    D, nh, eps = cfg['hidden_size'], cfg['num_attention_heads'], cfg['layer_norm_eps']
    hd = D // nh
    p = 'vision_model.'
    x = F.conv2d(pv, w[p + 'embeddings.patch_embedding.weight'], stride=cfg['patch_size'])
    B = x.shape[0]
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([w[p + 'embeddings.class_embedding'].expand(B, 1, -1), x], 1)
    x = x + w[p + 'embeddings.position_embedding.weight'][None]
    x = F.layer_norm(x, (D,), w[p + 'pre_layrnorm.weight'], w[p + 'pre_layrnorm.bias'], eps)
    # hidden_states[select]: run only the layers it needs
    upto = cfg['num_hidden_layers'] + 1 + select if select < 0 else select
    for i in range(upto):
        g = lambda n: w[f'{p}encoder.layers.{i}.{n}']
        h = F.layer_norm(x, (D,), g('layer_norm1.weight'), g('layer_norm1.bias'), eps)
        q = F.linear(h, g('self_attn.q_proj.weight'), g('self_attn.q_proj.bias')) * hd ** -0.5
        k = F.linear(h, g('self_attn.k_proj.weight'), g('self_attn.k_proj.bias'))
        v = F.linear(h, g('self_attn.v_proj.weight'), g('self_attn.v_proj.bias'))
        heads = lambda t: t.view(B, -1, nh, hd).transpose(1, 2)
        a = torch.softmax(heads(q) @ heads(k).transpose(-1, -2), -1) @ heads(v)
        x = x + F.linear(a.transpose(1, 2).reshape(B, -1, D), g('self_attn.out_proj.weight'), g('self_attn.out_proj.bias'))
        h = F.layer_norm(x, (D,), g('layer_norm2.weight'), g('layer_norm2.bias'), eps)
        h = F.linear(h, g('mlp.fc1.weight'), g('mlp.fc1.bias'))
        h = h * torch.sigmoid(1.702 * h) if cfg['hidden_act'] == 'quick_gelu' else F.gelu(h)
        x = x + F.linear(h, g('mlp.fc2.weight'), g('mlp.fc2.bias'))
    return x[:, 1:]


def ln2d(x, w, b):
    return F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), w, b, 1e-6).permute(0, 3, 1, 2)


def convnext_forward(w, px):
    p = 'visual.trunk.'
    x = ln2d(F.conv2d(px, w[p + 'stem.0.weight'], w[p + 'stem.0.bias'], stride=4), w[p + 'stem.1.weight'], w[p + 'stem.1.bias'])
    outs, s = [], 0
    while f'{p}stages.{s}.blocks.0.gamma' in w:
        q = f'{p}stages.{s}.'
        if s > 0:
            x = ln2d(x, w[q + 'downsample.0.weight'], w[q + 'downsample.0.bias'])
            x = F.conv2d(x, w[q + 'downsample.1.weight'], w[q + 'downsample.1.bias'], stride=2)
        b = 0
        while f'{q}blocks.{b}.gamma' in w:
            g = lambda n: w[f'{q}blocks.{b}.{n}']
            C = x.shape[1]
            h = F.conv2d(x, g('conv_dw.weight'), g('conv_dw.bias'), padding=3, groups=C).permute(0, 2, 3, 1)
            h = F.layer_norm(h, (C,), g('norm.weight'), g('norm.bias'), 1e-6)
            h = F.linear(F.gelu(F.linear(h, g('mlp.fc1.weight'), g('mlp.fc1.bias'))), g('mlp.fc2.weight'), g('mlp.fc2.bias'))
            x = x + (h * g('gamma')).permute(0, 3, 1, 2)
            b += 1
        outs.append(x)
        s += 1
    return outs


def fuse(w, L, H):
    f = lambda n: w['fuse_module.' + n]
    B, N, C = L.shape
    s = int(round(N ** 0.5))
    h = F.conv2d(F.gelu(F.conv2d(H, f('slow_conv.weight'), f('slow_conv.bias'))), f('slow_proj.weight'), f('slow_proj.bias'))
    h = h.flatten(2).transpose(1, 2)
    grid = L.transpose(1, 2).reshape(B, C, s, s)
    l = F.conv2d(F.gelu(F.conv2d(grid, f('fast_conv.weight'), f('fast_conv.bias'), padding=3, groups=C)), f('fast_proj.weight'), f('fast_proj.bias'))
    l = L + l.flatten(2).transpose(1, 2)
    g = F.linear(F.gelu(F.linear(torch.cat([l, h], -1).mean(1), f('gate.0.weight'), f('gate.0.bias'))), f('gate.2.weight'), f('gate.2.bias'))
    return l + h * torch.tanh(g).unsqueeze(1)


def projector(w, name, x):
    g = lambda n: w[f'{name}.model.{n}']
    return F.linear(F.gelu(F.linear(x, g('0.weight'), g('0.bias'))), g('2.weight'), g('2.bias'))


def main():
    model_dir, inputs, threads, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    frames = '--frames' in sys.argv[5:]
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    cfg = json.load(open(os.path.join(model_dir, '..', 'clip', 'config.json')))
    cfg = cfg.get('vision_config', cfg)
    clip_w = load_safetensors(os.path.join(model_dir, '..', 'clip', 'model.safetensors'))
    cnx_w = load_safetensors(os.path.join(model_dir, '..', 'convnext', 'open_clip_model.safetensors'))
    mg_w = load_safetensors(os.path.join(model_dir, 'model.safetensors'))
    load = time.perf_counter() - t0
    x = load_safetensors(inputs)
    if frames:  # one box tensor per frame: roi_align's list form gives each its frame's batch index
        counts = [int(c) for c in x['box_counts'].tolist()]
        box_list = list(torch.split(x['boxes'], counts))
    else:
        box_list = [x['boxes']]
    enc_t, box_t = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        L = clip_forward(clip_w, cfg, x['pixel_values'])
        stages = convnext_forward(cnx_w, x['pixel_values_aux'])
        projector(mg_w, 'projector', fuse(mg_w, L, stages[-1]))
        enc_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        size = stages[0].shape[-2:]
        feats = torch.cat([stages[0]] + [F.interpolate(s, size=size, mode='bilinear', align_corners=False) for s in stages[1:]], 1)
        pooled = roi_align(feats, box_list, output_size=56, spatial_scale=size[0] / 768, sampling_ratio=-1, aligned=False).mean((2, 3))
        projector(mg_w, 'bbox_projector', pooled)
        box_t.append(time.perf_counter() - t0)
    median = lambda v: sorted(v)[len(v) // 2]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
    out = {'load': load, 'encoder': median(enc_t), 'boxes': median(box_t), 'rss': rss}
    if frames:
        out['total'] = median([a + b for a, b in zip(enc_t, box_t)])
    print(json.dumps(out))


if __name__ == '__main__':
    main()
