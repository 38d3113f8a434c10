"""Error metrics of a result against an exact reference, in float64.

The DeepSeek-V3 paper (§3.3.2) quotes "a maximum relative error of nearly 2%" without naming the
metric, so the report shows three readings of it side by side:
- elementwise max: max_ij |r - e| / |e| over the non-zero exact entries (dominated by entries
  whose exact value happens to be small through cancellation);
- max over the larger half of |exact|: the same, restricted to entries with |e| at or above the
  median of |e| (what a reader usually means by "relative error" of a typical output);
- normwise: ||r - e||_F / ||e||_F.
Plus the elementwise mean relative error.
"""
from __future__ import annotations

import numpy as np


def relative_errors(result, exact) -> dict:
    r = np.asarray(result, dtype=np.float64).ravel()
    e = np.asarray(exact, dtype=np.float64).ravel()
    if r.shape != e.shape:
        raise ValueError(f"result: shape {r.shape} does not match exact {e.shape}")
    if not np.all(np.isfinite(r)):
        raise ValueError("result: contains non-finite values")
    nz = e != 0
    err = np.abs(r - e)
    rel = err[nz] / np.abs(e[nz])
    mag = np.abs(e)
    order = np.argsort(mag, kind="stable")
    top = order[len(order) // 2:]
    top = top[mag[top] != 0]
    norm_e = float(np.sqrt(np.sum(e * e)))
    return {
        "max_rel": float(rel.max()) if rel.size else 0.0,
        "mean_rel": float(rel.mean()) if rel.size else 0.0,
        "max_rel_top_half": float((err[top] / mag[top]).max()) if top.size else 0.0,
        "normwise": float(np.sqrt(np.sum(err * err)) / norm_e) if norm_e > 0 else 0.0,
    }


METRIC_LABELS = {
    "max_rel": "elementwise max",
    "max_rel_top_half": "max over larger half of |exact|",
    "normwise": "normwise",
    "mean_rel": "elementwise mean",
}


def pct(x: float) -> str:
    """A relative error as a percentage with 3 significant digits."""
    return f"{100.0 * x:.3g}%"


def sci(x: float) -> str:
    return f"{x:.3g}"
