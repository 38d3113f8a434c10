"""``fp8lab.triton``: run a real ``@triton.jit`` kernel on the CPU with the GPU's numerics.

Triton's interpreter (``TRITON_INTERPRET=1``; ``triton/runtime/interpreter.py``) executes a kernel
op by op on numpy through one module-level ``InterpreterBuilder``. Its numerics are not the GPU's
(REFERENCE.md, triton#8322): the fp32 -> fp8 cast ORs the mantissa carry into the exponent, rounds
ties away, truncates subnormals and turns NaN into +-384; E4M3 0x7F decodes as 480; fp32 -> bf16
truncates; ``tl.dot`` on fp8 is an exact-product FP32 numpy matmul. Inside ``faithful(contract)``
the builder's methods are replaced by fp8lab's:

  * conversions: fp32/fp16/bf16 -> fp8 and fp32 -> bf16 through ``fp8lab.encode`` with the rounding
    and overflow mode the compiled ``cvt`` uses (``cvt.rn.satfinite.e4m3x2.f32``,
    ``cvt.rn.bf16x2.f32``); fp8 -> wider through ``fp8lab.decode`` (exact);
  * ``tl.dot``: the K dimension split into the audited instruction's k (32 for ``wgmma ... k32
    .e4m3``, 16 for ``mma.sync.m16n8k16.f16``), each step one ``fp8lab.dot`` of the audited preset with
    the previous result as C — the accumulator chained as the hardware chains it;
  * contraction: where the compiled code has ``fma.rn.f32`` (the contract lists the source lines), a
    float32 add of a product is computed as one fused multiply-add, as LLVM contracts it (the NVPTX
    backend fuses aggressively: a product with several uses is still contracted at each add);
  * approximate operations (fp32 ``/``, exp, exp2, log, log2, sqrt, rsqrt, sin, cos, and so
    ``tl.sigmoid``) and float ``tl.sum`` reductions: refused with :class:`UnpinnedOperation` naming the
    source line, or with ``approx="flag"`` computed by the stock interpreter and listed in
    ``FaithfulRun.flags``.

Hook points (Triton 3.9, ``triton/runtime/interpreter.py``): the methods ``create_fp_to_fp``,
``create_fp_trunc``, ``create_fp_ext``, ``cast_impl``, ``create_dot``, ``create_fmul``/``create_fadd``/
``create_fsub`` and the approximate ``create_*`` of the module-level ``interpreter_builder`` are
shadowed by instance attributes for the duration of the context, ``ReduceOps.sum`` likewise; and
since ``@triton.jit`` picks compiled or interpreted at decoration time (TRITON_INTERPRET), a launch
through :func:`interpret` routes calls of jit functions (``tl.max``, ``tl.sigmoid`` ...) to
interpreted copies, so no environment variable is needed and compiled kernels stay auditable.

Outside the context the interpreter is Triton's own (``interpret(kernel)`` gives the stock run).

What this cannot model (see :data:`LIMITS`): warp-level races and anything that depends on which
thread does what (the interpreter runs a whole block as one numpy program), async copies
(``cp.async``/TMA), memory ordering and atomics' order, reduction trees' order, and the approximate
ops above until hardware traces pin them.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import threading

import numpy as np

__all__ = ["faithful", "interpret", "FaithfulRun", "UnpinnedOperation", "LIMITS", "stock_interpreter_ok"]

LIMITS = (
    "Warp-level races and thread-dependent behaviour: the interpreter runs each program (block) as one numpy "
    "program, so a kernel that is wrong only under some interleaving of threads passes here.",
    "Asynchronous copies (cp.async, TMA) and their barriers, memory ordering between programs, and the order "
    "of atomics: programs run one after another in grid order.",
    "Float reductions (tl.sum, tl.reduce with a float add) have the layout's tree order on a GPU; they are "
    "refused (or flagged), not modelled.",
    "Approximate operations (div.full for fp32 '/', ex2.approx for exp and sigmoid, lg2.approx, rsqrt.approx, "
    "sqrt.approx, sin/cos.approx) stay unpinned until hardware traces exist: refused, or flagged and computed "
    "by numpy.",
    "Contraction is applied at the source lines where the audited PTX has fma.rn.f32; without a contract, "
    "at every float32 add of a product (contraction=True) or nowhere. A product formed in a different basic "
    "block from its add is not contracted by LLVM but would be here if both lines are listed.",
    "tl.dot: 2-D operands only; fp8/fp16/bf16 inputs with an FP32 accumulator, through the audited preset "
    "(fp32 operands, i.e. TF32 with its own input rounding, and block-scaled tl.dot_scaled are not modelled).",
    "Float reductions written with tl.reduce and a custom combine function run in numpy's order unflagged.",
)

_APPROX_BUILDER_OPS = {
    "create_fdiv": "fp32 '/' (div.full.f32)",
    "create_approx_divf": "approximate division (div.approx)",
    "create_exp": "exp (ex2.approx)",
    "create_exp2": "exp2 (ex2.approx)",
    "create_log": "log (lg2.approx)",
    "create_log2": "log2 (lg2.approx)",
    "create_sqrt": "sqrt (sqrt.approx; tl.sqrt_rn is IEEE)",
    "create_rsqrt": "rsqrt (rsqrt.approx)",
    "create_sin": "sin (sin.approx)",
    "create_cos": "cos (cos.approx)",
}


class UnpinnedOperation(RuntimeError):
    """The kernel executed an operation whose GPU result fp8lab cannot pin (approx="refuse")."""

    def __init__(self, what: str, where: str):
        super().__init__(f"{what} at {where}: the GPU computes this approximately and fp8lab cannot pin its bits; "
                         "rewrite it with an IEEE form (tl.div_rn, tl.sqrt_rn) or run with approx='flag'")
        self.what, self.where = what, where


@dataclasses.dataclass
class FaithfulRun:
    """What a faithful run did: the semantics used and the flags raised."""

    instruction: str | None
    cast_overflow: dict
    contraction_lines: set | None
    approx: str
    flags: list = dataclasses.field(default_factory=list)
    counts: dict = dataclasses.field(default_factory=dict)

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    @property
    def pinned(self) -> bool:
        return not self.flags


_lock = threading.Lock()  # one faithful context at a time (the builder is a module global)
_cache_lock = threading.Lock()
_interpreted: dict = {}


def _interp():
    try:
        from triton.runtime import interpreter
    except ImportError as err:  # pragma: no cover - the tests skip without triton
        raise ImportError(f"fp8lab.triton needs triton ({err})") from None
    return interpreter


def stock_interpreter_ok() -> tuple[bool, str]:
    """Whether Triton's interpreter can run here (and why not)."""
    try:
        _interp()
        import torch  # noqa: F401  (the interpreter takes torch tensors)
    except ImportError as err:
        return False, str(err)
    return True, ""


