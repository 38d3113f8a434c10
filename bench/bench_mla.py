"""MLA decode throughput: fp8lab.mla.decode (the bit-pinned split-KV emulation) against a vectorised
numpy float32 implementation of the same attention, measured in the same run.

Shape (issue #9): 64 sequences x 4096 cached tokens x 128 heads, DeepSeek-V3 cache dims (512
latent + 64 rope), BF16 cache, one query token per sequence. Override with FP8LAB_BENCH_MLA_SEQS,
FP8LAB_BENCH_MLA_TOKENS, FP8LAB_BENCH_MLA_HEADS, FP8LAB_BENCH_MLA_SPLITS, FP8LAB_BENCH_MLA_CACHE
(bf16|fp8). Prints tokens/s (query tokens decoded per second, and cached key-tokens attended per
second) and the ratio emulator / numpy.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

import fp8lab
from fp8lab import mla


def numpy_decode(q, cache_f32, table, lens, scale, kv_lora):
    """Plain float32 attention per sequence: BLAS matmuls, numpy exp (not pinned)."""
    B, H, D = q.shape
    out = np.zeros((B, H, kv_lora), np.float32)
    lse = np.full((B, H), np.inf, np.float32)
    page = cache_f32.shape[1]
    for b in range(B):
        n = int(lens[b])
        if n == 0:
            continue
        k = cache_f32[table[b, :-(-n // page)]].reshape(-1, D)[:n]
        s = (q[b] @ k.T) * np.float32(scale)
        m = s.max(axis=1, keepdims=True)
        e = np.exp(s - m)
        l = e.sum(axis=1, keepdims=True)
        out[b] = (e @ k[:, :kv_lora]) / l
        lse[b] = m[:, 0] + np.log(l[:, 0])
    return out, lse


def main() -> int:
    seqs = int(os.environ.get("FP8LAB_BENCH_MLA_SEQS", 64))
    tokens = int(os.environ.get("FP8LAB_BENCH_MLA_TOKENS", 4096))
    heads = int(os.environ.get("FP8LAB_BENCH_MLA_HEADS", 128))
    splits = int(os.environ.get("FP8LAB_BENCH_MLA_SPLITS", 4))
    cache_fmt = os.environ.get("FP8LAB_BENCH_MLA_CACHE", "bf16")
    spec = mla.MlaSpec(heads=heads, num_splits=splits, cache=cache_fmt)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    lat = [rng.standard_normal((tokens, spec.kv_lora), dtype=np.float32) for _ in range(seqs)]
    kpe = [rng.standard_normal((tokens, spec.rope), dtype=np.float32) for _ in range(seqs)]
    q = (rng.standard_normal((seqs, heads, spec.kv_lora + spec.rope), dtype=np.float32) * 0.5).astype(np.float32)
    cache, table, lens = mla.build_cache(lat, kpe, spec)
    del lat, kpe
    t_build = time.perf_counter() - t0

    # The numpy side reads the same values the emulator reads.
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
    t0 = time.perf_counter()
    out_np, lse_np = numpy_decode(q, cache_f32, table, lens, scale, spec.kv_lora)
    t_np = time.perf_counter() - t0

    t0 = time.perf_counter()
    out, lse = mla.decode(q, cache, table, lens, spec)
    t_emu = time.perf_counter() - t0

    rel = float(np.linalg.norm(out - out_np) / np.linalg.norm(out_np))
    keys = seqs * tokens
    print(f"mla decode: {seqs} seqs x {tokens} cached tokens x {heads} heads, cache {cache_fmt}, "
          f"{splits} splits, {fp8lab.num_threads()} threads (cache build {t_build:.1f} s)")
    pairs = keys * heads / 1e6
    print(f"  fp8lab.mla.decode  {t_emu:8.3f} s  {seqs / t_emu:9.2f} tokens/s  {pairs / t_emu:8.1f} M (key, head) pairs/s")
    print(f"  numpy float32      {t_np:8.3f} s  {seqs / t_np:9.2f} tokens/s  {pairs / t_np:8.1f} M (key, head) pairs/s")
    print(f"  ratio emulator/numpy throughput: {t_np / t_emu:.3f}  (outputs agree to {rel:.2e} normwise)")
    return 0 if rel < 1e-2 else 1


if __name__ == "__main__":
    sys.exit(main())
