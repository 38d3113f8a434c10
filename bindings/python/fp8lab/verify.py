"""``fp8lab.verify``: check a kernel (a Python callable, or a C-ABI shared library) against the
emulator on generated inputs aimed at the known failure modes, and re-run the golden traces.

Every comparison ends in a :class:`~fp8lab.golden.Verdict`: bit-identical, within bound, or
violation. A failing generated case is shrunk to a small one before it is reported.
"""
from __future__ import annotations

import ctypes
import dataclasses
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np

from . import golden
from .audit.contract import audited_spec
from .golden import Verdict, operation

#: exit codes of `fp8lab verify` and `fp8lab golden check`
EXIT_OK, EXIT_VIOLATION, EXIT_ERROR, EXIT_WITHIN_BOUND = 0, 1, 2, 3


@dataclasses.dataclass
class CaseResult:
    """One checked thing: a golden trace or one generated case (or a shrunk counterexample)."""

    name: str
    verdict: Verdict | None
    error: str | None = None
    inputs: dict | None = None  # the (shrunk) failing inputs of a generated case

    @property
    def kind(self) -> str:
        return "error" if self.error else self.verdict.kind

    def to_dict(self) -> dict:
        d = {"name": self.name, "kind": self.kind}
        if self.error:
            d["error"] = self.error
        else:
            d["verdict"] = self.verdict.to_dict()
        if self.inputs is not None:
            def plain(x):  # strict JSON: non-finite numbers as strings, like the C++ verdicts
                return x if not isinstance(x, float) or np.isfinite(x) else repr(x)
            d["counterexample"] = {k: {"shape": list(np.shape(v)),
                                       "values": [plain(x) for x in np.asarray(v).ravel()[:64].tolist()]}
                                   for k, v in self.inputs.items()}
        return d


@dataclasses.dataclass
class VerifyResult:
    """What verify() found: the overall verdict, the cases run, and the shrunk counterexample."""

    op: str
    spec: dict
    verdict: Verdict
    cases: int
    counterexample: dict | None = None
    counterexample_kind: str | None = None
    results: list = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.verdict.ok

    @property
    def kind(self) -> str:
        return self.verdict.kind

    def __str__(self) -> str:
        s = f"verify {self.op}: {self.verdict.kind} over {self.cases} cases — {self.verdict.summary}"
        if self.counterexample is not None:
            shapes = ", ".join(f"{k}{list(np.shape(v))}" for k, v in self.counterexample.items())
            s += f"\n  shrunk counterexample ({self.counterexample_kind}): {shapes}"
        return s


