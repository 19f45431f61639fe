"""The reference stack for the training bench: one MG-LLaVA training step (forward, backward,
clip_grad_norm_, AdamW) written directly in PyTorch with the release's semantics (the Conv-Gate
fusion, the projectors, a LLaMA/Phi-3 decoder with eager attention as HF's, the shifted
cross-entropy), on the same weights and the same batch as mgllava-ts (bench/train-step.ts writes
the batch). Like ours, the head computes logits only at the labelled positions.

usage: peer_torch_train.py MG_DIR LLM_DIR INPUTS.safetensors STAGE THREADS STEPS
prints one JSON line {step_s, steps_s, load_s, peak_rss_bytes, loss, version}.
"""
import json
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from peer_torch import load_safetensors  # noqa: E402

torch.set_grad_enabled(True)  # peer_torch switches autograd off for the vision bench


def load_llm(folder):
    index = os.path.join(folder, 'model.safetensors.index.json')
    if os.path.exists(index):
        files = sorted(set(json.load(open(index))['weight_map'].values()))
        out = {}
        for f in files:
            out.update(load_safetensors(os.path.join(folder, f)))
        return out
    return load_safetensors(os.path.join(folder, 'model.safetensors'))


# numpy's little-endian dtype for each safetensors dtype the batch file holds.
NUMPY_DTYPE = {'F32': '<f4', 'I64': '<i8'}


def load_safetensors_of(path, dtype):
    """The tensors of one safetensors dtype ('F32' or 'I64') in `path`, the others skipped."""
    import struct
    import numpy as np
    with open(path, 'rb') as f:
        b = f.read()
    n = struct.unpack('<Q', b[:8])[0]
    header = json.loads(b[8:8 + n])
    out = {}
    for k, v in header.items():
        if k == '__metadata__' or v['dtype'] != dtype:
            continue
        s, e = v['data_offsets']
        out[k] = torch.from_numpy(np.frombuffer(b[8 + n + s:8 + n + e], dtype=NUMPY_DTYPE[dtype]).copy().reshape(v['shape']))
    return out


def fuse(w, low, high, grid):
    g = lambda k: w['fuse_module.' + k]
    h = F.conv2d(F.gelu(F.conv2d(high, g('slow_conv.weight'), g('slow_conv.bias'))), g('slow_proj.weight'), g('slow_proj.bias'))
    h = h.flatten(2).transpose(1, 2)
    B, N, C = low.shape
    f = F.conv2d(low.transpose(1, 2).reshape(B, C, grid, grid), g('fast_conv.weight'), g('fast_conv.bias'), padding=3, groups=C)
    f = F.conv2d(F.gelu(f), g('fast_proj.weight'), g('fast_proj.bias'))
    l = low + f.flatten(2).transpose(1, 2)
    pooled = torch.cat([l, h], -1).mean(1, keepdim=True)
    gate = F.linear(F.gelu(F.linear(pooled, g('gate.0.weight'), g('gate.0.bias'))), g('gate.2.weight'), g('gate.2.bias'))
    return l + h * torch.tanh(gate)


def project(w, prefix, x, depth):
    x = F.linear(x, w[prefix + 'model.0.weight'], w[prefix + 'model.0.bias'])
    for i in range(1, depth):
        x = F.linear(F.gelu(x), w[prefix + 'model.%d.weight' % (2 * i)], w[prefix + 'model.%d.bias' % (2 * i)])
    return x


