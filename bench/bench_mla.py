"""MLA speed (issue #15 rows), each row a ratio against its baseline measured in the same run:

  init_weights  DeepSeek-V3 dims: seconds (goal <= 1 s), against numpy drawing as many float32
                uniforms (Generator.random).
  forward       DeepSeek-V3 dims, FP8LAB_BENCH_MLA_FWD_TOKENS (128) tokens, absorbed form:
                fp8lab.mla.forward against torch FP32 of the same layer (same shapes and op
                sequence: projections, RMSNorm, RoPE, absorbed einsums, causal softmax, wo; plain
                FP32 on torch's own kernels). Ratio = torch time / fp8lab time (goal >= 0.25).
  decode        FP8LAB_BENCH_MLA_SEQS (32) sequences x FP8LAB_BENCH_MLA_TOKENS (4096) cached tokens
                x FP8LAB_BENCH_MLA_HEADS (16) heads, DeepSeek-V3 cache dims (512 + 64), BF16 cache
                (FP8LAB_BENCH_MLA_CACHE=fp8 for FP8), FP8LAB_BENCH_MLA_SPLITS (4) splits:
                fp8lab.mla.decode against torch FP32 paged attention (gather the blocks through the
                block table, two batched matmuls, softmax) and numpy FP32; and as a fraction of the
                FP32 peak, measured here as torch's float32 matmul rate (2048^3, all threads).
                Goal >= 0.3 of that peak.

FP8LAB_BENCH_MLA_ROWS picks rows (comma list of init,forward,decode; default all). Timings are the
best of FP8LAB_BENCH_MLA_REPEATS (3) runs of each side, alternated. Quote the load (uptime) with
every figure: ratios are in one process, but a loaded machine still moves them.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

import fp8lab
from fp8lab import mla

try:
    import torch
except ImportError:  # the torch rows are skipped, the rest still run
    torch = None

REPEATS = int(os.environ.get("FP8LAB_BENCH_MLA_REPEATS", 3))


def best(*fns):
    """Best-of-REPEATS wall time of each fn, the fns alternated; returns (times, last results)."""
    times, results = [float("inf")] * len(fns), [None] * len(fns)
    for _ in range(REPEATS):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            results[i] = fn()
            times[i] = min(times[i], time.perf_counter() - t0)
    return times, results


def bench_init(spec):
    rng = np.random.default_rng(0)
    (t_emu, t_np), (w, _) = best(lambda: mla.init_weights(spec, 0),
                                 lambda: rng.random(n_elements(spec), dtype=np.float32))
    n = sum(v.size for v in w.values())
    print(f"init_weights (DeepSeek-V3 dims, {n / 1e6:.0f} M weights): {t_emu:.3f} s (goal <= 1 s); "
          f"numpy random float32 of as many: {t_np:.3f} s; ratio numpy/fp8lab {t_np / t_emu:.3f}")
    return w


def n_elements(spec):
    H, qk = spec.heads, spec.nope + spec.rope
    n = spec.q_lora * spec.hidden + spec.q_lora + H * qk * spec.q_lora if spec.q_lora else H * qk * spec.hidden
    return n + (spec.kv_lora + spec.rope) * spec.hidden + spec.kv_lora + H * (spec.nope + spec.v) * spec.kv_lora \
        + spec.hidden * H * spec.v


def torch_forward(x, w, spec, cos, sin):
    """The absorbed MLA layer in plain torch FP32 (timing baseline: same shapes and op sequence)."""
    T, H, C, R, nope = x.shape[0], spec.heads, spec.kv_lora, spec.rope, spec.nope

    def rms(a, g):
        return a * torch.rsqrt(a.pow(2).mean(-1, keepdim=True) + spec.rms_eps) * g

    def rope(a):  # interleaved pairs, a [..., T, (heads,) R]
        a2 = a.reshape(*a.shape[:-1], R // 2, 2)
        c, s = (cos[:, None, :], sin[:, None, :]) if a.dim() == 3 else (cos, sin)
        return torch.stack((a2[..., 0] * c - a2[..., 1] * s, a2[..., 0] * s + a2[..., 1] * c), -1).flatten(-2)

    if spec.q_lora:
        q = rms(x @ w["wq_a"].T, w["q_norm"]) @ w["wq_b"].T
    else:
        q = x @ w["wq"].T
    q = q.view(T, H, nope + R)
    q_nope, q_pe = q[..., :nope], rope(q[..., nope:])
    kv = x @ w["wkv_a"].T
    lat, k_pe = rms(kv[:, :C], w["kv_norm"]), rope(kv[:, C:])
    wkv_b = w["wkv_b"].view(H, nope + spec.v, C)
    q_abs = torch.einsum("thd,hdc->thc", q_nope, wkv_b[:, :nope])
    s = (torch.einsum("thc,sc->hts", q_abs, lat) + torch.einsum("thr,sr->hts", q_pe, k_pe)) * mla.softmax_scale(spec)
    s = s + torch.full((T, T), float("-inf")).triu(1)
    o_lat = torch.einsum("hts,sc->thc", s.softmax(-1), lat)
    o = torch.einsum("thc,hdc->thd", o_lat, wkv_b[:, nope:])
    return o.reshape(T, H * spec.v) @ w["wo"].T


def bench_forward(spec, w):
    T = int(os.environ.get("FP8LAB_BENCH_MLA_FWD_TOKENS", 128))
    x = np.random.default_rng(1).uniform(-3 ** 0.5, 3 ** 0.5, (T, spec.hidden)).astype(np.float32)
    fns = [lambda: mla.forward(x, w, spec, form="absorbed")]
    if torch is not None:
        tw = {k: torch.from_numpy(v) for k, v in w.items()}
        tx = torch.from_numpy(x)
        ang = torch.arange(T, dtype=torch.float32)[:, None] * torch.tensor(
            [10000.0 ** (-2 * i / spec.rope) for i in range(spec.rope // 2)])
        cos, sin = ang.cos(), ang.sin()
        fns.append(lambda: torch_forward(tx, tw, spec, cos, sin))
    with_torch = torch.inference_mode() if torch is not None else _null()
    with with_torch:
        times, _ = best(*fns)
    line = f"forward (DeepSeek-V3 dims, {T} tokens, absorbed): fp8lab {times[0]:.3f} s"
    if torch is not None:
        line += f"; torch FP32 {times[1]:.3f} s; ratio torch/fp8lab {times[1] / times[0]:.3f} (goal >= 0.25)"
    print(line)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def numpy_decode(q, cache_f32, table, lens, scale, kv_lora):
    """Plain float32 attention per sequence: BLAS matmuls, numpy exp (not pinned)."""
    B, H, D = q.shape
    out = np.zeros((B, H, kv_lora), np.float32)
    page = cache_f32.shape[1]
    for b in range(B):
        n = int(lens[b])
        k = cache_f32[table[b, :-(-n // page)]].reshape(-1, D)[:n]
        s = (q[b] @ k.T) * np.float32(scale)
        e = np.exp(s - s.max(axis=1, keepdims=True))
        out[b] = (e @ k[:, :kv_lora]) / e.sum(axis=1, keepdims=True)
    return out


def torch_paged_decode(q, cache_f32, table, scale, kv_lora, L):
    """Paged decode in torch FP32, all sequences of length L: gather the blocks through the block
    table, scores by one batched matmul, softmax, P.V by another."""
    B = q.shape[0]
    k = cache_f32[table].reshape(B, -1, q.shape[-1])[:, :L]
    s = torch.bmm(q, k.transpose(1, 2)) * scale
    return torch.bmm(s.softmax(-1), k[..., :kv_lora])


def fp32_peak():
    a = torch.randn(2048, 2048)
    (t,), _ = best(lambda: a @ a)
    return 2 * 2048 ** 3 / t


def bench_decode():
    seqs = int(os.environ.get("FP8LAB_BENCH_MLA_SEQS", 32))
    tokens = int(os.environ.get("FP8LAB_BENCH_MLA_TOKENS", 4096))
    heads = int(os.environ.get("FP8LAB_BENCH_MLA_HEADS", 16))
    splits = int(os.environ.get("FP8LAB_BENCH_MLA_SPLITS", 4))
    cache_fmt = os.environ.get("FP8LAB_BENCH_MLA_CACHE", "bf16")
    spec = mla.MlaSpec(heads=heads, num_splits=splits, cache=cache_fmt)
    rng = np.random.default_rng(0)
    lat = [rng.standard_normal((tokens, spec.kv_lora), dtype=np.float32) for _ in range(seqs)]
    kpe = [rng.standard_normal((tokens, spec.rope), dtype=np.float32) for _ in range(seqs)]
    q = (rng.standard_normal((seqs, heads, spec.kv_lora + spec.rope), dtype=np.float32) * 0.5).astype(np.float32)
    cache, table, lens = mla.build_cache(lat, kpe, spec)
    del lat, kpe
    # The baselines read the same values the emulator reads.
    if cache_fmt == "bf16":
        cache_f32 = (cache[:, :, 0, :].astype(np.uint32) << 16).view(np.float32)
    else:
        import ml_dtypes

        c = cache[:, :, 0, :]
        e = c[..., :spec.kv_lora].view(ml_dtypes.float8_e4m3fn).astype(np.float32)
        sc = np.ascontiguousarray(c[..., spec.kv_lora:spec.kv_lora + 4 * (spec.kv_lora // 128)]).view("<f4")
        rope = np.ascontiguousarray(c[..., spec.kv_lora + 4 * (spec.kv_lora // 128):]).view("<u2").astype(np.uint32) << 16
        cache_f32 = np.concatenate([e * np.repeat(sc, 128, axis=-1), rope.view(np.float32)], axis=-1)
    scale = mla.softmax_scale(spec)
    fns = [lambda: mla.decode(q, cache, table, lens, spec)[0],
           lambda: numpy_decode(q, cache_f32, table, lens, scale, spec.kv_lora)]
    if torch is not None:
        tq, tc, tt = torch.from_numpy(q), torch.from_numpy(cache_f32), torch.from_numpy(table.astype(np.int64))
        fns.append(lambda: torch_paged_decode(tq, tc, tt, scale, spec.kv_lora, tokens).numpy())
    with torch.inference_mode() if torch is not None else _null():
        times, (out, out_np, *rest) = best(*fns)
        peak = fp32_peak() if torch is not None else None
    flops = 2.0 * seqs * heads * tokens * (spec.kv_lora + spec.rope + spec.kv_lora)
    rel = float(np.linalg.norm(out - out_np) / np.linalg.norm(out_np))
    print(f"decode: {seqs} seqs x {tokens} cached tokens x {heads} heads, cache {cache_fmt}, {splits} splits, "
          f"{fp8lab.num_threads()} threads")
    print(f"  fp8lab.mla.decode  {times[0]:8.3f} s  {flops / times[0] / 1e9:7.1f} GFLOP/s"
          f"  (outputs agree with numpy to {rel:.2e} normwise)")
    print(f"  numpy float32      {times[1]:8.3f} s  ratio numpy/fp8lab {times[1] / times[0]:.3f}")
    if torch is not None:
        print(f"  torch FP32 paged   {times[2]:8.3f} s  ratio torch/fp8lab {times[2] / times[0]:.3f}")
        print(f"  FP32 peak (torch float32 matmul 2048^3, {torch.get_num_threads()} threads) {peak / 1e9:.1f} GFLOP/s: "
              f"fp8lab decode at {flops / times[0] / peak:.3f} of peak (goal >= 0.3)")
    return rel < 1e-2


def main() -> int:
    rows = os.environ.get("FP8LAB_BENCH_MLA_ROWS", "init,forward,decode").split(",")
    print(f"load: {os.getloadavg()[0]:.1f} (1-min average)")
    ok = True
    if "init" in rows or "forward" in rows:
        spec = mla.MlaSpec()
        w = bench_init(spec) if "init" in rows else mla.init_weights(spec, 0)
        if "forward" in rows:
            bench_forward(spec, w)
        del w
    if "decode" in rows:
        ok = bench_decode() and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