def _as_numpy(x):
    """Kernels may return torch tensors: bring them to numpy without importing torch."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _to_torch(x):
    import torch

    x = np.array(x)
    if x.dtype == np.uint16:  # torch has no uint16 before 2.3: hand over BF16/FP16 bits as int16
        x = x.view(np.int16)
    return torch.from_numpy(x)


def _check_case(o: golden.Operation, fn: Callable, spec: dict, inputs: dict, what: str,
                torch_inputs: bool = False) -> Verdict:
    expected = o.run(spec, inputs)
    wrapped = fn
    if torch_inputs:
        def wrapped(*args):
            return fn(*[_to_torch(a) if isinstance(a, np.ndarray) else a for a in args])
    got = {k: _as_numpy(v) for k, v in o.call(wrapped, spec, {k: np.array(v) for k, v in inputs.items()}).items()}
    return o.compare(spec, inputs, expected, got, what)


def _shrink(o, fn, spec, inputs, what, budget: int = 400, torch_inputs: bool = False):
    """Greedy shrinking: keep taking the first smaller variant that still fails (a violation)."""
    current = inputs
    steps = 0
    progress = True
    while progress and steps < budget:
        progress = False
        for candidate in o.shrink(spec, current):
            steps += 1
            if steps > budget:
                break
            try:
                v = _check_case(o, fn, spec, candidate, what, torch_inputs)
            except (ValueError, TypeError):
                continue  # a variant the operation or the kernel rejects is not a smaller failure
            if v.kind == "violation":
                current = candidate
                progress = True
                break
    return current


def verify(fn: Callable, op: str = "gemm", spec=None, cases: int = 200, seed: int = 0, shrink: bool = True,
           stop_at_first: bool = True, torch: bool = False) -> VerifyResult:
    """Calls ``fn`` on ``cases`` generated inputs and compares it with the emulator under ``spec``.

    ``fn`` receives numpy arrays and the full spec dict, and may return numpy arrays or torch
    tensors (see each operation's ``call``):
      cast       ``fn(x, spec) -> bits``
      quantize   ``fn(x, spec) -> (bits, scales)``
      gemm       ``fn(a_bits, a_scales, b_bits, b_scales, spec) -> d`` (float values of spec "out")
      moe_route  ``fn(logits, bias, spec) -> (ids int32, weights float32)``
    ``spec`` may be an audit contract (``fp8lab.audit``): the kernel is then checked against the
    arithmetic it compiles to. With ``torch=True`` (torch installed) it receives CPU torch tensors instead (uint16 bit
    patterns as int16). Generators cycle through the operation's kinds (zero/extreme blocks, ties,
    ragged shapes, NaN/Inf, ...). The first violation is shrunk to a small case and returned with
    the verdict; within-bound results are collected and summarised.
    """
    if not callable(fn):
        raise TypeError(f"fn: expected a callable kernel, got {type(fn).__name__}")
    if int(cases) < 1:
        raise ValueError(f"cases: {cases} must be at least 1")
    if int(seed) < 0:
        raise ValueError(f"seed: {seed} is negative")
    if torch:
        try:
            import torch as _torch  # noqa: F401
        except ImportError:
            raise ValueError("torch: torch=True but torch is not installed (`make peers`)") from None
    o = operation(op)
    spec = o.normalize_spec(audited_spec(spec, op))  # a contract: the arithmetic the kernel compiles to
    rng = np.random.default_rng(int(seed))
    results, worst_within = [], None
    for i in range(int(cases)):
        kind = o.kinds[i % len(o.kinds)]
        inputs = o.generate(spec, rng, kind)
        what = f"{op} case {i} ({kind})"
        v = _check_case(o, fn, spec, inputs, what, torch)
        results.append(CaseResult(what, v))
        if v.kind == "violation":
            small = _shrink(o, fn, spec, inputs, what, torch_inputs=torch) if shrink else inputs
            vs = _check_case(o, fn, spec, small, f"{op} case {i} ({kind}, shrunk)", torch)
            res = VerifyResult(op, spec, vs, i + 1, small, kind, results)
            results.append(CaseResult(vs.summary, vs, inputs=small))
            if stop_at_first:
                return res
        elif v.kind == "within-bound" and worst_within is None:
            worst_within = v
    kinds = [r.verdict.kind for r in results]
    if "violation" in kinds:
        first = next(r for r in results if r.verdict.kind == "violation")
        return VerifyResult(op, spec, first.verdict, int(cases), first.inputs, None, results)
    if worst_within is not None:
        n = kinds.count("within-bound")
        return VerifyResult(op, spec, Verdict("within-bound", f"{n} of {cases} cases within bound; first: "
                                              f"{worst_within.summary}", worst_within.details), int(cases),
                            results=results)
    return VerifyResult(op, spec, Verdict("bit-identical", f"{op}: bit-identical on all {cases} cases",
                                          {"count": int(cases)}), int(cases), results=results)


# --------------------------------------------------------------------------------------------
# Kernels behind the C ABI (golden/fp8lab_kernel.h)


class KernelError(RuntimeError):
    """The kernel returned a non-zero status (its own message attached)."""


def load_kernel(target: str, op: str) -> Callable:
    """``lib.so:symbol`` -> a Python callable with the signature ``op``'s call() expects."""
    if ":" not in target:
        raise ValueError(f"kernel: {target!r} must be LIBRARY:SYMBOL, e.g. ./libmine.so:my_gemm")
    lib_path, symbol = target.rsplit(":", 1)
    if not symbol:
        raise ValueError(f"kernel: {target!r} names no symbol after ':'")
    if not os.path.exists(lib_path):
        raise FileNotFoundError(f"kernel: library {lib_path} does not exist")
    try:
        lib = ctypes.CDLL(os.path.abspath(lib_path))
    except OSError as err:
        raise OSError(f"kernel: cannot load {lib_path}: {err}") from None
    try:
        f = getattr(lib, symbol)
    except AttributeError:
        raise ValueError(f"kernel: {lib_path} exports no symbol {symbol!r}") from None
    f.restype = ctypes.c_int
    err_buf = ctypes.create_string_buffer(1024)

    def status(rc):
        if rc != 0:
            raise KernelError(f"kernel {symbol} failed (status {rc}): {err_buf.value.decode(errors='replace')}")

    def ptr(a):
        return a.ctypes.data_as(ctypes.c_void_p)

    if op == "cast":
        def cast(x, spec):
            x = np.ascontiguousarray(x, dtype=np.float32)
            storage = {8: np.uint8, 16: np.uint16, 32: np.uint32}[golden.format_info(spec["to"])["storage_bits"]]
            y = np.zeros(x.shape, dtype=storage)
            status(f(ptr(x), ctypes.c_size_t(x.size), golden.canonical_json(spec).encode(), ptr(y), err_buf,
                     ctypes.c_size_t(len(err_buf))))
            return y
        return cast
    if op == "gemm":
        def gemm(a, a_scales, b, b_scales, spec):
            a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
            sa = np.ascontiguousarray(a_scales, dtype=np.float32)
            sb = np.ascontiguousarray(b_scales, dtype=np.float32)
            m, k = a.shape
            n = b.shape[0]
            d = np.zeros((m, n), dtype=np.float32)
            status(f(ptr(a), ptr(sa), ptr(b), ptr(sb), ctypes.c_size_t(m), ctypes.c_size_t(n), ctypes.c_size_t(k),
                     golden.canonical_json(spec).encode(), ptr(d), err_buf, ctypes.c_size_t(len(err_buf))))
            return d
        return gemm
    if op == "moe_route":
        def moe_route(logits, bias, spec):
            logits = np.ascontiguousarray(logits, dtype=np.float32)
            bias = np.ascontiguousarray(bias, dtype=np.float32)
            t, e = logits.shape
            k = int(spec["topk"])
            ids = np.zeros((t, k), dtype=np.int32)
            weights = np.zeros((t, k), dtype=np.float32)
            status(f(ptr(logits), ptr(bias), ctypes.c_size_t(t), ctypes.c_size_t(e), golden.canonical_json(spec).encode(),
                     ptr(ids), ptr(weights), err_buf, ctypes.c_size_t(len(err_buf))))
            return ids, weights
        return moe_route
    raise ValueError(f"op: the C ABI has no entry point for {op!r}; it defines cast, gemm and moe_route")


