"""Reading PTX for the instructions that decide a kernel's numbers.

PTX is the last text form that still names rounding modifiers and source lines (``.loc``
directives, emitted by Triton always and by nvcc with ``-lineinfo``). The scan finds:
  * tensor-core instructions (``wgmma.mma_async``, ``mma.sync``, ``tcgen05.mma``) with shape and
    operand / accumulator types;
  * floating-point conversions (``cvt``) with rounding and ``satfinite``/``relu`` modifiers;
  * approximate operations whose results IEEE 754 does not pin (PTX ISA 9.7.3: ``div.full``,
    ``div.approx``, ``rcp.approx``, ``ex2.approx``, ``lg2.approx``, ``rsqrt.approx``,
    ``sqrt.approx``, ``sin/cos/tanh.approx``);
  * fused multiply-adds, and — by following registers from the last tensor-core instruction — in
    which order a promoted partial sum meets its scales and the accumulator (fp8lab's combine).
Opcodes are PTX ISA 8.x/9.x spellings as nvcc 13 and Triton 3.9 print them.
"""
from __future__ import annotations

import dataclasses
import re

__all__ = ["Instruction", "parse", "mma_instructions", "conversions", "approximate_ops", "fma_ops",
           "promotion_combines", "PTX_TYPE_FORMAT"]

#: PTX type suffix -> fp8lab format name (PTX ISA "Fundamental types" and the packed fp8 types).
PTX_TYPE_FORMAT = {
    "f32": "fp32", "f16": "fp16", "bf16": "bf16", "f64": "fp64", "tf32": "e8m10",
    "e4m3": "e4m3", "e5m2": "e5m2", "e2m1": "e2m1", "ue8m0": "ue8m0", "e2m3": "e2m3fn", "e3m2": "e3m2fn",
    "f16x2": "fp16", "bf16x2": "bf16", "e4m3x2": "e4m3", "e5m2x2": "e5m2", "e2m1x2": "e2m1",
    "ue8m0x2": "ue8m0", "e4m3x4": "e4m3", "e5m2x4": "e5m2",
}
#: PTX rounding modifier -> fp8lab rounding name (``.rs`` is PTX's stochastic rounding, sm_100a).
ROUNDING = {"rn": "nearest_even", "rz": "toward_zero", "rm": "down", "rp": "up", "rs": "stochastic",
            "rna": "nearest_away"}
_APPROX = re.compile(r"^(div\.full|div\.approx|rcp\.approx|ex2\.approx|lg2\.approx|rsqrt\.approx|sqrt\.approx|"
                     r"sin\.approx|cos\.approx|tanh\.approx)(\.[a-z0-9]+)*$")
_LOC = re.compile(r"^\s*\.loc\s+(\d+)\s+(\d+)\s+(\d+)(?:.*inlined_at\s+(\d+)\s+(\d+)\s+(\d+))?")
_FILE = re.compile(r'^\s*\.file\s+(\d+)\s+"([^"]*)"', re.M)
_FUNC = re.compile(r"^\s*(?:\.(?:visible|weak|extern)\s+)*\.(?:entry|func)\s+(?:\([^)]*\)\s*)?([A-Za-z_$][\w$]*)")
_REG = re.compile(r"%[A-Za-z_$][\w$]*")


@dataclasses.dataclass
class Instruction:
    """One PTX instruction: opcode, operand text, enclosing function and source location."""

    opcode: str
    operands: str
    function: str
    file: str | None
    line: int | None
    index: int  # position in the function's instruction list
    via: str | None = None  # the inlined library location (file:line) when the line is its call site

    @property
    def where(self) -> str:
        if self.line is None:
            return "(no line info)"
        name = (self.file or "?").rsplit("/", 1)[-1]
        return f"{name}:{self.line}"

    def regs(self) -> list[str]:
        return _REG.findall(self.operands)


def parse(ptx: str) -> list[Instruction]:
    """Instructions of every function, each with the last ``.loc`` before it."""
    files: dict[int, str] = {}
    for m in _FILE.finditer(ptx):
        files[int(m.group(1))] = m.group(2)
    out: list[Instruction] = []
    fn, loc, counter = "", (None, None, None), 0
    for raw in ptx.splitlines():
        # Inline asm arrives wrapped in braces on one line: "{  cvt.rn.bf16.f32 %rs9, %f1;}".
        line = raw.split("//", 1)[0].strip().lstrip("{").rstrip("}").strip()
        if not line:
            continue
        m = _FUNC.match(line)
        if m:
            fn, loc, counter = m.group(1), (None, None, None), 0
            continue
        m = _LOC.match(line)
        if m:
            # An inlined library function (tl.sigmoid in standard.py) is reported at the kernel's
            # call site, with the library line as `via`.
            if m.group(4):
                lib = (files.get(int(m.group(1))) or "?").rsplit("/", 1)[-1]
                loc = (files.get(int(m.group(4))), int(m.group(5)), f"{lib}:{m.group(2)}")
            else:
                loc = (files.get(int(m.group(1))), int(m.group(2)), None)
            continue
        if line.startswith((".", "$")) or line.endswith(":"):
            continue
        if line.startswith("@"):  # predicate guard
            parts = line.split(None, 1)
            if len(parts) < 2:
                continue
            line = parts[1]
        parts = line.rstrip(";").split(None, 1)
        opcode = parts[0]
        if not re.match(r"^[a-z][a-z0-9_:.]*$", opcode):
            continue
        out.append(Instruction(opcode, parts[1] if len(parts) > 1 else "", fn, loc[0], loc[1], counter, loc[2]))
        counter += 1
    return out


