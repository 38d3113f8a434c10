"""Training-step time of the emulated deepseek_fp8 recipe against the same model in plain torch FP32
(nn.Linear, torch's own CPU GEMMs), measured in the same run: steps alternate between the two
models so machine load hits both alike. Prints wall and CPU time per step and their ratios (the
issue's goal: deepseek_fp8 within 8x of FP32). Also bf16 (the BF16 tensor-core model has no vector
kernel in fp8lab and runs instruction by instruction) with --bf16, and any training recipe with --recipes
(e.g. the Blackwell rows deepgemm_sm100_fp8, mxfp8_te, nvfp4).

    PYTHONPATH=bindings/python:build/<dir>/python python bench/bench_train.py [--model moe] [--steps 5]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

import fp8lab.torch as ft
from fp8lab.torch.optim import AdamW


def _stepper(model, data, rng, batch, seq, moments):
    opt = AdamW(model.parameters(), moments=moments)

    def step():
        x, y = data.train_batch(rng, batch, seq)
        loss = F.cross_entropy(model(x).reshape(-1, 256), y.reshape(-1))
        loss.backward()
        opt.step(1e-3)
        opt.zero_grad()
    return step


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="moe", choices=("moe", "dense", "tiny", "tiny_dense"))
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--bf16", action="store_true", help="also time the bf16 recipe")
    ap.add_argument("--recipes", default="", help="more training recipes to time, comma-separated "
                    "(e.g. deepgemm_sm100_fp8,mxfp8_te,nvfp4)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = ft.ByteData.pydoc_topics()
    more = [r for r in args.recipes.split(",") if r]
    for r in more:
        ft.recipe(r)  # an unknown name fails here, listing the known ones
    names = ["fp32 torch", "deepseek_fp8"] + (["bf16"] if args.bf16 else []) + more
    steps = {}
    for name in names:
        torch.manual_seed(0)
        m = ft.Transformer(ft.sized(args.model))
        if name != "fp32 torch":
            ft.convert(m, name)
        steps[name] = _stepper(m, data, np.random.default_rng(0), args.batch, args.seq,
                               "fp32" if name == "fp32 torch" else ft.recipe(name)["optimizer"]["adam_moments"])
        steps[name]()  # warm-up
    wall = {n: [] for n in names}
    cpu = {n: [] for n in names}
    for _ in range(args.steps):
        for n in names:
            w0, c0 = time.perf_counter(), time.process_time()
            steps[n]()
            wall[n].append(time.perf_counter() - w0)
            cpu[n].append(time.process_time() - c0)
    base_w, base_c = np.median(wall["fp32 torch"]), np.median(cpu["fp32 torch"])
    print(f"model {args.model}, {args.batch} x {args.seq} tokens per step, torch threads 1, fp8lab threads "
          f"{__import__('fp8lab').num_threads()}, median of {args.steps} steps")
    for n in names:
        w, c = np.median(wall[n]), np.median(cpu[n])
        print(f"{n:>14}: {1e3 * w:8.1f} ms wall ({w / base_w:5.2f}x)  {1e3 * c:8.1f} ms CPU ({c / base_c:5.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