# --------------------------------------------------------------------------------------------
# The `fp8lab verify` run: every golden trace + N generated cases per operation


def verify_golden(directory=None, fn: Callable | None = None, op=None,
                  spec: dict | None = None) -> list[CaseResult]:
    """Checks every trace in ``directory`` (of operation(s) ``op`` only, and only traces recorded under
    ``spec`` — the spec a kernel declares it implements — when given)."""
    directory = Path(directory or golden.default_golden_dir())
    if not directory.is_dir():
        raise FileNotFoundError(f"golden: {directory} is not a directory")
    out = []
    for path in sorted(directory.glob("*.safetensors")):
        out.append(check_file(path, fn, op, spec))
    return [r for r in out if r is not None]


def check_file(path, fn: Callable | None = None, op=None,
               spec: dict | None = None) -> CaseResult | None:
    """Checks one trace file. A trace whose bytes no longer match their digests (an edited or
    corrupted fixture) is still recomputed, so the verdict names the element that changed; it is a
    violation when the recomputation disagrees, an error otherwise."""
    path = Path(path)
    try:
        trace = golden.read_trace(path, check_digests=False)
        if op is not None and trace.op not in ({op} if isinstance(op, str) else set(op)):
            return None
        if spec is not None and golden.operation(trace.op).normalize_spec(trace.spec) != spec:
            return None  # recorded under a spec the kernel does not implement
        v = golden.check(trace, fn)
        if trace.digest_mismatches:
            note = "; ".join(trace.digest_mismatches)
            if v.kind == "violation":
                return CaseResult(path.name, Verdict("violation", f"{note}; recomputed: {v.summary}", v.details))
            return CaseResult(path.name, None, note)
        return CaseResult(path.name, v)
    except (ValueError, TypeError, OSError, KernelError) as err:
        return CaseResult(path.name, None, str(err))