def _types(opcode: str) -> list[str]:
    return [t for t in opcode.split(".") if t in PTX_TYPE_FORMAT]


def _grouped(instrs: list[Instruction], describe) -> list[dict]:
    """Instructions grouped by opcode: ``describe(opcode)`` gives a group's fields (None: not of
    interest), to which each group adds its count and the source lines it occurs on."""
    groups: dict[str, dict] = {}
    for ins in instrs:
        g = groups.get(ins.opcode)
        if g is None:
            fields = describe(ins.opcode)
            if fields is None:
                continue
            g = groups[ins.opcode] = {**fields, "count": 0, "lines": []}
        g["count"] += 1
        if ins.where not in g["lines"]:
            g["lines"].append(ins.where)
    return list(groups.values())


def _mma_fields(op: str) -> dict | None:
    if op.startswith("wgmma.mma_async"):
        family = "wgmma"
    elif op.startswith("mma.sync") or op.startswith("mma.sp"):
        family = "mma.sync"
    elif op.startswith("tcgen05.mma"):
        family = "tcgen05.mma"
    else:
        return None
    shape = re.search(r"\.m(\d+)n(\d+)k(\d+)", op)
    types = _types(op)
    if family == "wgmma":  # wgmma.mma_async.sync.aligned.mMnNkK.dtype.atype.btype
        d, a, b = (types + [None] * 3)[:3]
    elif family == "mma.sync":  # mma.sync.aligned.mMnNkK.row.col.dtype.atype.btype.ctype
        d, a, b = (types + [None] * 3)[:3]
    else:  # tcgen05.mma: operand types live in the instruction descriptor, not the opcode
        d = a = b = None
    kind = re.search(r"kind::(\w+)", op)
    return {
        "ptx": op, "family": family,
        "shape": [int(x) for x in shape.groups()] if shape else None,
        "a": PTX_TYPE_FORMAT.get(a) if a else None, "b": PTX_TYPE_FORMAT.get(b) if b else None,
        "acc": PTX_TYPE_FORMAT.get(d) if d else None,
        "kind": kind.group(1) if kind else None,
        "block_scaled": ".block_scale" in op,
    }


def mma_instructions(instrs: list[Instruction]) -> list[dict]:
    """Tensor-core instructions grouped by opcode: family, shape, operand and accumulator formats."""
    return _grouped(instrs, _mma_fields)


def _cvt_fields(op: str) -> dict | None:
    if not op.startswith("cvt."):
        return None
    fields = op.split(".")[1:]
    types = [f for f in fields if f in PTX_TYPE_FORMAT]
    if len(types) < 2:
        return None  # integer <-> integer, or int <-> float (not a float rounding of interest)
    dst, src = PTX_TYPE_FORMAT[types[0]], PTX_TYPE_FORMAT[types[1]]
    rnd = next((ROUNDING[f] for f in fields if f in ROUNDING), None)
    widening = _wider_or_equal(dst, src)
    return {
        "ptx": op, "from": src, "to": dst,
        "exact": widening,
        "rounding": None if widening else (rnd or "nearest_even"),
        # PTX ISA cvt: .satfinite clamps to the largest finite value and maps NaN to NaN;
        # without it a narrowing float conversion overflows to Inf (or NaN for e4m3).
        "overflow": None if widening else ("saturate" if "satfinite" in fields else "inf_or_nan"),
        "relu": "relu" in fields,
        "flush_subnormals": "ftz" in fields,
    }


def conversions(instrs: list[Instruction]) -> list[dict]:
    """Floating-point ``cvt`` instructions grouped by opcode with what their modifiers mean."""
    return _grouped(instrs, _cvt_fields)


# Exponent range and significand bits of the formats a cvt can name; used only to decide whether
# a conversion can round (narrowing) or is exact (every source value is a destination value).
_RANGE = {"fp64": (11, 52), "fp32": (8, 23), "e8m10": (8, 10), "bf16": (8, 7), "fp16": (5, 10), "e5m2": (5, 2),
          "e4m3": (4, 3), "e3m2fn": (3, 2), "e2m3fn": (2, 3), "e2m1": (2, 1), "ue8m0": (8, 0)}


def _wider_or_equal(dst: str, src: str) -> bool:
    de, dm = _RANGE.get(dst, (0, 0))
    se, sm = _RANGE.get(src, (99, 99))
    return de >= se and dm >= sm and not (dst == "bf16" and src == "fp16")


