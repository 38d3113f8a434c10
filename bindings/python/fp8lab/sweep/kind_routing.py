"""Task kind ``routing_flips``: how many tokens a gate precision routes to a different expert set than
a reference gate (paper §2.1.2; REFERENCE.md "MoE routing": the DeepSeek reference gate runs in
BF16, HF's in FP32).

Each sample draws ``tokens`` x 256 gate logits N(0, logit_std^2) and, when ``bias_std`` > 0, a
float32 balancing bias N(0, bias_std^2); both gates route the same arrays (the seed axes leave out
``gate``). A flip is a token whose *set* of experts differs (order within the top-k is not a flip).
"""
from __future__ import annotations

import numpy as np

from .kinds import Axis, Kind, integer, number, one_of

EXPERTS = 256


def _recipes():
    from ..moe import recipes
    return recipes()


def run(task) -> dict:
    from ..moe import route

    p, prm = task.point, task.params
    out: dict = {"flips": [], "flip_fraction": []}
    for i in task.samples:
        rng = task.rng(i)
        logits = (p["logit_std"] * rng.standard_normal((prm["tokens"], EXPERTS))).astype(np.float32)
        bias = (p["bias_std"] * rng.standard_normal(EXPERTS)).astype(np.float32) if p["bias_std"] > 0 else None
        ids, _ = route(logits, bias=bias, spec=p["gate"])
        ref, _ = route(logits, bias=bias, spec=prm["reference"])
        a = np.sort(np.asarray(ids, dtype=np.int64), axis=1)
        b = np.sort(np.asarray(ref, dtype=np.int64), axis=1)
        flips = int(np.count_nonzero(np.any(a != b, axis=1)))
        out["flips"].append(flips)
        out["flip_fraction"].append(flips / prm["tokens"])
    return out


KIND = Kind(
    name="routing_flips",
    doc="tokens whose expert set under a gate differs from a reference gate's, per sample",
    axes=(
        Axis("gate", "deepseek_v3", one_of(_recipes), "router recipe under test (fp8lab.moe.recipes())"),
        Axis("bias_std", 0.0, number(0.0, 1e3), "standard deviation of the float32 balancing bias (0: no bias)"),
        Axis("logit_std", 1.0, number(1e-6, 1e3), "standard deviation of the gate logits"),
    ),
    params=(
        Axis("tokens", 4096, integer(1, 1 << 20), "tokens per sample"),
        Axis("reference", "deepseek_v3_hf", one_of(_recipes), "the reference gate (default: HF's FP32 gate)"),
    ),
    seed_axes=("bias_std", "logit_std"),
    run=run,
    figures=(
        {"name": "flips_vs_bias", "x": "bias_std", "y": "flip_fraction", "logx": False, "logy": False,
         "title": "Tokens routed differently from the reference gate vs bias spread"},
    ),
)
