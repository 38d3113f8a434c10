"""golden diff: a regression report between two traces of the same inputs, with the verdict
``golden check`` would give (both call :meth:`Operation.judge`)."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from .. import _core
from ..formats import format_info
from .markdown import markdown_to_html
from .ops import operation
from .trace import Trace, read_trace, spec_hash
from .verdict import Verdict, values_of


def _ulp_histogram(ulps: np.ndarray) -> list[tuple[str, int]]:
    edges = [(1, 1), (2, 2), (3, 4), (5, 8), (9, 16), (17, 256), (257, math.inf)]
    out = []
    finite = ulps[np.isfinite(ulps)]
    for lo, hi in edges:
        c = int(np.count_nonzero((finite >= lo - 0.5) & (finite < hi + 0.5))) if hi != math.inf else int(
            np.count_nonzero(finite >= lo - 0.5))
        label = f"{lo}" if lo == hi else (f"{lo}–{hi}" if hi != math.inf else f"≥{lo}")
        out.append((label, c))
    # Sub-ULP moves (possible across binades or for wider outputs) and non-finite distances.
    out.insert(0, ("<1", int(np.count_nonzero((finite > 0) & (finite < 0.5)))))
    out.append(("NaN/Inf change", int(np.count_nonzero(~np.isfinite(ulps)))))
    return out


def _ulp_distances(a: np.ndarray, b: np.ndarray, fmt: str | None) -> np.ndarray:
    """The verdict's own ULP distance (emulator/checks/verdict.cpp), element by element."""
    if fmt is None:
        mant, emin = 52, -1022
    else:
        info = format_info(fmt)
        mant, emin = info["mantissa_bits"], info["min_normal_exponent"]
    return _core.verdict_ulp_distances(np.ascontiguousarray(a, dtype=np.float64).ravel(),
                                       np.ascontiguousarray(b, dtype=np.float64).ravel(), mant, emin)


def _spec_difference(a: dict, b: dict) -> list[str]:
    lines = []
    for key in sorted(set(a) | set(b)):
        if a.get(key, "<absent>") != b.get(key, "<absent>"):
            lines.append(f"- `{key}`: `{json.dumps(a.get(key, '<absent>'))}` → `{json.dumps(b.get(key, '<absent>'))}`")
    return lines


@dataclasses.dataclass
class DiffResult:
    markdown: str
    verdict: Verdict
    moved: int
    compared: int

    def html(self) -> str:
        """The report as one self-contained HTML page (the Markdown subset diff writes)."""
        return markdown_to_html(self.markdown, title="fp8lab regression report")


