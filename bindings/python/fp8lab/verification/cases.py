"""``fp8lab.verify``: a kernel against the emulator on generated inputs aimed at the known failure
modes; the first violation is shrunk to a small case."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Callable

import numpy as np

from ..audit.contract import audited_spec
from ..golden import Operation, Verdict, operation, record, run_kernel
from .kernels import KernelCrash, KernelError
from .results import CaseResult


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


def _to_torch(x):
    import torch

    x = np.array(x)
    if x.dtype == np.uint16:  # torch has no uint16 before 2.3: hand over BF16/FP16 bits as int16
        x = x.view(np.int16)
    return torch.from_numpy(x)


def kernel_outputs(o: Operation, fn, spec: dict, inputs: dict, what: str, torch_inputs: bool = False) -> dict:
    """The kernel's outputs; a kernel that raises (or returns a non-zero C status) is a KernelError
    naming the case."""
    wrapped = fn
    if torch_inputs:
        def wrapped(*args):
            return fn(*[_to_torch(a) if isinstance(a, np.ndarray) else a for a in args])
    try:
        return run_kernel(wrapped, o, spec, {k: np.array(v) for k, v in inputs.items()})
    except KernelCrash:
        raise
    except KernelError as err:
        raise KernelError(f"{what}: {err}") from err
    except Exception as err:  # a Python kernel's own exception: reported like a failing C status
        raise KernelError(f"{what}: the kernel raised {type(err).__name__}: {err}") from err


def check_case(o: Operation, fn, spec: dict, inputs: dict, what: str, torch_inputs: bool = False) -> Verdict:
    expected = o.run(spec, inputs)
    got = kernel_outputs(o, fn, spec, inputs, what, torch_inputs)
    return o.compare(spec, inputs, expected, got, what)


def crash_verdict(o: Operation, spec: dict, inputs: dict, what: str, crash: KernelCrash,
                  failures_dir=None) -> Verdict:
    """A crash or timeout as a violation of its case; the inputs are saved as a trace (with the
    emulator's outputs) that `fp8lab golden check --kernel` replays."""
    details = {"crash": crash.signal_name, "timed_out": crash.timed_out}
    saved = ""
    if failures_dir is not None:
        directory = Path(failures_dir)
        directory.mkdir(parents=True, exist_ok=True)
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{what}_{crash.signal_name}").strip("_")
        path = directory / f"{stem}.safetensors"
        trace = record(o.name, spec, inputs={k: np.asarray(v) for k, v in inputs.items()})
        trace.write(path, update=True)
        details["trace"] = str(path)
        saved = f"; inputs saved as {path}"
    shapes = ", ".join(f"{k}{list(np.shape(v))}" for k, v in inputs.items())
    return Verdict("violation", f"{what}: violation: {crash} on inputs {shapes}{saved}", details)


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
                v = check_case(o, fn, spec, candidate, what, torch_inputs)
            except (ValueError, TypeError, KernelError, KernelCrash):
                continue  # a variant the operation or the kernel rejects is not a smaller failure
            if v.kind == "violation":
                current = candidate
                progress = True
                break
    return current


def verify(fn: Callable, op: str = "gemm", spec=None, cases: int = 200, seed: int = 0, shrink: bool = True,
           stop_at_first: bool = True, torch: bool = False, failures_dir=None) -> VerifyResult:
    """Calls ``fn`` on ``cases`` generated inputs and compares it with the emulator under ``spec``.

    ``fn`` receives numpy arrays and the full spec dict (see each operation's ``call``):
      cast       ``fn(x, spec) -> bits``
      quantize   ``fn(x, spec) -> (bits, scales)``
      gemm       ``fn(a_bits, a_scales, b_bits, b_scales, spec) -> d`` (values of spec "out")
      moe_route  ``fn(logits, bias, spec) -> (ids int32, weights float32)``
      mla_index  ``fn(q, k, weights, starts, ends, spec) -> (logits float32, indices int32)``
      mla_sparse_decode ``fn(q, kv_cache, indices, topk_length, attn_sink, spec) -> (out, lse)``
    It may return numpy, ml_dtypes or torch arrays (any device; DLPack producers too): bit
    patterns in the trace's storage type, the format's own float type (bfloat16, float8_e4m3fn),
    or float16/bfloat16/float32/float64 values of the output format. ``spec`` may be an audit
    contract (``fp8lab.audit``): the kernel is then checked against the arithmetic it compiles to.
    With ``torch=True`` it
    receives CPU torch tensors instead (uint16 bit patterns as int16). ``fn`` may also be a C-ABI
    kernel from :func:`load_kernel` (run isolated: a crash or timeout is a violation of its case).
    A kernel that raises is a :class:`KernelError` naming the case. The first violation is shrunk
    to a small case and returned with the verdict; within-bound results are summarised.
    """
    if not callable(fn) and not hasattr(fn, "run_case"):
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
        try:
            v = check_case(o, fn, spec, inputs, what, torch)
        except KernelCrash as crash:
            v = crash_verdict(o, spec, inputs, what, crash, failures_dir)
            results.append(CaseResult(what, v, inputs=inputs, op=op, spec=spec))
            return VerifyResult(op, spec, v, i + 1, inputs, kind, results)
        results.append(CaseResult(what, v))
        if v.kind == "violation":
            small = _shrink(o, fn, spec, inputs, what, torch_inputs=torch) if shrink else inputs
            vs = check_case(o, fn, spec, small, f"{op} case {i} ({kind}{', shrunk' if shrink else ''})", torch)
            res = VerifyResult(op, spec, vs, i + 1, small, kind, results)
            results.append(CaseResult(vs.summary, vs, inputs=small, op=op, spec=spec))
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
