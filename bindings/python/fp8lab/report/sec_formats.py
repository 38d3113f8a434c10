"""Section 0: the formats themselves — what rounding one value to each format costs.

Round-to-nearest into a format with m stored mantissa bits has relative error at most
u = 2^-(m+1) in the normal range (Higham, Accuracy and Stability of Numerical Algorithms, §2.1).
The measurement checks that bound on log-uniform samples over each format's normal range, and shows
what a plain unscaled cast of N(0, 1) data costs (small values fall into E4M3's subnormals)."""
from __future__ import annotations

import numpy as np

from ..formats import decode, encode, format_info
from .context import Context
from .metrics import pct, relative_errors
from .section import Section

FORMATS = ("bf16", "fp16", "e5m6", "e4m3", "e5m2")


def _roundtrip(x: np.ndarray, fmt: str) -> np.ndarray:
    return decode(encode(x, fmt), fmt)


def run(ctx: Context) -> Section:
    sec = Section("formats", 0, "Number formats: the price of one rounding")
    n = ctx.pick(20_000, 200_000)
    ctx.progress.stage("formats", len(FORMATS))
    rows, data = [], {}
    for fmt in FORMATS:
        info = format_info(fmt)
        u = 2.0 ** -(info["mantissa_bits"] + 1)
        rng = ctx.rng("formats", fmt)
        lo = np.log2(info["min_normal"])
        hi = np.log2(min(info["max_finite"], 2.0 ** 100))
        mags = np.exp2(rng.uniform(lo, hi, n))
        # Keep samples below max_finite so saturation does not enter the rounding measurement.
        x = np.where(rng.integers(0, 2, n) == 1, 1.0, -1.0) * np.minimum(mags, info["max_finite"])
        x = x.astype(np.float32)
        normal = relative_errors(_roundtrip(x, fmt), x)
        g = rng.standard_normal(n).astype(np.float32)
        gauss = relative_errors(_roundtrip(g, fmt), g)
        data[fmt] = {"mantissa_bits": info["mantissa_bits"], "max_finite": info["max_finite"],
                     "unit_roundoff": u, "normal_range_max_rel": normal["max_rel"],
                     "normal_range_mean_rel": normal["mean_rel"], "gaussian_max_rel": gauss["max_rel"],
                     "gaussian_normwise": gauss["normwise"], "samples": n}
        rows.append([fmt, info["mantissa_bits"], f"{info['max_finite']:.6g}", pct(u), pct(normal["max_rel"]),
                     pct(normal["mean_rel"]), pct(gauss["max_rel"]), pct(gauss["normwise"])])
        ctx.progress.step(fmt)
    ctx.progress.finish()
    sec.data = data
    within = all(d["normal_range_max_rel"] <= d["unit_roundoff"] for d in data.values())
    e4 = data["e4m3"]
    sec.conclusion = (
        f"One round-to-nearest cast costs at most {pct(e4['unit_roundoff'])} per element in E4M3, "
        f"{pct(data['e5m2']['unit_roundoff'])} in E5M2 and {pct(data['bf16']['unit_roundoff'])} in BF16; "
        f"the measured maxima ({pct(e4['normal_range_max_rel'])}, {pct(data['e5m2']['normal_range_max_rel'])}, "
        f"{pct(data['bf16']['normal_range_max_rel'])}) "
        + ("stay within these bounds" if within else "EXCEED these bounds — a defect in the casts")
        + f", while an unscaled cast of N(0, 1) data to E4M3 loses up to {pct(e4['gaussian_max_rel'])} "
          "on the values that land among its subnormals — which is why FP8 needs scales.")
    sec.para(f"{n} log-uniform samples over each format's normal range (round to nearest even, saturating), "
             "and the same number of N(0, 1) samples cast without any scale. The bound u = 2^-(m+1) holds "
             "for normal values only.")
    sec.table("Relative error of one cast, measured against the float32 input",
              ["format", "mantissa bits", "max finite", "bound u", "max (normal range)", "mean (normal range)",
               "max (N(0,1), no scale)", "normwise (N(0,1), no scale)"], rows)
    return sec
