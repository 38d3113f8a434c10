"""record, check and record_all: traces from the emulator or a kernel, and their re-check."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from .ops import OPERATIONS, Operation, operation
from .outputs import as_host_array
from .trace import Trace, read_trace
from .verdict import Verdict


def run_kernel(fn, o: Operation, spec: dict, inputs: dict) -> dict:
    """A kernel's outputs by trace name: ``fn`` is a Python callable (called through the operation's
    ``call``) or an object with ``run_case(op, spec, inputs)`` (a C-ABI kernel run in a worker)."""
    if hasattr(fn, "run_case"):
        return fn.run_case(o, spec, inputs)
    return o.call(fn, spec, inputs)


def record(op: str, spec=None, seed: int = 0, kind: str | None = None, inputs: dict | None = None,
           fn: Callable | None = None, producer: str | None = None) -> Trace:
    """Runs the emulator (or kernel ``fn``, e.g. a GPU kernel through the C ABI) on generated (or
    given) inputs and returns the trace, not yet written. ``producer`` names what produced the
    outputs (for a GPU: GPU name + driver + kernel name); default: this fp8lab's emulator."""
    o = operation(op)
    spec = o.normalize_spec(spec)
    if int(seed) < 0:
        raise ValueError(f"seed: {seed} is negative")
    if inputs is None:
        kind = kind or o.kinds[0]
        if kind not in o.kinds and kind != "mixed":
            raise ValueError(f"kind: {kind!r} is not one of {list(o.kinds) + ['mixed']}")
        inputs = o.generate(spec, np.random.default_rng(int(seed)), kind)
    tensors = dict(o.input_tensors(spec, inputs))
    arrays = {k: t.array for k, t in tensors.items()}
    if fn is None:
        tensors.update(o.run(spec, arrays))
    else:
        if producer is None:
            raise ValueError("producer: a trace recorded from a kernel must name its producer "
                             "(GPU name + driver + kernel name)")
        got = run_kernel(fn, o, spec, {k: np.array(v) for k, v in arrays.items()})
        tensors.update(o.kernel_outputs(spec, {k: as_host_array(v) for k, v in got.items()}))
    stored, extra = o.stored_spec(spec)
    trace = Trace(op=op, spec=stored, seed=int(seed), tensors=tensors, extra=extra)
    if producer is not None:
        if not str(producer).strip():
            raise ValueError("producer: must not be empty")
        trace.producer = str(producer)
    return trace


def check(trace, fn: Callable | None = None) -> Verdict:
    """Recomputes a trace from its recorded inputs (with the emulator, or with kernel ``fn``) and
    compares with the recorded outputs."""
    if not isinstance(trace, Trace):
        trace = read_trace(trace)
    o = operation(trace.op)
    trace = o.adapt(trace)
    spec = o.normalize_spec(trace.spec)
    inputs = trace.inputs()
    what = f"{Path(trace.path).name if trace.path else 'trace'} ({trace.op})"
    try:
        if fn is None:
            got = {k: t.array for k, t in o.run(spec, inputs).items()}
        else:
            got = run_kernel(fn, o, spec, inputs)
    except KeyError as err:
        raise ValueError(f"{trace.path or 'trace'}: op {trace.op!r} needs tensor {err.args[0]!r}, "
                         "which the trace does not hold") from None
    expected = {k: t for k, t in trace.tensors.items() if t.role == "output"}
    return o.compare(spec, inputs, expected, got, what)


def default_golden_dir() -> Path:
    """The golden set `fp8lab verify` checks by default: $FP8LAB_GOLDEN_DIR, else ./fixtures/golden,
    else the set installed with the package (fp8lab/fixtures/golden), else the source tree's. The
    first that exists; the package's when none does (verify then says how to point at one)."""
    env = os.environ.get("FP8LAB_GOLDEN_DIR")
    if env:
        return Path(env)
    from .. import __path__ as package_dirs

    candidates = [Path.cwd() / "fixtures" / "golden"]
    candidates += [Path(p) / "fixtures" / "golden" for p in package_dirs]
    candidates.append(Path(__file__).resolve().parents[4] / "fixtures" / "golden")
    return next((c for c in candidates if c.is_dir()), candidates[1])


def record_all(directory=None, update: bool = False) -> list[Path]:
    """Regenerates every committed fixture (`fp8lab golden record --all --update`)."""
    directory = Path(directory or default_golden_dir())
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for o in OPERATIONS.values():
        for stem, spec, seed, kind in o.fixtures():
            path = directory / f"{stem}.safetensors"
            record(o.name, spec, seed, kind).write(path, update=update)
            written.append(path)
    return written

