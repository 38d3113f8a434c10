"""``fp8lab audit``: the numerics contract of a real kernel, read from its compiled code (no GPU).

``audit(kernel)`` compiles a Triton ``@triton.jit`` function (Triton's own compiler, for sm_90a
by default) or a CUDA source (nvcc), or reads a cubin / static library / PTX file, and scans the
PTX and SASS for the instructions that decide the numbers (``ptx.py``, ``sass.py``). The result is
a :class:`Contract`: tensor-core instructions mapped to fp8lab presets, conversions and their
modes, approximate operations with source lines, contraction and the promotion combine it gives,
the fp8lab spec the kernel implements, and what fp8lab cannot pin. ``fp8lab.verify(fn, op,
spec=contract)`` then checks a kernel against the arithmetic it compiles to, and
``fp8lab.triton`` runs a Triton kernel on the CPU under that arithmetic.

Kernel forms: a ``@triton.jit`` function (with ``signature`` and ``constexprs``), the text
``"package.module:NAME"`` where NAME is an entry of the module's ``AUDIT`` table (or a jit function
with exactly one entry there), ``"path/file.py:NAME"`` likewise, or a path to ``.cu``, ``.cubin``,
``.o``/``.a`` (SASS only) or ``.ptx`` (PTX only).

What the scan cannot see is in the contract's notes and in :data:`LIMITS`.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import linecache
import os
import re
from pathlib import Path

from . import ptx as _ptx
from . import sass as _sass
from .contract import APPROX_NOTES, Contract, preset_for
from .toolchain import ToolchainError, compile_cuda, compile_triton, find_tool, sass_of, toolchain_versions

__all__ = ["audit", "Contract", "ToolchainError", "LIMITS", "project_kernels", "load_contract", "find_tool"]

#: What a contract does not establish (documented limits of the static audit).
LIMITS = (
    "The scan reads instructions, not values: an approximate operation is listed wherever it is emitted, "
    "even on a path the inputs never take.",
    "Float reductions across lanes (tl.sum, warp shuffles) and atomics have an order the layout and the "
    "scheduler decide; they are listed as unpinned, not modelled.",
    "The spec's tiling, scale rule and output format are what the kernel declares (its AUDIT entry); the audit "
    "checks the compiled conversions and tensor-core instructions against them, not the indexing.",
    "mma.sync on sm_90 and tcgen05 operand types are mapped by convention (see each instruction's note).",
    "Conversions written as integer code have no cvt to read: cuda_fp8.h's __NV_NOSAT path (software on every "
    "architecture; gpu/sm90_fp8_quant.cu selects it at run time) shows only as the satfinite cvt of the other "
    "branch. The scan lists the cvt instructions present, not every way a kernel can convert.",
)


def load_contract(path) -> Contract:
    """A contract from its JSON file."""
    return Contract.from_dict(Path(path).read_text())


def project_kernels() -> dict[str, tuple[str, str]]:
    """fp8lab's own Triton kernels: audit name -> (module, AUDIT entry)."""
    out = {}
    for mod in ("act_quant", "fp8_gemm", "router"):
        name = f"fp8lab.triton.kernels.{mod}"
        m = importlib.import_module(name)
        for entry in m.AUDIT:
            out[entry] = (name, entry)
    return out


