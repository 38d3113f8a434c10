"""A kernel's numerics contract: what its compiled code does to the numbers, as data.

Built from the PTX/SASS scans (``ptx.py``, ``sass.py``): the tensor-core instructions mapped to
fp8lab presets, conversions with their rounding/overflow modes, approximate operations with their
source lines, contraction and the promotion combine it produces; then the fp8lab spec the kernel
implements (what the kernel declares — tiles, scale rule, output format — completed by what the
compiled code decides: instruction, combine, cast overflow) and the list of what fp8lab cannot pin.
One canonical JSON form (keys sorted) so contracts can be checked into tests and diffed.
"""
from __future__ import annotations

import dataclasses
import json

__all__ = ["Contract", "preset_for", "APPROX_NOTES", "CONTRACT_VERSION"]

CONTRACT_VERSION = 1

#: What each approximate PTX operation is (PTX ISA, "Floating point instructions"): none is an
#: IEEE-rounded function, so the bits are the hardware's and stay unpinned until traced on one.
APPROX_NOTES = {
    "div.full": "full-range approximate division (not IEEE div.rn); Triton's plain '/' on fp32",
    "div.approx": "approximate division by reciprocal (restricted divisor range)",
    "rcp.approx": "approximate reciprocal",
    "ex2.approx": "approximate 2^x on the special-function unit (Triton's exp/sigmoid)",
    "lg2.approx": "approximate log2 on the special-function unit (Triton's log)",
    "rsqrt.approx": "approximate reciprocal square root",
    "sqrt.approx": "approximate square root (Triton's tl.sqrt; tl.sqrt_rn is IEEE)",
    "sin.approx": "approximate sine", "cos.approx": "approximate cosine", "tanh.approx": "approximate tanh",
}

# (architecture family, MMA family, operand format, accumulator format) -> preset alias. The
# mma.sync rows for sm_90 follow gpu/tc_probe: ptxas issues HMMA.16816 there (FP8 operands are
# first converted to FP16 exactly), modelled by the Hopper FP16 dot-product preset.
_PRESETS = {
    ("sm90", "wgmma", "e4m3", "fp32"): "hopper_fp8",
    ("sm90", "wgmma", "e5m2", "fp32"): "hopper_fp8_e5m2",
    ("sm90", "wgmma", "bf16", "fp32"): "hopper_bf16",
    ("sm90", "wgmma", "fp16", "fp32"): "hopper_fp16",
    ("sm90", "wgmma", "e8m10", "fp32"): "hopper_tf32",
    ("sm90", "mma.sync", "fp16", "fp32"): "hopper_fp16",
    ("sm90", "mma.sync", "bf16", "fp32"): "hopper_bf16",
    ("sm90", "mma.sync", "e4m3", "fp32"): "hopper_fp16",
    ("sm90", "mma.sync", "e5m2", "fp32"): "hopper_fp16",
    ("sm89", "mma.sync", "e4m3", "fp32"): "ada_fp8",
    ("sm89", "mma.sync", "e5m2", "fp32"): "ada_fp8_e5m2",
    ("sm89", "mma.sync", "e4m3", "fp16"): "ada_fp8_f16",
    ("sm89", "mma.sync", "fp16", "fp32"): "ada_fp16",
    ("sm89", "mma.sync", "bf16", "fp32"): "ada_bf16",
    ("sm89", "mma.sync", "e8m10", "fp32"): "ada_tf32",
    ("sm80", "mma.sync", "fp16", "fp32"): "ampere_fp16",
    ("sm80", "mma.sync", "bf16", "fp32"): "ampere_bf16",
    ("sm80", "mma.sync", "e8m10", "fp32"): "ampere_tf32",
    ("sm100", "mma.sync", "e4m3", "fp32"): "blackwell_mma_fp8",
    ("sm100", "mma.sync", "e5m2", "fp32"): "blackwell_mma_fp8_e5m2",
}


def _arch_family(arch: str) -> str:
    n = int("".join(c for c in arch if c.isdigit()) or 0)
    return "sm100" if n >= 100 else "sm90" if n >= 90 else "sm89" if n >= 89 else "sm80"


def preset_for(mma: dict, arch: str) -> tuple[str | None, str]:
    """The fp8lab tensor-core preset an MMA instruction maps to, and a note (why, or why none)."""
    fam = _arch_family(arch)
    if mma["family"] == "tcgen05.mma":
        kind = mma.get("kind")
        if kind == "mxf8f6f4":
            return "blackwell_mxfp8", "tcgen05 kind::mxf8f6f4: E4M3 assumed (operand types are in the instruction descriptor)"
        if kind == "f8f6f4":
            return "blackwell_fp8", "tcgen05 kind::f8f6f4: E4M3 assumed (operand types are in the instruction descriptor)"
        if kind == "tf32":
            return "blackwell_tf32", "tcgen05 kind::tf32"
        return None, f"tcgen05 kind::{kind}: operand types are in the instruction descriptor; no preset chosen"
    key = (fam, mma["family"], mma.get("a"), mma.get("acc"))
    alias = _PRESETS.get(key)
    if alias is None:
        return None, f"no fp8lab preset models {mma['ptx'] or mma.get('sass')} on {arch}"
    note = ""
    if fam == "sm90" and mma["family"] == "mma.sync":
        note = ("sm_90 has no FP8/FP16 mma.sync unit of its own: ptxas issues HMMA.16816 (FP8 operands converted "
                "to FP16 exactly first); modelled by the Hopper FP16 preset as gpu/tc_probe does — unmeasured for "
                "mma.sync")
        if mma.get("a") in ("e4m3", "e5m2"):
            note = "FP8 " + note
    return alias, note


