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
