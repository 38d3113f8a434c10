"""Verdicts: fp8lab's one comparison vocabulary (bit-identical, within-bound, violation) for trace
tensors, built on the shared C++ comparison (emulator/checks/verdict.hpp)."""
from __future__ import annotations

import dataclasses
import json
from typing import Iterable

import numpy as np

from .. import _core
from ..formats import decode, format_info
from .trace import FORMAT_OF_DTYPE, NUMPY_OF_DTYPE


@dataclasses.dataclass
class Verdict:
    """One comparison's outcome, in fp8lab's one vocabulary (see emulator/checks/verdict.hpp).

    kind: "bit-identical", "within-bound" or "violation"; summary: one readable line; details: the
    counts, max ULP, max relative error, bound ratio and first offending element (JSON-able)."""

    kind: str
    summary: str
    details: dict = dataclasses.field(default_factory=dict)

    RANK = {"bit-identical": 0, "within-bound": 1, "violation": 2}

    @property
    def ok(self) -> bool:
        return self.kind != "violation"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "summary": self.summary, **self.details}

    @staticmethod
    def worst(verdicts: Iterable["Verdict"], what: str = "") -> "Verdict":
        verdicts = list(verdicts)
        if not verdicts:
            return Verdict("bit-identical", f"{what}: nothing to compare", {})
        worst = max(verdicts, key=lambda v: Verdict.RANK[v.kind])
        if len(verdicts) == 1:
            return worst
        parts = "; ".join(v.summary for v in verdicts if v.kind == worst.kind)
        return Verdict(worst.kind, parts, {"parts": [v.to_dict() for v in verdicts]})


def compare_values(got, expected, *, fmt: str | None, what: str, exact=None, bound=None,
                   shape=None) -> Verdict:
    """Compares two arrays of values of format ``fmt`` (ULPs counted in it) with the shared C++
    comparison. Without ``exact``/``bound`` any difference is a violation (a pinned result)."""
    got = np.ascontiguousarray(got, dtype=np.float64).ravel()
    expected = np.ascontiguousarray(expected, dtype=np.float64).ravel()
    if got.shape != expected.shape:
        return Verdict("violation", f"{what}: violation: got {got.size} elements, expected {expected.size}",
                       {"count": int(expected.size)})
    if fmt is None:
        mant, emin = 52, -1022
    else:
        info = format_info(fmt)
        mant, emin = info["mantissa_bits"], info["min_normal_exponent"]
    ex = None if exact is None else np.ascontiguousarray(exact, dtype=np.float64).ravel()
    bd = None if bound is None else np.ascontiguousarray(bound, dtype=np.float64).ravel()
    kind, summary, details = _core.verdict_compare(got, expected, ex, bd, list(shape or []), mant, emin, what)
    return Verdict(kind, summary, json.loads(details))


def values_of(array: np.ndarray, dtype: str, fmt: str | None = None) -> np.ndarray:
    """Float64 values of a trace tensor (FP8/BF16 bit patterns decoded exactly)."""
    fmt = fmt or FORMAT_OF_DTYPE.get(dtype)
    if dtype in ("F8_E4M3", "F8_E5M2", "BF16") or (fmt and dtype in ("U8", "U16", "U32")):
        return decode(np.ascontiguousarray(array), fmt)
    return np.asarray(array, dtype=np.float64)


def compare_tensors(name: str, dtype: str, got: np.ndarray, expected: np.ndarray, *, fmt: str | None = None,
                    what: str = "", exact=None, bound=None) -> Verdict:
    """Bits first (so two different NaN encodings, or -0 vs +0, are a difference), then values."""
    label = f"{what} {name}".strip()
    if got.shape != expected.shape:
        return Verdict("violation", f"{label}: violation: shape {tuple(got.shape)}, expected {tuple(expected.shape)}",
                       {"count": int(expected.size)})
    if np.ascontiguousarray(got).tobytes() == np.ascontiguousarray(expected).tobytes():
        return Verdict("bit-identical", f"{label}: bit-identical ({expected.size} elements)",
                       {"count": int(expected.size), "differing": 0})
    fmt = fmt or FORMAT_OF_DTYPE.get(dtype)
    if dtype in NUMPY_OF_DTYPE and not np.issubdtype(NUMPY_OF_DTYPE[dtype], np.floating) and fmt is None:
        # Integer tensors (indices, counts, raw scale bytes) are pinned: any change is a violation.
        diff = np.flatnonzero(np.ravel(got) != np.ravel(expected))
        i = int(diff[0])
        coord = list(np.unravel_index(i, expected.shape)) if expected.ndim else []
        return Verdict("violation", f"{label}: violation at {[int(c) for c in coord]}: got {np.ravel(got)[i]}, "
                       f"expected {np.ravel(expected)[i]} ({diff.size} of {expected.size} elements differ)",
                       {"count": int(expected.size), "differing": int(diff.size)})
    v = compare_values(values_of(got, dtype, fmt), values_of(expected, dtype, fmt), fmt=fmt, what=label,
                       exact=exact, bound=bound, shape=expected.shape)
    if v.kind == "bit-identical":  # bits differ but values compare equal: NaN payload or sign of NaN
        gb, eb = np.ravel(got).view(np.uint8), np.ravel(expected).view(np.uint8)
        i = int(np.flatnonzero(gb != eb)[0]) // got.dtype.itemsize
        return Verdict("violation", f"{label}: violation at flat index {i}: the bit patterns differ "
                       f"(0x{np.ravel(got).view(f'u{got.dtype.itemsize}')[i]:x} vs "
                       f"0x{np.ravel(expected).view(f'u{got.dtype.itemsize}')[i]:x}) though both decode to "
                       f"{np.ravel(values_of(expected, dtype, fmt))[i]}", v.details)
    return v

