"""Reading SASS (``cuobjdump -sass``) for the machine instructions that decide the numbers.

PTX says what was asked for; SASS says what runs. The two differ where ptxas lowers an
instruction the architecture lacks: an FP8 ``mma.sync`` on sm_90 becomes ``F2FP.F16.E4M3``
conversions plus ``HMMA.16816.F32`` (gpu/tests/check_sass.sh pins that finding). The SASS mnemonics
read here (nvdisasm 13): ``HGMMA``/``QGMMA`` (Hopper warpgroup MMA; QGMMA is the FP8 form),
``HMMA``/``IMMA``, ``UTC*MMA`` (Blackwell tcgen05), ``F2FP``/``F2F`` (conversions), ``MUFU.*``
(the special-function unit's approximate EX2, LG2, RCP, RSQ, SQRT, SIN, COS, TANH), and the FP32
``FFMA``/``FMUL``/``FADD`` counts.
"""
from __future__ import annotations

import re

__all__ = ["functions", "census"]

_FUNC = re.compile(r"^\s*Function\s*:\s*(\S+)")
_INS = re.compile(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*(?:\.[A-Z0-9_x]+)*)")
_KEEP = re.compile(r"^(HGMMA|QGMMA|IGMMA|BGMMA|HMMA|IMMA|DMMA|UTC\w*MMA\w*|F2FP|F2F|I2F|F2I|MUFU|FFMA|FMUL|FADD|"
                   r"FMNMX|HFMA2|HADD2|HMUL2)\b")


def functions(sass: str) -> dict[str, list[str]]:
    """Function name -> its instruction mnemonics (with modifiers), in order."""
    out: dict[str, list[str]] = {}
    current = None
    for line in sass.splitlines():
        m = _FUNC.match(line)
        if m:
            current = m.group(1)
            out.setdefault(current, [])
            continue
        if current is None:
            continue
        m = _INS.search(line)
        if m:
            out[current].append(m.group(1))
    return out


def census(sass: str, only: str | None = None) -> dict[str, int]:
    """Counts of the numerically relevant mnemonics (all functions, or those whose name contains
    ``only``). FFMA/FMUL/FADD are counted by base name; the others keep their modifiers."""
    counts: dict[str, int] = {}
    for name, body in functions(sass).items():
        if only and only not in name:
            continue
        for op in body:
            if not _KEEP.match(op):
                continue
            base = op.split(".")[0]
            key = base if base in ("FFMA", "FMUL", "FADD", "FMNMX", "HFMA2", "HADD2", "HMUL2") else op
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


_SASS_TYPES = {"F64": "fp64", "F32": "fp32", "TF32": "e8m10", "F16": "fp16", "BF16": "bf16", "E4M3": "e4m3",
               "E5M2": "e5m2", "E2M1": "e2m1", "UE8M0": "ue8m0", "E2M3": "e2m3fn", "E3M2": "e3m2fn"}
_SASS_ROUND = {"RZ": "toward_zero", "RM": "down", "RP": "up", "RN": "nearest_even", "RS": "stochastic"}


def mma_instructions(sass: str) -> list[dict]:
    """Tensor-core mnemonics in the same shape as ptx.mma_instructions (binary-only audits).
    ``QGMMA.64x128x32.F32.E4M3.E4M3``: shape, accumulator, A, B; ``HMMA.16816.F32[.BF16]``: m16n8k16
    with FP16 operands unless a second type says otherwise."""
    out: dict[str, dict] = {}
    for body in functions(sass).values():
        for op in body:
            if not re.match(r"^(HGMMA|QGMMA|HMMA|UTC\w*MMA)", op):
                continue
            g = out.get(op)
            if g is None:
                parts = op.split(".")
                types = [_SASS_TYPES[t] for t in parts[1:] if t in _SASS_TYPES]
                acc = types[0] if types else None
                if parts[0] in ("HGMMA", "QGMMA"):
                    family = "wgmma"
                    m = re.match(r"(\d+)x(\d+)x(\d+)", parts[1]) if len(parts) > 1 else None
                    shape = [int(x) for x in m.groups()] if m else None
                    a = types[1] if len(types) > 1 else "fp16"
                elif parts[0] == "HMMA":
                    family = "mma.sync"
                    m = re.match(r"(\d\d)(\d)(\d+)", parts[1]) if len(parts) > 1 else None
                    shape = [int(m.group(1)), int(m.group(2)), int(m.group(3))] if m else None
                    a = types[1] if len(types) > 1 else "fp16"
                else:
                    family, shape, a, acc = "tcgen05.mma", None, None, None
                g = out[op] = {"ptx": None, "sass": op, "family": family, "count": 0, "shape": shape, "a": a, "b": a,
                               "acc": acc, "kind": None, "block_scaled": False, "lines": []}
            g["count"] += 1
    return list(out.values())


def conversions(sass: str) -> list[dict]:
    """``F2FP``/``F2F`` conversions: destination type first (``F2FP.BF16.F32.PACK_AB`` is fp32 -> bf16),
    ``SATFINITE`` for saturation, a rounding token if any (round to nearest even otherwise)."""
    from .ptx import _wider_or_equal

    out: dict[str, dict] = {}
    for body in functions(sass).values():
        for op in body:
            if not op.startswith(("F2FP.", "F2F.")):
                continue
            g = out.get(op)
            if g is None:
                parts = op.split(".")[1:]
                types = [_SASS_TYPES[t] for t in parts if t in _SASS_TYPES]
                if len(types) < 2:
                    continue
                dst, src = types[0], types[1]
                exact = _wider_or_equal(dst, src)
                rnd = next((_SASS_ROUND[t] for t in parts if t in _SASS_ROUND), "nearest_even")
                g = out[op] = {"ptx": None, "sass": op, "from": src, "to": dst, "count": 0, "exact": exact,
                               "rounding": None if exact else rnd,
                               "overflow": None if exact else ("saturate" if "SATFINITE" in parts else "inf_or_nan"),
                               "relu": "RELU" in parts, "flush_subnormals": "FTZ" in parts, "lines": []}
            g["count"] += 1
    return list(out.values())