@dataclasses.dataclass
class Contract:
    """The numerics contract of one compiled kernel (see the module doc)."""

    kernel: str
    source: str  # "triton" | "cuda" | "cubin" | "ptx"
    arch: str
    op: str | None
    toolchain: dict
    options: dict
    mma: list
    conversions: list
    approximate: list
    contraction: dict
    sass: dict
    spec: dict | None
    declared: dict | None
    unpinned: list
    notes: list
    functions: dict = dataclasses.field(default_factory=dict)

    # -- forms

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["fp8lab_contract"] = CONTRACT_VERSION
        return d

    def to_json(self, stable: bool = False) -> str:
        """Canonical JSON. ``stable=True`` drops the toolchain versions and SASS counts (which move
        with the compiler version) and keeps the numerics, for contracts checked into tests."""
        d = self.to_dict()
        if stable:
            d = {k: v for k, v in d.items() if k not in ("toolchain", "sass", "functions")}
        return json.dumps(d, sort_keys=True, indent=1)

    @classmethod
    def from_dict(cls, d) -> "Contract":
        if isinstance(d, str):
            d = json.loads(d)
        if not isinstance(d, dict) or "fp8lab_contract" not in d:
            raise ValueError("contract: not an fp8lab contract (no 'fp8lab_contract' key)")
        if d["fp8lab_contract"] != CONTRACT_VERSION:
            raise ValueError(f"contract: version {d['fp8lab_contract']} is not {CONTRACT_VERSION}")
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: d.get(k, {} if k in ("toolchain", "sass", "functions") else None) for k in fields})

    @property
    def pinned(self) -> bool:
        """True when fp8lab can reproduce every result bit (no unpinned operation)."""
        return not self.unpinned

    def spec_for_verify(self, op: str) -> dict:
        """The spec ``fp8lab.verify`` checks this kernel against (raises when ops differ)."""
        if self.spec is None:
            raise ValueError(f"contract: {self.kernel} has no runnable spec (op {self.op!r}; notes: {self.notes})")
        if op != self.op:
            raise ValueError(f"spec: the contract of {self.kernel} is for op {self.op!r}, not {op!r}")
        return dict(self.spec)

    # -- text

    def text(self) -> str:
        lines = [f"numerics contract of {self.kernel}", f"  compiled: {self.source} for {self.arch}"
                 + (f" ({', '.join(f'{k}={v}' for k, v in sorted(self.options.items()) if k != 'arch')})"
                    if self.options else "")]
        if self.mma:
            lines.append("  tensor-core instructions:")
            for m in self.mma:
                preset = m.get("preset") or "none"
                lines.append(f"    {m['ptx'] or m.get('sass')} x{m['count']} -> preset {preset}"
                             + (f" ({m['preset_name']})" if m.get("preset_name") else "")
                             + (f" at {', '.join(m['lines'])}" if m.get("lines") else ""))
                if m.get("note"):
                    lines.append(f"      {m['note']}")
        sass_mma = {k: v for k, v in self.sass.items() if "MMA" in k}
        if sass_mma:
            lines.append("  SASS: " + ", ".join(f"{k} x{v}" for k, v in sass_mma.items()))
        if self.conversions:
            lines.append("  conversions:")
            for c in self.conversions:
                mode = "exact" if c["exact"] else f"{c['rounding']}, overflow {c['overflow']}"
                lines.append(f"    {c['ptx'] or c.get('sass')}: {c['from']} -> {c['to']} ({mode}) x{c['count']}"
                             + (f" at {', '.join(c['lines'])}" if c.get("lines") else ""))
        ctr = self.contraction
        if ctr:
            lines.append(f"  contraction: {ctr.get('fma', 0)} fma" +
                         (f"; fp fusion {'on' if ctr.get('enabled') else 'off'}" if ctr.get("enabled") is not None else "")
                         + (f"; promotion combine {ctr['combine']}" if ctr.get("combine") else "")
                         + (f" ({ctr['combine_form']})" if ctr.get("combine_form") else ""))
        if self.approximate:
            lines.append("  approximate operations (fp8lab cannot pin these):")
            for a in self.approximate:
                lines.append(f"    {a['ptx']} x{a['count']} at {a['where']}" + (f" (inlined {a['via']})" if a.get("via") else "")
                             + (f": {a['source']}" if a.get("source") else ""))
        if self.spec is not None:
            lines.append(f"  fp8lab spec ({self.op}): {json.dumps(self.spec, sort_keys=True)}")
        lines.append("  pinned: yes — fp8lab reproduces every bit" if self.pinned else "  cannot pin:")
        for u in self.unpinned:
            lines.append(f"    - {u}")
        for n in self.notes:
            lines.append(f"  note: {n}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()


def audited_spec(spec, op: str):
    """``spec`` unchanged, unless it is a contract (a Contract, its dict, or its JSON text): then the
    spec the audited kernel compiles to, for ``op`` (``fp8lab.verify(fn, op, spec=contract)``)."""
    if isinstance(spec, str) and "fp8lab_contract" in spec:
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError:
            return spec  # not JSON: the operation's own spec parser reports it
    if isinstance(spec, dict) and "fp8lab_contract" in spec:
        spec = Contract.from_dict(spec)
    if isinstance(spec, Contract):
        return spec.spec_for_verify(op)
    return spec
