"""Task kind ``gemm_error``: the error of an emulated block-scaled FP8 GEMM, per sample.

Each sample draws A (M x K, the distribution ``dist``) and B (N x K; Gaussian weights for
``llm_outliers``) from the report's input generators, quantises both with the scale ``rule`` in the
``tile`` layout, runs ``fp8lab.gemm`` and measures against two references:
  - the exact product of the *quantised* operands (``fp8lab.gemm_exact``): the accumulation error
    alone (``fp8lab.metrics``: max/mean relative error, calc_diff, max ULP; and ``normwise``,
    ||D - exact||_F / ||exact||_F);
  - the float64 product of the unquantised float32 inputs (``total_normwise``): quantisation and
    accumulation together. float32 x float32 products are exact in binary64; the float64 sum adds
    a relative error of about K * 2^-53, far below every FP8 error measured here.
N_C = "none" runs the tensor-core chain over the whole K (no promotion); it needs per-row scales
(``tile: per_row``), as ``fp8lab.gemm`` says. Tiles: ``1x128`` = DeepSeek-V3's 1x128 activations
and 128x128 weights (paper §3.3.1); ``per_row`` = one scale per row of A and of B; ``1x32`` = MX
blocks on both operands.
"""
from __future__ import annotations

import numpy as np

from .kinds import Axis, Kind, integer, one_of

TILES = {"1x128": ((1, 128), (128, 128)), "per_row": None, "1x32": ((1, 32), (1, 32))}
METRICS = ("max_rel_error", "mean_rel_error", "calc_diff", "max_ulp")


def _rules():
    from ..quant import scale_rules
    return scale_rules()


def _instructions():
    from ..accum import tensor_core_names
    return tensor_core_names()


def _distributions():
    from ..report.inputs import DISTRIBUTIONS
    return DISTRIBUTIONS


def _normwise(d: np.ndarray, ref: np.ndarray) -> float:
    den = float(np.linalg.norm(ref))
    return float(np.linalg.norm(d - ref)) / den if den > 0 else float(np.linalg.norm(d - ref))


def run(task) -> dict:
    from ..blockgemm import gemm, gemm_exact, metrics
    from ..quant import quantize
    from ..report.inputs import operands

    p, prm = task.point, task.params
    k = p["K"]
    tiles = TILES[p["tile"]] or ((1, k), (1, k))
    promoted = p["nc"] != "none"
    out: dict = {name: [] for name in METRICS + ("normwise", "total_normwise")}
    for i in task.samples:
        a, b = operands(p["dist"], prm["M"], prm["N"], k, task.rng(i))
        qa = quantize(a, tile=tiles[0], fmt=p["fmt"], rule=p["rule"])
        qb = quantize(b, tile=tiles[1], fmt=p["fmt"], rule=p["rule"])
        d = gemm(qa, qb, accumulate="promoted" if promoted else "tensorcore",
                 promote_every=p["nc"] if promoted else 128, combine=p["combine"],
                 instruction=p["instruction"], out=prm["out"])
        exact = gemm_exact(qa, qb)
        m = metrics(d, exact, out=prm["out"])
        for name in METRICS:
            out[name].append(float(m[name]))
        out["normwise"].append(_normwise(d, exact))
        out["total_normwise"].append(_normwise(d, a.astype(np.float64) @ b.astype(np.float64).T))
    return out


KIND = Kind(
    name="gemm_error",
    doc="error of an emulated block-scaled FP8 GEMM vs the exact product (accumulation) and vs float64 "
        "of the unquantised inputs (total), per sample",
    axes=(
        Axis("K", 4096, integer(1, 65536), "reduction length"),
        Axis("nc", 128, integer(1, 65536, also=("none",)),
             "promotion interval N_C (elements), or 'none' for the tensor-core chain over the whole K"),
        Axis("tile", "1x128", one_of(tuple(TILES)), "scale layout: 1x128 (A) + 128x128 (B), per_row, or 1x32"),
        Axis("rule", "deepseek", one_of(_rules), "scale rule (fp8lab.scale_rules())"),
        Axis("fmt", "e4m3", one_of(("e4m3", "e5m2")), "element format of both operands"),
        Axis("instruction", "hopper_fp8", one_of(_instructions), "tensor-core preset (fp8lab.accum.tensor_core_names())"),
        Axis("combine", "deepgemm", one_of(("deepgemm", "triton", "cublas")), "order the scales meet a promoted partial sum"),
        Axis("dist", "gaussian", one_of(_distributions), "input distribution (fp8lab.report.inputs)"),
    ),
    params=(
        Axis("M", 16, integer(1, 4096), "rows of A (outputs per sample: M x N)"),
        Axis("N", 16, integer(1, 4096), "rows of B"),
        Axis("out", "fp32", one_of(("bf16", "fp32", "fp64")), "output format of the GEMM"),
    ),
    seed_axes=("K", "dist"),
    run=run,
    figures=(
        {"name": "accumulation_error_vs_K", "x": "K", "y": "normwise", "logx": True, "logy": True,
         "title": "Accumulation error vs K (normwise, vs the exact product of the quantised operands)"},
        {"name": "total_error_vs_K", "x": "K", "y": "total_normwise", "logx": True, "logy": True,
         "title": "Total error vs K (normwise, vs float64 of the unquantised inputs)"},
    ),
)