def approximate_ops(instrs: list[Instruction]) -> list[dict]:
    """Approximate operations, one entry per (opcode, source line)."""
    groups: dict[tuple, dict] = {}
    for ins in instrs:
        if not _APPROX.match(ins.opcode):
            continue
        key = (ins.opcode, ins.where)
        g = groups.setdefault(key, {"ptx": ins.opcode, "where": ins.where, "line": ins.line,
                                    "file": ins.file, "via": ins.via, "count": 0})
        g["count"] += 1
    return sorted(groups.values(), key=lambda g: (g["line"] or 0, g["ptx"]))


def fma_ops(instrs: list[Instruction]) -> list[dict]:
    """``fma.rn`` instructions grouped by opcode and source line."""
    groups: dict[tuple, dict] = {}
    for ins in instrs:
        if re.match(r"^fma\.(rn|rz|rm|rp)(\.ftz)?(\.sat)?\.(f32|f32x2|f64|f16|bf16|f16x2|bf16x2)$", ins.opcode):
            g = groups.setdefault((ins.opcode, ins.where), {"ptx": ins.opcode, "where": ins.where, "count": 0})
            g["count"] += 1
    return list(groups.values())


def promotion_combines(instrs: list[Instruction]) -> dict[str, dict[str, int]]:
    """How scalar FP32 arithmetic after the tensor-core instructions of each function combines the
    partial sum p with scales and the accumulator, counted per fused/added output:
      ``cublas``   fma(fl(p*sa), sb, acc)  — an fma taking a product of p;
      ``deepgemm`` fma(fl(sa*sb), p, acc)  — an fma taking p and a product of two non-p values;
      ``triton``   fl(fl(fl(p*sa)*sb) + acc) — a product of a product of p, then a separate add.
    p is what an MMA writes to registers (the brace list of ``wgmma``/``mma.sync``) or what
    ``tcgen05.ld`` loads back from tensor memory (Blackwell). Values are followed through moves,
    packs and unpacks (``mov.b64 %rd, {%r1, %r2}``) and packed ``.f32x2`` arithmetic.
    Returns {function: {combine: count}} for functions with at least one recognised combine."""
    per_fn: dict[str, dict[str, int]] = {}
    by_fn: dict[str, list[Instruction]] = {}
    for ins in instrs:
        by_fn.setdefault(ins.function, []).append(ins)
    mma_ops = ("wgmma.mma_async", "mma.sync", "tcgen05.mma")
    for fn_name, body in by_fn.items():
        first = next((i for i, ins in enumerate(body) if ins.opcode.startswith((*mma_ops, "tcgen05.ld"))), None)
        if first is None:
            continue
        cls: dict[str, str] = {}  # register -> "p" | "mp" (p*s) | "mpp" (p*s*s) | "ms" (s*s)
        counts: dict[str, int] = {}
        for ins in body[first:]:
            op = ins.opcode
            dsts, srcs = _dst_src(ins)
            if op.startswith(("wgmma.mma_async", "mma.sync", "tcgen05.ld")):
                for r in dsts:
                    cls[r] = "p"
                continue
            if op.startswith("mov.") or op.startswith("cvt.f32.f32"):
                found = next((cls[r] for r in srcs if r in cls), None)
                for r in dsts:
                    if found:
                        cls[r] = found
                    else:
                        cls.pop(r, None)
                continue
            kinds = [cls.get(r) for r in srcs]
            if re.match(r"^mul(\.rn)?(\.ftz)?\.f32(x2)?$", op):
                k = "mp" if "p" in kinds else "mpp" if "mp" in kinds else "ms"
            elif re.match(r"^fma\.rn(\.ftz)?\.f32(x2)?$", op) and len(srcs) == 3:
                a, b = kinds[0], kinds[1]
                if "mp" in (a, b):
                    counts["cublas"] = counts.get("cublas", 0) + 1
                elif "p" in (a, b) and "ms" in (a, b):
                    counts["deepgemm"] = counts.get("deepgemm", 0) + 1
                k = None
            elif re.match(r"^add(\.rn)?(\.ftz)?\.f32(x2)?$", op):
                if "mpp" in kinds:
                    counts["triton"] = counts.get("triton", 0) + 1
                k = None
            else:
                k = None
            for r in dsts:
                if k:
                    cls[r] = k
                else:
                    cls.pop(r, None)
        if counts:
            per_fn[fn_name] = counts
    return per_fn


def _dst_src(ins: Instruction) -> tuple[list[str], list[str]]:
    """Destination and source registers; a leading brace list is the destinations (vector or
    unpacking forms), ``_`` sinks are dropped."""
    text = ins.operands.strip()
    if text.startswith("{"):
        close = text.find("}")
        return _REG.findall(text[:close]), _REG.findall(text[close + 1:])
    regs = _REG.findall(text)
    return regs[:1], regs[1:]