def _interpreted_fn(kernel):
    it = _interp()
    if isinstance(kernel, it.InterpretedFunction):
        return kernel
    with _cache_lock:
        f = _interpreted.get(kernel.fn)
        if f is None:
            f = _interpreted[kernel.fn] = it.InterpretedFunction(kernel.fn)
    return f


@contextlib.contextmanager
def _jit_calls_interpreted():
    """Triton decides at decoration time whether ``@jit`` gives a compiled or an interpreted
    function (TRITON_INTERPRET, read once). Here triton.language's own jit helpers (tl.max,
    tl.sigmoid, ...) and any jit function the kernel calls were decorated for compilation; for the
    duration of an interpreted launch their calls go to interpreted copies instead."""
    from triton.runtime.jit import JITFunction

    saved = JITFunction.__call__

    def call(self, *args, **kwargs):
        return _interpreted_fn(self)(*args, **kwargs)

    JITFunction.__call__ = call
    try:
        yield
    finally:
        JITFunction.__call__ = saved


class _Interpreted:
    """A kernel launched on the interpreter: ``interpret(k)[grid](*args, **constexprs)``."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.fn = kernel.fn

    def __getitem__(self, grid):
        f = _interpreted_fn(self.kernel)

        def launch(*args, **kwargs):
            with _launch_lock, _language_restored(), _jit_calls_interpreted():
                return f.run(*args, grid=grid, warmup=False, **kwargs)
        return launch


_UNSET = object()


@contextlib.contextmanager
def _language_restored():
    """Triton's interpreter patches triton.language for a launch and restores what the launch
    patched, but a jit helper called from the kernel patches again (InterpretedFunction.__call__
    in triton/runtime/interpreter.py, Triton 3.9) and never restores; where the helper's module
    sees ``triton.language.core`` and the kernel's only ``triton.language``, core's builtins stay
    the interpreter's, and every later ``triton.compile`` in the process fails in its front end
    (``tl.zeros`` at the first line that uses it). The attributes are put back as they were."""
    import triton.language as tl

    objs = [tl, tl.core, tl.math, tl.core.tensor, tl.core.tensor_descriptor_base]
    saved = [(o, dict(vars(o))) for o in objs]
    try:
        yield
    finally:
        for o, before in saved:
            now = dict(vars(o))
            for name in now.keys() - before.keys():
                with contextlib.suppress(AttributeError, TypeError):
                    delattr(o, name)
            for name, value in before.items():
                if now.get(name, _UNSET) is not value:
                    with contextlib.suppress(AttributeError, TypeError):
                        setattr(o, name, value)


_launch_lock = threading.RLock()


def interpret(kernel):
    """A ``@triton.jit`` function as Triton's CPU interpreter runs it (no TRITON_INTERPRET needed):
    launch it as the JIT one, ``interpret(k)[grid](*args)`` on CPU torch tensors. Outside
    ``faithful`` it has Triton's stock interpreter numerics; inside, fp8lab's."""
    if not callable(getattr(kernel, "fn", None)):
        raise TypeError(f"kernel: expected a @triton.jit function, got {type(kernel).__name__}")
    _interp()
    return _Interpreted(kernel)


def _kernel_site() -> str:
    """file:line of the innermost kernel frame (not Triton's, numpy's or this module's)."""
    f = sys._getframe(2)
    triton_dir = os.path.dirname(os.path.dirname(_interp().__file__))
    here = os.path.dirname(__file__)
    while f is not None:
        fn = f.f_code.co_filename
        if not fn.startswith(triton_dir) and not fn.startswith(os.path.dirname(np.__file__)) and \
                os.path.dirname(fn) != here and "<" not in fn:
            return f"{os.path.basename(fn)}:{f.f_lineno}"
        f = f.f_back
    return "(unknown line)"


def _contract_semantics(contract, instruction, contraction, cast_overflow):
    """(preset, {(from, to): overflow}, contraction lines or None for 'everywhere' / set() for 'nowhere')."""
    overflow = {}
    lines = None
    if contract is not None:
        if not hasattr(contract, "mma"):
            from ..audit import Contract

            contract = Contract.from_dict(contract)
        presets = sorted({m["preset"] for m in contract.mma if m.get("preset")})
        if instruction is None and len(presets) == 1:
            instruction = presets[0]
        elif instruction is None and len(presets) > 1:
            raise ValueError(f"contract: several tensor-core presets {presets}; pass instruction=")
        for c in contract.conversions:
            if not c["exact"]:
                overflow[(c["from"], c["to"])] = (c["rounding"], c["overflow"])
        if contraction is None:
            lines = set(contract.contraction.get("at", [])) if contract.contraction.get("fma") else set()
    if contraction is True:
        lines = None
    elif contraction is False:
        lines = set()
    elif contraction is None and contract is None:
        lines = set()
    for key, mode in (cast_overflow or {}).items():
        overflow[tuple(key)] = ("nearest_even", mode)
    return instruction, overflow, lines


_TL_FORMAT = {"fp8e4nv": "e4m3", "fp8e5": "e5m2", "bf16": "bf16", "fp32": "fp32", "fp16": "fp16", "fp64": "fp64"}


def _fmt(tl_dtype) -> str | None:
    return _TL_FORMAT.get(getattr(tl_dtype, "name", str(tl_dtype)))


@contextlib.contextmanager
def faithful(contract=None, *, instruction: str | None = None, contraction: bool | None = None,
             approx: str = "refuse", cast_overflow: dict | None = None):
    """Swap fp8lab's semantics into Triton's interpreter for the duration (see the module doc).

    contract: an ``fp8lab.audit`` Contract (or its dict/JSON) of this kernel: preset, conversion
      modes and contraction lines come from it. Without one: ``instruction`` names the preset for
      ``tl.dot``, ``contraction=True`` contracts every float32 add of a product, and casts to fp8
      saturate (Triton's cvt on sm_90 is ``.satfinite``) unless ``cast_overflow`` says otherwise
      ({("fp32", "e4m3"): "inf_or_nan"}).
    approx: ``"refuse"`` (raise UnpinnedOperation) or ``"flag"`` (stock result, listed in flags).
    Yields a :class:`FaithfulRun`. Not re-entrant; one faithful context at a time per process.
    """
    if approx not in ("refuse", "flag"):
        raise ValueError(f"approx: expected 'refuse' or 'flag', got {approx!r}")
    if instruction is not None:
        from ..accum import tensor_core_names

        if instruction not in tensor_core_names():
            raise ValueError(f"instruction: unknown tensor-core preset {instruction!r}; see fp8lab.tensor_cores()")
    it = _interp()
    preset, overflow, lines = _contract_semantics(contract, instruction, contraction, cast_overflow)
    run = FaithfulRun(preset, {f"{a}->{b}": m for (a, b), m in overflow.items()}, lines, approx)
    b = it.interpreter_builder
    orig = {name: getattr(b, name) for name in ("create_fp_to_fp", "create_fp_trunc", "create_fp_ext", "cast_impl",
                                                "create_dot", "create_fmul", "create_fadd", "create_fsub",
                                                *_APPROX_BUILDER_OPS)}
    orig_sum = it.ReduceOps.sum
    if not _lock.acquire(blocking=False):
        raise RuntimeError("faithful: another faithful context is active in this process (not re-entrant)")
    try:
        _install(b, it, orig, run, preset, overflow, lines, approx)

        def _sum(self, input):
            if np.asarray(input.handle.data).dtype.kind == "f":
                _approx(run, approx, "float tl.sum (reduction tree order decided by the GPU layout)", _kernel_site())
            return orig_sum(self, input)

        it.ReduceOps.sum = _sum
        yield run
    finally:
        for name in orig:
            b.__dict__.pop(name, None)
        it.ReduceOps.sum = orig_sum
        _lock.release()


def _approx(run, mode, what, where):
    if mode == "refuse":
        raise UnpinnedOperation(what, where)
    flag = f"{what} at {where}"
    if flag not in run.flags:
        run.flags.append(flag)


def _install(b, it, orig, run, preset, overflow, lines, approx):
    import importlib

    F = importlib.import_module("fp8lab.formats")  # (fp8lab.formats, the attribute, is a function)

    tl = it.tl
    TensorHandle = it.TensorHandle

    def encode(src, dst_type, rounding_mode=None):
        """src float handle -> dst (fp8 / bf16) handle, fp8lab-encoded; None when not ours."""
        sf, df = _fmt(src.dtype.scalar), _fmt(dst_type.scalar)
        if sf is None or df is None:
            return None
        if sf in ("e4m3", "e5m2") and df in ("fp32", "fp16", "bf16", "fp64"):
            vals = F.decode(np.asarray(src.data, dtype=np.uint8), sf)
            run.count(f"{sf}->{df}")
            if df == "bf16":
                data = F.encode(vals.astype(np.float32), "bf16").view(np.uint16)
            else:
                data = vals.astype(it._get_np_dtype(dst_type))
            return TensorHandle(np.asarray(data).reshape(np.shape(src.data)), dst_type.scalar)
        if sf in ("fp32", "fp16", "bf16") and df in ("e4m3", "e5m2", "bf16") and sf != df:
            if sf == "bf16":
                x = (np.asarray(src.data, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
            else:
                x = np.asarray(src.data, dtype=np.float32)
            rnd, ovf = overflow.get((sf, df)) or overflow.get(("fp32", df)) or \
                ("nearest_even", "saturate" if df in ("e4m3", "e5m2") else "inf_or_nan")
            if rounding_mode is not None and rounding_mode == it._ir.ROUNDING_MODE.RTZ:
                rnd = "toward_zero"
            bits = F.encode(x, df, rounding=rnd, overflow=ovf)
            run.count(f"{sf}->{df}")
            dtype = np.uint8 if df != "bf16" else np.uint16
            return TensorHandle(np.asarray(bits, dtype=dtype).reshape(np.shape(src.data)), dst_type.scalar)
        if sf == "bf16" and df == "fp32":
            x = (np.asarray(src.data, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
            return TensorHandle(x.reshape(np.shape(src.data)), dst_type.scalar)
        return None

    # (A TensorHandle's truth value is data.all(): test for None explicitly.)
    def create_fp_to_fp(src, dst_type, rounding_mode):
        h = encode(src, dst_type, rounding_mode)
        return orig["create_fp_to_fp"](src, dst_type, rounding_mode) if h is None else h

    def create_fp_trunc(src, dst_type):
        h = encode(src, dst_type)
        return orig["create_fp_trunc"](src, dst_type) if h is None else h

    def create_fp_ext(src, dst_type):
        h = encode(src, dst_type)
        return orig["create_fp_ext"](src, dst_type) if h is None else h

    def cast_impl(src, dst_type):
        h = encode(src, dst_type)
        return orig["cast_impl"](src, dst_type) if h is None else h

    def create_dot(a, bh, d, input_precision, max_num_imprecise_acc):
        return _dot(run, it, preset, a, bh, d)

    def create_fmul(lhs, rhs):
        out = orig["create_fmul"](lhs, rhs)
        if out.data.dtype == np.float32:
            out.attr["fp8lab_product"] = (lhs, rhs)
        return out

    def fused(x, y, z, negate_product=False):
        xs, ys = np.asarray(x.data, np.float32), np.asarray(y.data, np.float32)
        if negate_product:
            xs = -xs
        r = it._interpreter.fma_fp32(*np.broadcast_arrays(xs, ys, np.asarray(z.data, np.float32)))
        run.count("fma")
        return TensorHandle(np.asarray(r, dtype=np.float32), z.dtype.scalar)

    def contract_here() -> bool:
        return lines is None or (bool(lines) and _kernel_site() in lines)

    def create_fadd(lhs, rhs):
        if lhs.data.dtype == np.float32 and rhs.data.dtype == np.float32:
            for p, other in ((lhs, rhs), (rhs, lhs)):  # LLVM tries the left operand first
                prod = p.attr.get("fp8lab_product")
                if prod is not None and np.shape(p.data) == np.broadcast_shapes(np.shape(p.data), np.shape(other.data)) \
                        and contract_here():
                    return fused(prod[0], prod[1], other)
        return orig["create_fadd"](lhs, rhs)

    def create_fsub(lhs, rhs):
        if lhs.data.dtype == np.float32 and rhs.data.dtype == np.float32:
            prod = lhs.attr.get("fp8lab_product")
            if prod is not None and contract_here():  # a*b - c = fma(a, b, -c)
                neg = TensorHandle(-np.asarray(rhs.data, np.float32), rhs.dtype.scalar)
                return fused(prod[0], prod[1], neg)
            prod = rhs.attr.get("fp8lab_product")
            if prod is not None and contract_here():  # c - a*b = fma(-a, b, c)
                return fused(prod[0], prod[1], lhs, negate_product=True)
        return orig["create_fsub"](lhs, rhs)

    patches = {"create_fp_to_fp": create_fp_to_fp, "create_fp_trunc": create_fp_trunc,
               "create_fp_ext": create_fp_ext, "cast_impl": cast_impl, "create_dot": create_dot,
               "create_fmul": create_fmul, "create_fadd": create_fadd, "create_fsub": create_fsub}
    for name, what in _APPROX_BUILDER_OPS.items():
        def make(name=name, what=what):
            def op(*args):
                if any(np.asarray(getattr(h, "data", h)).dtype in (np.float32, np.float16) or
                       getattr(getattr(h, "dtype", None), "name", "") == "bf16" for h in args):
                    _approx(run, approx, what, _kernel_site())
                return orig[name](*args)
            return op
        patches[name] = make()
    for name, fn in patches.items():
        setattr(b, name, fn)


def _dot(run, it, preset, a, b, d):
    """tl.dot through the tensor-core preset: K in instruction-sized steps, C chained."""
    from ..accum import dot as tc_dot, tensor_cores
    from ..formats import decode

    if preset is None:
        raise ValueError("tl.dot: no tensor-core preset — pass the kernel's audited contract (fp8lab.audit) or "
                         "instruction= to faithful()")
    info = next((p for p in tensor_cores() if preset in (p["alias"], p["name"])), None)

    def values(h):
        f = _fmt(h.dtype.scalar)
        if f in ("e4m3", "e5m2"):
            return decode(np.asarray(h.data, np.uint8), f)
        if f == "bf16":
            return (np.asarray(h.data, np.uint16).astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        if f in ("fp16", "fp32"):
            return np.asarray(h.data, np.float64)
        raise TypeError(f"tl.dot: operand type {h.dtype} is not modelled (fp8, fp16, bf16, fp32)")

    A, B = values(a), values(b)
    if A.ndim != 2 or B.ndim != 2:
        raise ValueError(f"tl.dot: only 2-D operands are modelled, got {A.shape} x {B.shape}")
    if np.asarray(d.data).dtype != np.float32:
        raise TypeError(f"tl.dot: only an FP32 accumulator is modelled, got {np.asarray(d.data).dtype}")
    m, k = A.shape
    n = B.shape[1]
    step = int(info["k"])
    fmt = info["input_format"] if _fmt(a.dtype.scalar) == info["input_format"] else None
    acc = np.broadcast_to(np.asarray(d.data, np.float32), (m, n)).copy()
    Bt = B.T
    for k0 in range(0, k, step):
        k1 = min(k0 + step, k)
        av = np.zeros((m, n, step))
        bv = np.zeros((m, n, step))
        av[:, :, :k1 - k0] = A[:, None, k0:k1]
        bv[:, :, :k1 - k0] = Bt[None, :, k0:k1]
        acc = tc_dot(av, bv, acc, instruction=preset, fmt=fmt)
        run.count(f"dot:{preset}")
    return it.TensorHandle(np.asarray(acc, np.float32), d.dtype.scalar)
