"""The `fp8lab verify` run: every golden trace plus N generated cases per operation, and the
checking of single trace files (`fp8lab golden check`)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from .. import golden
from ..audit.contract import audited_spec
from ..golden import Verdict, operation
from .cases import verify
from .kernels import DEFAULT_TIMEOUT, CKernel, KernelCrash, KernelError, load_kernel
from .results import CaseResult


def trace_path_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as a trace file (a usage error), or None."""
    if not path.exists():
        return "no such file"
    if path.is_dir():
        return "is a directory, not a trace file (give the .safetensors files, or `fp8lab verify --golden DIR`)"
    if not os.access(path, os.R_OK):
        return "cannot be read (permission denied)"
    return None


def verify_golden(directory=None, fn: Callable | None = None, op=None,
                  spec: dict | None = None) -> list[CaseResult]:
    """Checks every trace in ``directory`` (of operation(s) ``op`` only, and only traces recorded under
    ``spec`` — the spec a kernel declares it implements — when given)."""
    directory = Path(directory) if directory else golden.default_golden_dir()
    if not directory.is_dir():
        raise FileNotFoundError(f"golden: {directory} is not a directory (give --golden DIR or set "
                                "FP8LAB_GOLDEN_DIR; `fp8lab golden record --all --dir DIR` writes a set)")
    out = []
    for path in sorted(directory.glob("*.safetensors")):
        out.append(check_file(path, fn, op, spec))
    return [r for r in out if r is not None]


def check_file(path, fn: Callable | None = None, op=None,
               spec: dict | None = None) -> CaseResult | None:
    """Checks one trace file. A trace whose bytes no longer match their digests (an edited or
    corrupted fixture) is still recomputed, so the verdict names the element that changed; it is a
    violation when the recomputation disagrees, an error otherwise. A kernel that crashes or times
    out on the trace's inputs is a violation of that trace."""
    path = Path(path)
    problem = trace_path_problem(path)
    if problem:
        return CaseResult(str(path), None, problem)
    try:
        trace = golden.read_trace(path, check_digests=False)
        if op is not None and trace.op not in ({op} if isinstance(op, str) else set(op)):
            return None
        if spec is not None and operation(trace.op).normalize_spec(operation(trace.op).adapt(trace).spec) != spec:
            return None  # recorded under a spec the kernel does not implement
        try:
            v = golden.check(trace, fn)
        except KernelCrash as crash:
            return CaseResult(path.name, Verdict(
                "violation", f"{path.name} ({trace.op}): violation: {crash} on this trace's inputs "
                f"(replay: fp8lab golden check --kernel {getattr(fn, 'target', 'LIB:SYMBOL')} {path})",
                {"crash": crash.signal_name, "timed_out": crash.timed_out, "trace": str(path)}))
        if trace.digest_mismatches:
            note = "; ".join(trace.digest_mismatches)
            if v.kind == "violation":
                return CaseResult(path.name, Verdict("violation", f"{note}; recomputed: {v.summary}", v.details))
            return CaseResult(path.name, None, note)
        return CaseResult(path.name, v)
    except KernelError as err:
        return CaseResult(path.name, None, f"{path.name}: {err}")
    except (ValueError, TypeError, OSError) as err:
        return CaseResult(path.name, None, str(err))


def _emulator_oracle(op: str) -> Callable | None:
    """Without --kernel, generated cases compare the emulator with an independent formulation."""
    return getattr(golden.OPERATIONS[op], "oracle", None)


def run(golden_dir=None, cases: int = 20, seed: int = 0, ops: list[str] | None = None,
        kernel: str | None = None, use_golden: bool = True, spec=None, timeout: float = DEFAULT_TIMEOUT,
        failures_dir=None) -> list[CaseResult]:
    """What `fp8lab verify` runs. With ``kernel`` (LIB.so:SYMBOL) exactly one op is checked, under
    ``spec`` (the spec the kernel implements; default the op's default): the traces recorded under
    that spec and ``cases`` generated cases, the kernel isolated in a worker process with a
    ``timeout`` per case. Without a kernel every trace is recomputed by the emulator and each op's
    generated cases compare the emulator with an independent oracle."""
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
    fn = load_kernel(kernel, ops[0], timeout) if kernel else None
    try:
        if use_golden:
            results += verify_golden(golden_dir, fn, ops or None, kernel_spec if kernel else None)
        for name in ops or list(golden.OPERATIONS):
            if cases <= 0:
                break
            f = fn if fn is not None else _emulator_oracle(name)
            if f is None:
                continue
            o = golden.OPERATIONS[name]
            case_spec = kernel_spec if fn is not None or kernel_spec is not None else (
                o.oracle_spec() if hasattr(o, "oracle_spec") else None)
            try:
                r = verify(f, op=name, spec=case_spec, cases=cases, seed=seed, failures_dir=failures_dir)
                label = f"{name}: {cases} generated cases" + ("" if fn else f" ({o.oracle_label})")
                results.append(CaseResult(label, r.verdict, inputs=r.counterexample, op=name, spec=r.spec))
            except (ValueError, TypeError, OSError, KernelError) as err:
                results.append(CaseResult(f"{name}: generated cases", None, str(err)))
    finally:
        if isinstance(fn, CKernel):
            fn.close()
    return results
