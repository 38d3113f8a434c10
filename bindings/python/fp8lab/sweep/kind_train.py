"""Task kind ``train``: training recipe x seed through the training lab (``fp8lab.torch.train``).

Sample j of a point is one training run of the small DeepSeek-shaped model under ``recipe`` with
training seed ``seed_offset + j`` (model initialisation and batches; the same seed gives every
recipe the same initialisation and batches, so runs are paired by seed across recipes). A task
with ``lo..hi`` trains seeds ``lo..hi-1``: a grid of recipes x ``samples`` seeds, sharded over
workers. The values are the run's numbers (final and best validation loss, the loss curve,
divergence, expert load, per-GEMM error); its wall-clock figures (tokens/s, seconds) stay out, so
the results are the same bits wherever a run happened (the training lab fixes torch's thread
count to ``threads``, part of the grid).
"""
from __future__ import annotations

from .kinds import Axis, Kind, integer, number, one_of

SIZES = ("moe", "dense", "tiny", "tiny_dense")
WALL_CLOCK = ("tokens_per_s", "seconds")


def _recipes():
    from ..torch import recipes
    return recipes()


def run(task) -> dict:
    import torch

    from ..torch import ByteData, TrainConfig, recipe, sized
    from ..torch.train import run_one

    p, prm = task.point, task.params
    tc = TrainConfig(steps=prm["steps"], batch=prm["batch"], seq=prm["seq"], lr=prm["lr"],
                     eval_every=min(prm["eval_every"], prm["steps"]), threads=prm["threads"],
                     bias_update=p["bias_update"]).validate()
    model_cfg = sized(p["model"])
    data = ByteData.pydoc_topics()
    data.check(tc.batch, tc.seq)
    out: dict = {}
    prev = torch.get_num_threads()
    torch.set_num_threads(tc.threads)
    try:
        for j in task.samples:
            rec = run_one(recipe(p["recipe"]), prm["seed_offset"] + j, model_cfg, tc, data)
            for k, v in rec.items():
                if k not in WALL_CLOCK and k not in ("recipe", "seed"):
                    out.setdefault(k, []).append(v)
            out.setdefault("train_seed", []).append(prm["seed_offset"] + j)
    finally:
        torch.set_num_threads(prev)
    return out


KIND = Kind(
    name="train",
    doc="one training run per sample (training seed = seed_offset + sample index) of the training lab's "
        "small DeepSeek-shaped model under a recipe; validation loss, divergence, expert load, GEMM error",
    axes=(
        Axis("recipe", "deepseek_fp8", one_of(_recipes), "training recipe (fp8lab.torch.recipes())"),
        Axis("model", "tiny", one_of(SIZES), "model size (fp8lab.torch.sized)"),
        Axis("bias_update", True, lambda v: _bool(v), "auxiliary-loss-free bias update on (paper §2.1.2)"),
    ),
    params=(
        Axis("steps", 50, integer(1, 1_000_000), "optimizer steps per run"),
        Axis("batch", 4, integer(1, 4096), "sequences per step"),
        Axis("seq", 64, integer(1, 65536), "tokens per sequence"),
        Axis("lr", 3e-3, number(1e-12, 10.0), "peak learning rate"),
        Axis("eval_every", 25, integer(1, 1_000_000), "steps between validation evaluations"),
        Axis("threads", 1, integer(1, 1024), "torch threads per run (part of the result's identity)"),
        Axis("seed_offset", 0, integer(0, 2**31 - 1), "training seed of sample 0"),
    ),
    seed_axes=(),
    run=run,
    figures=(
        {"name": "final_val_vs_recipe", "x": "recipe", "y": "final_val", "logx": False, "logy": False,
         "title": "Final validation loss per recipe (mean over seeds)"},
    ),
)


def _bool(v):
    if not isinstance(v, bool):
        raise TypeError(f"expected true or false, got {type(v).__name__} {v!r}")
    return v