def _emulator_oracle(op: str) -> Callable | None:
    """Without --kernel, generated cases compare the emulator with an independent formulation."""
    o = golden.OPERATIONS[op]
    return getattr(o, "oracle", None)


def run(golden_dir=None, cases: int = 20, seed: int = 0, ops: list[str] | None = None,
        kernel: str | None = None, use_golden: bool = True, spec=None) -> list[CaseResult]:
    """What `fp8lab verify` runs. With ``kernel`` (LIB.so:SYMBOL) exactly one op is checked, under
    ``spec`` (the spec the kernel implements; default the op's default): the traces recorded under
    that spec and ``cases`` generated cases. Without a kernel every trace is recomputed by the
    emulator and each op's generated cases compare the emulator with an independent oracle."""
    results: list[CaseResult] = []
    if ops:
        for name in ops:
            operation(name)  # validates the name
    if kernel and (not ops or len(ops) != 1):
        raise ValueError("op: --kernel needs exactly one --op (the operation the library implements)")
    if spec is not None and (not ops or len(ops) != 1):
        raise ValueError("spec: --spec needs exactly one --op")
    if spec is not None:
        spec = audited_spec(spec, ops[0])  # `--spec @contract.json`: the audited kernel's spec
    kernel_spec = operation(ops[0]).normalize_spec(spec) if spec is not None or kernel else None
    if kernel:
        fn = load_kernel(kernel, ops[0])
    else:
        fn = None
    if use_golden:
        results += verify_golden(golden_dir, fn, ops or None, kernel_spec if kernel else None)
    names = ops or [n for n, o in golden.OPERATIONS.items() if o.available()]
    for name in names:
        if cases <= 0:
            break
        f = fn if fn is not None else _emulator_oracle(name)
        if f is None:
            continue
        o = golden.OPERATIONS[name]
        case_spec = kernel_spec if fn is not None or kernel_spec is not None else (
            o.oracle_spec() if hasattr(o, "oracle_spec") else None)
        try:
            r = verify(f, op=name, spec=case_spec, cases=cases, seed=seed)
            label = f"{name}: {cases} generated cases" + ("" if fn else f" ({o.oracle_label})")
            results.append(CaseResult(label, r.verdict, inputs=r.counterexample))
        except (ValueError, TypeError, OSError, KernelError) as err:
            results.append(CaseResult(f"{name}: generated cases", None, str(err)))
    return results


def exit_code(results: list[CaseResult], accept_within_bound: bool = False) -> int:
    kinds = {r.kind for r in results}
    if "error" in kinds:
        return EXIT_ERROR
    if "violation" in kinds:
        return EXIT_VIOLATION
    if "within-bound" in kinds and not accept_within_bound:
        return EXIT_WITHIN_BOUND
    return EXIT_OK


def junit_xml(results: list[CaseResult], accept_within_bound: bool = False, suite: str = "fp8lab verify") -> str:
    from xml.sax.saxutils import escape, quoteattr

    failures = sum(r.kind == "violation" or (r.kind == "within-bound" and not accept_within_bound) for r in results)
    errors = sum(r.kind == "error" for r in results)
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             f'<testsuite name={quoteattr(suite)} tests="{len(results)}" failures="{failures}" errors="{errors}">']
    for r in results:
        lines.append(f'  <testcase classname="fp8lab.verify" name={quoteattr(r.name)}>')
        if r.kind == "error":
            lines.append(f'    <error message={quoteattr(r.error)}>{escape(r.error)}</error>')
        elif r.kind == "violation" or (r.kind == "within-bound" and not accept_within_bound):
            lines.append(f'    <failure type="{r.kind}" message={quoteattr(r.verdict.summary)}>'
                         f'{escape(json.dumps(r.to_dict(), sort_keys=True))}</failure>')
        elif r.kind == "within-bound":
            lines.append(f'    <system-out>{escape(r.verdict.summary)} (accepted)</system-out>')
        lines.append("  </testcase>")
    lines.append("</testsuite>")
    return "\n".join(lines) + "\n"
