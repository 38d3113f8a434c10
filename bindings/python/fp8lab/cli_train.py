"""``fp8lab train``: train the small DeepSeek-shaped model under training recipes x seeds; write
results.json, loss_curves.png and summary.md (fp8lab.torch.train)."""
from __future__ import annotations

import sys
import time

QUICK = {"model": "tiny", "steps": 40, "batch": 4, "seq": 32, "eval_every": 10, "eval_batches": 2,
         "gemm_sample_every": 10, "recipes": "fp32,bf16,deepseek_fp8", "seeds": "0"}


def _ints(text: str, arg: str) -> list[int]:
    try:
        vals = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"{arg}: {text!r} is not a comma-separated list of integers") from None
    if not vals or any(v < 0 for v in vals):
        raise ValueError(f"{arg}: expected non-negative integers, got {text!r}")
    return vals


def _train(args) -> int:
    import importlib

    t = importlib.import_module("fp8lab.torch.train")

    quick = QUICK if args.quick else {}
    pick = lambda name, default: getattr(args, name) if getattr(args, name) is not None else quick.get(name, default)  # noqa: E731
    recipes = [r.strip() for r in pick("recipes", "fp32,bf16,deepseek_fp8").split(",") if r.strip()]
    kwargs = {k: pick(k, None) for k in ("steps", "batch", "seq", "lr", "eval_every", "eval_batches", "threads",
                                          "gemm_sample_every")}
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if args.no_bias_update:
        kwargs["bias_update"] = False
    t0 = time.monotonic()
    res = t.train(recipes=recipes, seeds=_ints(pick("seeds", "0"), "--seeds"), model=pick("model", "moe"),
                  text=args.text, out=args.out, cache_dir=False if args.no_cache else args.cache,
                  progress=not args.quiet, **kwargs)
    sys.stdout.write(t.markdown(res))
    print(f"fp8lab train: wrote {args.out}/results.json, loss_curves.png, summary.md in "
          f"{time.monotonic() - t0:.1f}s", file=sys.stderr)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a small DeepSeek-shaped model under emulated FP8 recipes",
                       description="Train the small DeepSeek-shaped model (byte-level, pydoc topics or --text) once "
                                   "per recipe and seed with every Linear GEMM emulated; write DIR/results.json, "
                                   "DIR/loss_curves.png and DIR/summary.md.")
    p.add_argument("--recipes", default=None, metavar="LIST",
                   help="comma-separated recipe names (default fp32,bf16,deepseek_fp8; fp8lab.torch.recipes())")
    p.add_argument("--seeds", default=None, metavar="LIST", help="comma-separated seeds (default 0)")
    p.add_argument("--model", default=None, choices=("moe", "dense", "tiny", "tiny_dense"), help="model size (default moe)")
    p.add_argument("--steps", type=int, default=None, help="training steps per run (default 300)")
    p.add_argument("--batch", type=int, default=None, help="sequences per step (default 4)")
    p.add_argument("--seq", type=int, default=None, help="tokens per sequence (default 64)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default 3e-3; warmup, cosine decay)")
    p.add_argument("--eval-every", dest="eval_every", type=int, default=None, help="validation interval in steps")
    p.add_argument("--eval-batches", dest="eval_batches", type=int, default=None, help="validation batches")
    p.add_argument("--gemm-sample-every", dest="gemm_sample_every", type=int, default=None,
                   help="sample per-GEMM error against exact every N steps (0: never)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 1; recorded, part of the cache key)")
    p.add_argument("--no-bias-update", action="store_true", help="switch off the auxiliary-loss-free bias update")
    p.add_argument("--text", default=None, metavar="FILE", help="train on this file's bytes instead of pydoc topics")
    p.add_argument("--out", default="train_out", metavar="DIR", help="output folder (default train_out)")
    p.add_argument("--cache", default=None, metavar="DIR", help="run cache (default $FP8LAB_CACHE or ~/.cache/fp8lab/train)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the run cache")
    p.add_argument("--quick", action="store_true", help="tiny model, 40 steps, fp32/bf16/deepseek_fp8 (under a minute)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)