def rms(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate(x, cos, sin, rd):
    r, rest = x[..., :rd], x[..., rd:]
    x1, x2 = r[..., :rd // 2], r[..., rd // 2:]
    return torch.cat([r * cos + torch.cat([-x2, x1], -1) * sin, rest], -1)


def decoder(w, cfg, x, positions):
    H = cfg['hidden_size']
    nh = cfg['num_attention_heads']
    kvh = cfg.get('num_key_value_heads', nh)
    hd = cfg.get('head_dim') or H // nh
    eps = cfg['rms_norm_eps']
    rope = cfg.get('rope_parameters') or {}
    theta = rope.get('rope_theta', cfg.get('rope_theta', 10000.0))
    rd = int(hd * rope.get('partial_rotary_factor', cfg.get('partial_rotary_factor', 1.0)))
    phi3 = cfg['model_type'] == 'phi3'
    B, T, _ = x.shape
    inv = 1.0 / (theta ** (torch.arange(0, rd, 2, dtype=torch.int64).float() / rd))
    freqs = torch.arange(T).float()[:, None] * inv[None, :]
    emb = torch.cat([freqs, freqs], -1)
    cos, sin = emb.cos(), emb.sin()
    mask = torch.full((T, T), float('-inf')).triu(1)
    for i in range(cfg['num_hidden_layers']):
        p = lambda k: w['model.layers.%d.%s' % (i, k)]
        h = rms(x, p('input_layernorm.weight'), eps)
        if phi3:
            q, k, v = F.linear(h, p('self_attn.qkv_proj.weight')).split([nh * hd, kvh * hd, kvh * hd], -1)
        else:
            q, k, v = (F.linear(h, p('self_attn.%s_proj.weight' % n)) for n in 'qkv')
        q = rotate(q.view(B, T, nh, hd).transpose(1, 2), cos, sin, rd)
        k = rotate(k.view(B, T, kvh, hd).transpose(1, 2), cos, sin, rd).repeat_interleave(nh // kvh, 1)
        v = v.view(B, T, kvh, hd).transpose(1, 2).repeat_interleave(nh // kvh, 1)
        att = torch.softmax(q @ k.transpose(2, 3) / hd ** 0.5 + mask, -1) @ v
        x = x + F.linear(att.transpose(1, 2).reshape(B, T, nh * hd), p('self_attn.o_proj.weight'))
        h = rms(x, p('post_attention_layernorm.weight'), eps)
        if phi3:
            gate, up = F.linear(h, p('mlp.gate_up_proj.weight')).chunk(2, -1)
        else:
            gate, up = F.linear(h, p('mlp.gate_proj.weight')), F.linear(h, p('mlp.up_proj.weight'))
        x = x + F.linear(F.silu(gate) * up, p('mlp.down_proj.weight'))
    x = x.reshape(B * T, H)[positions]
    head = w['lm_head.weight'] if 'lm_head.weight' in w else w['model.embed_tokens.weight']
    return F.linear(rms(x, w['model.norm.weight'], eps), head)


def main():
    mg_dir, llm_dir, inputs, stage, threads, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    mgcfg = json.load(open(os.path.join(mg_dir, 'mgllava_config.json')))
    depth = mgcfg.get('projector_depth', 2)
    ck = load_safetensors(os.path.join(mg_dir, 'model.safetensors'))
    llm = load_llm(llm_dir)
    # The checkpoint's fine-tuned llm.* weights replace the base LLM's (as chat and training load them).
    for k in [k for k in ck if k.startswith('llm.')]:
        llm[k[4:]] = ck.pop(k)
    cfg = json.load(open(os.path.join(llm_dir, 'config.json')))
    batch = load_safetensors_of(inputs, 'F32')
    ints = load_safetensors_of(inputs, 'I64')
    ids, labels = ints['input_ids'], ints['labels']
    trainable = []
    for k, t in ck.items():
        if k.startswith(('fuse_module.', 'projector.', 'bbox_projector.')):
            t.requires_grad_(True)
            trainable.append(t)
    if stage == 2:
        for t in llm.values():
            t.requires_grad_(True)
            trainable.append(t)
    opt = torch.optim.AdamW(trainable, lr=1e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    grid = int(batch['low_res_feat'].shape[1] ** 0.5)
    img_pos = int((ids == -200).nonzero()[0])
    # Shifted labels: position t predicts token t + 1 (the image and box rows carry none).
    n_vis = batch['low_res_feat'].shape[1] + batch['box_feats'].shape[0]
    full_labels = torch.cat([labels[:img_pos], torch.full((n_vis,), -100, dtype=torch.int64), labels[img_pos + 1:]])
    positions = (full_labels[1:] != -100).nonzero()[:, 0]
    targets = full_labels[1:][positions]
    load = time.perf_counter() - t0

    def step():
        opt.zero_grad(set_to_none=True)
        img = project(ck, 'projector.', fuse(ck, batch['low_res_feat'], batch['high_feat'], grid), depth)[0]
        box = project(ck, 'bbox_projector.', batch['box_feats'], depth)
        emb = llm['model.embed_tokens.weight']
        x = torch.cat([emb[ids[:img_pos]], img, box, emb[ids[img_pos + 1:]]], 0)[None]
        loss = F.cross_entropy(decoder(llm, cfg, x, positions), targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        return float(loss)

    step()  # warm-up
    times = []
    loss = 0.0
    for _ in range(steps):
        s = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - s)
    srt = sorted(times)
    print(json.dumps({
        'step_s': srt[len(srt) // 2], 'steps_s': times, 'load_s': load,
        'peak_rss_bytes': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        'loss': loss, 'version': torch.__version__,
    }))


if __name__ == '__main__':
    main()