def _import_target(target: str):
    mod_part, _, name = target.rpartition(":")
    if mod_part.endswith(".py"):
        path = Path(mod_part)
        if not path.is_file():
            raise FileNotFoundError(f"kernel: {path} does not exist")
        spec = importlib.util.spec_from_file_location(f"_fp8lab_audit_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        label = f"{path.name}:{name}"
    else:
        try:
            module = importlib.import_module(mod_part)
        except ImportError as err:
            raise ValueError(f"kernel: cannot import module {mod_part!r} ({err})") from None
        label = target
    table = getattr(module, "AUDIT", {}) or {}
    if name in table:
        entry = table[name]
        return getattr(module, entry["fn"]), entry, label
    fn = getattr(module, name, None)
    if fn is None:
        raise ValueError(f"kernel: {mod_part} has no AUDIT entry or function {name!r} (entries: {sorted(table)})")
    entries = [k for k, v in table.items() if v.get("fn") == name]
    if len(entries) == 1:
        return fn, table[entries[0]], f"{mod_part}:{entries[0]}"
    return fn, None, label


def audit(kernel, *, signature: dict | None = None, constexprs: dict | None = None, arch: str = "sm_90a",
          num_warps: int = 4, fp_fusion: bool | None = None, op: str | None = None, spec: dict | None = None,
          name: str | None = None, sass: bool = True) -> Contract:
    """The numerics contract of ``kernel`` compiled for ``arch`` (see the module doc).

    signature/constexprs: for a bare Triton function (an AUDIT entry supplies its own).
    op/spec: the fp8lab operation (``gemm``, ``quantize``, ``moe_route``) and the spec fields the
    kernel declares (tiles, rule, output); the compiled code completes and checks them.
    fp_fusion: Triton's enable_fp_fusion (None: Triton's default). sass: also disassemble.
    """
    if not isinstance(arch, str) or not re.fullmatch(r"sm_(80|86|89|90a?|100a?|120a?)", arch):
        raise ValueError(f"arch: expected sm_80, sm_89, sm_90a or sm_100a, got {arch!r}")
    entry = None
    label = name
    if isinstance(kernel, (str, os.PathLike)) and (":" in str(kernel) and not os.path.exists(str(kernel))):
        kernel, entry, default_label = _import_target(str(kernel))
        label = label or default_label
    if isinstance(kernel, (str, os.PathLike)):
        return _audit_file(Path(kernel), arch, op, spec, label, sass)
    if not callable(getattr(kernel, "fn", None)):
        raise TypeError(f"kernel: expected a @triton.jit function, 'module:NAME' or a file path, got "
                        f"{type(kernel).__name__}")
    if entry is not None:
        signature = signature or entry["signature"]
        constexprs = constexprs if constexprs is not None else entry.get("constexprs", {})
        op = op or entry.get("op")
        spec = spec if spec is not None else entry.get("spec")
        num_warps = entry.get("num_warps", num_warps)
    if signature is None:
        raise ValueError(f"signature: {kernel.fn.__name__} is not in an AUDIT table; pass signature= (argument "
                         "types such as '*fp8e4nv', '*fp32', 'i32') and constexprs=")
    label = label or f"{kernel.fn.__module__}:{kernel.fn.__name__}"
    n = int(arch[3:].rstrip("a"))
    out = compile_triton(kernel, signature, constexprs or {}, arch=n, num_warps=num_warps, fp_fusion=fp_fusion)
    llir = out.get("llir", "")
    explicit_fma = len(re.findall(r"@llvm\.fma\.f32\(", llir)) - (1 if "declare float @llvm.fma.f32" in llir else 0)
    return _build(label, "triton", arch, op, spec, out["ptx"], _sass_text(out["cubin"]) if sass else "",
                  out["options"], fusion=out["options"].get("enable_fp_fusion"), explicit_fma=explicit_fma,
                  source_file=inspect.getsourcefile(kernel.fn))


def _sass_text(binary) -> str:
    try:
        return sass_of(binary)
    except ToolchainError:
        return ""


def _audit_file(path: Path, arch: str, op, spec, label, want_sass: bool) -> Contract:
    if not path.exists():
        raise FileNotFoundError(f"kernel: {path} does not exist")
    label = label or str(path)
    suffix = path.suffix
    if suffix == ".cu":
        root = Path(__file__).resolve().parents[4]
        out = compile_cuda(path, arch=arch, include=[str(root), str(root / "emulator"), str(path.parent)],
                           cubin=want_sass)
        return _build(label, "cuda", arch, op, spec, out["ptx"], _sass_text(out["cubin"]) if want_sass else "",
                      out["options"], fusion=None, explicit_fma=None)
    if suffix == ".ptx":
        return _build(label, "ptx", arch, op, spec, path.read_text(), "", {}, fusion=None, explicit_fma=None)
    if suffix in (".cubin", ".o", ".a", ".so", ".fatbin"):
        return _build(label, "cubin", arch, op, spec, "", sass_of(path), {}, fusion=None, explicit_fma=None)
    raise ValueError(f"kernel: {path} is not a .cu, .ptx, .cubin, .o, .a or .so file, nor module:NAME")


def _source_text(file, line, source_file=None) -> str:
    if not file or not line:
        return ""
    # Triton's cache is keyed by the kernel's source, not its path: a PTX compiled earlier from
    # another checkout names that checkout's file, which may be gone. The kernel's own file is the
    # same source then.
    if source_file and not os.path.exists(file) and os.path.basename(file) == os.path.basename(source_file):
        file = source_file
    return linecache.getline(file, int(line)).strip()


def _build(label, source, arch, op, declared, ptx_text, sass_text, options, fusion, explicit_fma,
           source_file=None) -> Contract:
    instrs = _ptx.parse(ptx_text) if ptx_text else []
    mma = _ptx.mma_instructions(instrs)
    for m in mma:
        alias, note = preset_for(m, arch)
        m["preset"] = alias
        m["preset_name"] = _preset_name(alias)
        m["note"] = note
    convs = _ptx.conversions(instrs)
    approx = _ptx.approximate_ops(instrs)
    for a in approx:
        a["source"] = _source_text(a.pop("file"), a["line"], source_file)
        a["what"] = APPROX_NOTES.get(".".join(a["ptx"].split(".")[:2]), "approximate")
    fmas = _ptx.fma_ops(instrs)
    n_fma = sum(f["count"] for f in fmas)
    per_fn_combines = _ptx.promotion_combines(instrs)
    combines: dict[str, int] = {}
    for c in per_fn_combines.values():
        for k, v in c.items():
            combines[k] = combines.get(k, 0) + v
    contraction = {"fma": n_fma, "enabled": fusion, "at": sorted({f["where"] for f in fmas})}
    if explicit_fma is not None:
        contraction["explicit_fma"] = max(explicit_fma, 0)
    if len(combines) == 1:
        c = next(iter(combines))
        contraction["combine"] = c
        contraction["combine_form"] = {"cublas": "fma(fl(p*sa), sb, acc)", "deepgemm": "fma(fl(sa*sb), p, acc)",
                                       "triton": "fl(fl(fl(p*sa)*sb) + acc)"}[c]
    elif combines:
        contraction["combines"] = combines
    census = _sass.census(sass_text) if sass_text else {}
    functions = {}
    for fn_name, c in per_fn_combines.items():
        functions.setdefault(fn_name, {})["combine"] = next(iter(c)) if len(c) == 1 else c
    if sass_text:
        for fn_name in _sass.functions(sass_text):
            c = _sass.census(sass_text, only=fn_name)
            functions.setdefault(fn_name, {})["sass"] = {k: v for k, v in c.items()
                                                         if "MMA" in k or k.startswith(("F2FP", "F2F", "MUFU"))}
    notes, unpinned = [], []
    for a in approx:
        unpinned.append(f"{a['ptx']} x{a['count']} at {a['where']}" + (f" ({a['source']})" if a["source"] else "")
                        + f": {a['what']}")
    for r in _reductions(instrs):
        unpinned.append(r)
    if not ptx_text:
        notes.append("no PTX (binary input): source lines and contraction come from PTX only; the tensor-core "
                     "instructions and conversions below are read from SASS")
        mufu = {k: v for k, v in census.items() if k.startswith("MUFU")}
        if mufu:
            # MUFU.RCP/RSQ also seed the Newton iterations of IEEE div.rn / sqrt.rn: only PTX tells.
            unpinned.append(f"SASS has {mufu}: approximate operations, or the seeds of IEEE division/sqrt "
                            "sequences; without PTX the audit cannot tell which (audit the source)")
        mma = _sass.mma_instructions(sass_text)
        for m in mma:
            alias, note = preset_for(m, arch)
            m["preset"], m["preset_name"], m["note"] = alias, _preset_name(alias), note
        convs = _sass.conversions(sass_text)
    if len(combines) > 1:
        notes.append(f"several promotion combines in one compilation: {combines} (one per kernel instantiation?)")
    spec = _spec(op, declared, mma, convs, contraction, unpinned, notes)
    return Contract(kernel=label, source=source, arch=arch, op=op, toolchain=toolchain_versions(),
                    options=dict(options), mma=mma, conversions=convs, approximate=approx, contraction=contraction,
                    sass=census, spec=spec, declared=dict(declared) if declared else None, unpinned=unpinned,
                    notes=notes, functions=functions)


def _preset_name(alias):
    if alias is None:
        return None
    try:
        from ..accum import tensor_cores

        for p in tensor_cores():
            if p["alias"] == alias or p["name"] == alias:
                return p["name"]
    except Exception:  # the extension is not built: the alias alone
        return None
    return None


def _reductions(instrs) -> list[str]:
    """Float sums whose order the hardware layout decides: a shuffled value feeding an add, atomics."""
    out = []
    by_fn: dict[str, list] = {}
    for ins in instrs:
        by_fn.setdefault(ins.function, []).append(ins)
    for body in by_fn.values():
        shuffled: set[str] = set()
        sums, atomics, lines = 0, 0, set()
        for ins in body:
            regs = ins.regs()
            if ins.opcode.startswith("shfl.sync") and regs:
                shuffled.add(regs[0])
            elif re.match(r"^add(\.rn)?(\.ftz)?\.f(32|16|64)$", ins.opcode) and any(r in shuffled for r in regs[1:]):
                sums += 1
                lines.add(ins.where)
            elif re.match(r"^(atom|red)(\.\w+)*\.add(\.noftz)?\.(f32|f16|bf16|f64|f16x2|bf16x2)$", ins.opcode):
                atomics += 1
                lines.add(ins.where)
        if sums:
            out.append(f"float sum across lanes ({sums} shuffle adds at {', '.join(sorted(lines))}): the reduction "
                       "tree's order follows the layout; not modelled")
        if atomics:
            out.append(f"{atomics} floating-point atomic adds: order set by the scheduler; not modelled")
    return out


def _spec(op, declared, mma, convs, contraction, unpinned, notes):
    """The runnable fp8lab spec: declared fields completed by what the compiled code decides."""
    if op is None:
        presets = sorted({m["preset"] for m in mma if m.get("preset")})
        if not presets:
            return None
        # A CUDA file or bare kernel: no operation declared; what the code decides is still a spec fragment.
        frag = {"instruction": presets[0] if len(presets) == 1 else presets}
        if contraction.get("combine"):
            frag["combine"] = contraction["combine"]
        return frag
    declared = dict(declared or {})
    if op == "gemm":
        from ..golden import operation

        spec = operation("gemm").default_spec()
        spec.update(declared)
        presets = sorted({m["preset"] for m in mma if m.get("preset")})
        if len(presets) == 1:
            spec["instruction"] = presets[0]
        elif not presets:
            notes.append("gemm: no tensor-core instruction found; the declared instruction is kept")
        else:
            notes.append(f"gemm: several tensor-core presets {presets}; the declared instruction is kept")
        if contraction.get("combine"):
            spec["combine"] = contraction["combine"]
        elif mma and spec.get("accumulate") == "promoted":
            unpinned.append(f"promotion combine: not recognised in the compiled code; the spec's "
                            f"{spec['combine']!r} is {'declared' if 'combine' in declared else 'the default'}, not verified")
        out_cvt = [c for c in convs if c["from"] == "fp32" and c["to"] == spec.get("out")]
        if out_cvt and out_cvt[0]["rounding"] != "nearest_even":
            unpinned.append(f"output conversion {out_cvt[0]['ptx']} rounds {out_cvt[0]['rounding']}; fp8lab's gemm "
                            "output rounds to nearest even")
        spec["pinned"] = not unpinned
        return spec
    if op == "quantize":
        from .. import _core

        spec = {"rule": "deepseek", "tile": [1, 128], "fmt": "e4m3", **declared}
        rule = _core.scale_rule(spec["rule"])
        casts = [c for c in convs if c["from"] == "fp32" and c["to"] == spec["fmt"]]
        for c in casts:
            if c["overflow"] != rule.get("cast_overflow") or c["rounding"] != "nearest_even":
                unpinned.append(f"{c['ptx'] or c.get('sass')} ({c['rounding']}, overflow {c['overflow']}) differs from rule "
                                f"{spec['rule']!r} (nearest_even, overflow {rule.get('cast_overflow')})")
        if not casts:
            notes.append(f"quantize: no fp32 -> {spec['fmt']} cvt found in the PTX")
        return spec
    if op == "moe_route":
        return {"base": "deepseek_v3_hf", **declared}
    notes.append(f"op {op!r}: no spec derivation; the declared fields are kept")
    return declared or None