def diff(a, b, block: int = 128) -> DiffResult:
    """A regression report between traces ``a`` (before) and ``b`` (after) of the same inputs."""
    ta = a if isinstance(a, Trace) else read_trace(a)
    tb = b if isinstance(b, Trace) else read_trace(b)
    name_a = Path(ta.path).name if ta.path else "A"
    name_b = Path(tb.path).name if tb.path else "B"
    if ta.op != tb.op:
        raise ValueError(f"b: {name_b} records op {tb.op!r}, {name_a} records {ta.op!r}; diff compares one operation")
    ins_a, ins_b = ta.of_role("input"), tb.of_role("input")
    if sorted(ins_a) != sorted(ins_b) or any(
            ins_a[k].array.tobytes() != ins_b[k].array.tobytes() or ins_a[k].array.shape != ins_b[k].array.shape
            for k in ins_a):
        raise ValueError(f"b: {name_b} and {name_a} do not hold the same inputs; diff needs traces of the same inputs")
    o = operation(ta.op)
    ta, tb = o.adapt(ta), o.adapt(tb)
    spec = o.normalize_spec(ta.spec)  # A is the reference: its spec decides, as in `golden check A`
    inputs = {k: t.array for k, t in ta.of_role("input").items()}
    lines = [f"# Regression report: `{name_a}` → `{name_b}`", "",
             f"- operation: `{ta.op}`",
             f"- producers: `{ta.producer}` → `{tb.producer}`",
             f"- spec: `{spec_hash(ta.spec)[:16]}` → `{spec_hash(tb.spec)[:16]}`"]
    spec_lines = _spec_difference(ta.spec, tb.spec)
    lines += ["", "## Spec difference", ""] + (spec_lines or ["The specs are identical."])
    verdicts, total_moved, total = [], 0, 0
    names = sorted(set(ta.of_role("output")) | set(ta.of_role("intermediate")) |
                   set(tb.of_role("output")) | set(tb.of_role("intermediate")))
    for name in names:
        lines += ["", f"## `{name}`", ""]
        if name not in ta.tensors or name not in tb.tensors:
            lines.append(f"Only in {'B' if name not in ta.tensors else 'A'}.")
            continue
        x, y = ta.tensors[name], tb.tensors[name]
        if x.dtype != y.dtype or x.array.shape != y.array.shape:
            lines.append(f"Changed type: {x.dtype}{list(x.array.shape)} → {y.dtype}{list(y.array.shape)}.")
            verdicts.append(Verdict("violation", f"{name}: dtype or shape changed"))
            continue
        fmt = o.value_format(spec, name, x.dtype)
        moved_mask = (x.array.reshape(x.array.size, -1).view(np.uint8) !=
                      y.array.reshape(y.array.size, -1).view(np.uint8)).any(axis=1) if x.array.size else np.zeros(0, bool)
        moved = int(moved_mask.sum())
        total_moved += moved
        total += x.array.size
        lines.append(f"{moved} of {x.array.size} elements moved ({x.dtype}, shape {list(x.array.shape)}, role {x.role}).")
        if not moved:
            verdicts.append(Verdict("bit-identical", f"{name}: bit-identical"))
            continue
        is_float = fmt is not None or np.issubdtype(x.array.dtype, np.floating)
        if is_float:
            va, vb = values_of(x.array, x.dtype, fmt), values_of(y.array, y.dtype, fmt)
            ulps = _ulp_distances(va, vb, fmt)[moved_mask]
            lines += ["", f"ULP distance (in {fmt or 'fp64'}) | elements", "--- | ---"]
            lines += [f"{label} | {count}" for label, count in _ulp_histogram(ulps) if count]
            lines.append(f"\nmax ULP distance: {np.max(ulps):g}")
        where = np.flatnonzero(moved_mask)
        arr_shape = x.array.shape
        if len(arr_shape) >= 2:
            coords = np.unravel_index(where, arr_shape)
            rows, cols = coords[-2], coords[-1]
            urows, rcount = np.unique(rows, return_counts=True)
            lines += ["", "Rows with moved elements: " + ", ".join(f"{r} ({c})" for r, c in list(zip(urows, rcount))[:32])
                      + (" …" if urows.size > 32 else "")]
            blocks = {}
            for r, c in zip(rows, cols):
                key = (int(r) // block, int(c) // block)
                blocks[key] = blocks.get(key, 0) + 1
            lines += [f"Blocks ({block}x{block}) with moved elements: " +
                      ", ".join(f"({br}, {bc}): {n}" for (br, bc), n in sorted(blocks.items())[:32])]
        else:
            ublk, bcount = np.unique(where // block, return_counts=True)
            lines += ["", f"Blocks of {block} with moved elements: " +
                      ", ".join(f"{int(k)} ({int(c)})" for k, c in zip(ublk, bcount))]
            lines.append("First moved indices: " + ", ".join(str(int(i)) for i in where[:16]) +
                         (" …" if where.size > 16 else ""))
        if x.role != "output":
            lines.append("\nAn intermediate: informative, not part of the verdict.")
            continue
        # The verdict `golden check` gives when B's output is what a kernel returned for A's inputs.
        v = o.judge(spec, inputs, name, x, y.array, what="")
        if o.bound(spec, inputs, name) is None:
            lines.append("\nBound: the spec pins these bits, so every moved element is a violation.")
        else:
            lines.append(f"\nBound: certified by the spec; {v.details.get('violations', 0)} moved elements are outside it.")
        lines.append(f"\n**Verdict:** {v.summary}")
        verdicts.append(v)
    verdict = Verdict.worst(verdicts, f"{name_a} → {name_b}")
    lines[1:1] = ["", f"**{verdict.kind}**: {total_moved} of {total} compared elements moved."]
    return DiffResult("\n".join(lines) + "\n", verdict, total_moved, total)
