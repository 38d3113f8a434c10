"""The interface every golden/verify operation implements, and the one verdict function
(:meth:`Operation.judge`) that ``golden check``, ``golden diff`` and ``verify`` all call."""
from __future__ import annotations

import ctypes
import json
from typing import Callable, Iterable

import numpy as np

from ..outputs import OutputMismatch, coerce_output
from ..trace import FORMAT_OF_DTYPE, NUMPY_OF_DTYPE, Trace, TraceTensor
from ..verdict import Verdict, compare_tensors, compare_values, values_of


def spec_as_dict(spec) -> dict:
    """A spec given as a dict or as JSON object text, as a dict (errors name the argument)."""
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as err:
            raise ValueError(f"spec: not valid JSON ({err})") from None
    if not isinstance(spec, dict):
        raise TypeError(f"spec: expected a dict or JSON object text, got {type(spec).__name__}")
    return spec


def ragged_size(rng: np.random.Generator, kind: str) -> int:
    if kind == "ragged":
        return int(rng.choice([0, 1, 2, 31, 127, 129, 255]))
    return int(rng.integers(1, 300))


def c_ptr(a: np.ndarray) -> ctypes.c_void_p:
    return a.ctypes.data_as(ctypes.c_void_p)


def pair_outputs(out, names: tuple[str, str]) -> dict:
    """A Python kernel's two-array return value by trace name; {} when it returned anything but a
    pair (then the verdict says the kernel returned no ``names[0]``)."""
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        return {}
    return dict(zip(names, out))


def output_tensors(got: dict, dtypes: dict[str, str]) -> dict[str, TraceTensor]:
    """A kernel's outputs as trace tensors of the given trace dtypes (name -> dtype); a kernel
    array in another numpy dtype is a TypeError naming the outputs and both dtypes."""
    arrays = {name: np.asarray(got[name]) for name in dtypes}
    want = {name: np.dtype(NUMPY_OF_DTYPE[d]) for name, d in dtypes.items()}
    if any(arrays[n].dtype != want[n] for n in dtypes):
        raise TypeError(f"{'/'.join(dtypes)}: the kernel returned {'/'.join(str(a.dtype) for a in arrays.values())}, "
                        f"expected {'/'.join(str(w) for w in want.values())}")
    return {name: TraceTensor("output", d, arrays[name]) for name, d in dtypes.items()}


class Operation:
    """How golden/verify handle one operation. Subclasses fill in the hooks."""

    name = ""
    #: generator kinds, each aimed at a known failure mode (REFERENCE.md "Known failures")
    kinds: tuple[str, ...] = ("random",)
    #: what `fp8lab verify` compares the emulator with on generated cases (see oracle())
    oracle_label = "emulator vs independent oracle"

    def default_spec(self) -> dict:
        raise NotImplementedError

    def normalize_spec(self, spec) -> dict:
        """A full spec dict from a dict, JSON text or recipe name (raises ValueError naming it)."""
        if spec is None:
            return self.default_spec()
        spec = spec_as_dict(spec)
        full = self.default_spec()
        unknown = set(spec) - set(full)
        if unknown:
            raise ValueError(f"spec: unknown key(s) {sorted(unknown)} for op {self.name!r}; known: {sorted(full)}")
        full.update(spec)
        return full

    def fixtures(self) -> list[tuple[str, dict, int, str]]:
        """(file stem, spec, seed, generator kind) of the committed traces of this op."""
        return []

    def generate(self, spec: dict, rng: np.random.Generator, kind: str) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def run(self, spec: dict, inputs: dict[str, np.ndarray]) -> dict[str, TraceTensor]:
        """Outputs and intermediates of the emulator."""
        raise NotImplementedError

    def input_tensors(self, spec: dict, inputs: dict[str, np.ndarray]) -> dict[str, TraceTensor]:
        raise NotImplementedError

    def value_format(self, spec: dict, name: str, dtype: str) -> str | None:
        return FORMAT_OF_DTYPE.get(dtype)

    def bound(self, spec: dict, inputs: dict[str, np.ndarray], name: str):
        """(exact, bound) arrays for output ``name`` when the spec certifies a bound and does not
        pin the bits, else None (then any difference is a violation)."""
        return None

    def call(self, fn: Callable, spec: dict, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Calls a Python kernel ``fn`` on the inputs; returns its outputs by trace name."""
        raise NotImplementedError

    def call_c(self, f, spec: dict, spec_json: bytes, inputs: dict[str, np.ndarray],
               error: ctypes.Array) -> tuple[int, dict[str, np.ndarray]]:
        """Calls C-ABI entry point ``f`` (golden/fp8lab_kernel.h) on the inputs: (status, outputs
        by trace name). Operations without a C entry point raise ValueError."""
        raise ValueError(f"op: the C ABI has no entry point for {self.name!r}")

    def adapt(self, trace: Trace) -> Trace:
        """Maps a stored trace (this op's stored form, an earlier form, another producer's layout)
        onto the spec dict and tensor names this op runs on (default: as is)."""
        return trace

    def stored_spec(self, spec: dict) -> tuple[dict, dict[str, str]]:
        """What a trace of ``spec`` stores: its ``spec`` metadata and any further metadata strings
        (default: the spec itself, nothing else). ``adapt`` reads it back."""
        return spec, {}

    def kernel_outputs(self, spec: dict, got: dict[str, np.ndarray]) -> dict[str, TraceTensor]:
        """A kernel's outputs (from call()) as trace tensors, for traces recorded on hardware."""
        raise NotImplementedError

    def shrink(self, spec: dict, inputs: dict[str, np.ndarray]) -> Iterable[dict[str, np.ndarray]]:
        """Smaller variants of a failing case, most aggressive first."""
        return []

    def judge(self, spec: dict, inputs: dict[str, np.ndarray], name: str, expected: TraceTensor, got,
              what: str) -> Verdict:
        """The verdict on one output: ``got`` (a kernel's array in any accepted dtype, or another
        trace's tensor) against the ``expected`` trace tensor under ``spec``. The only verdict
        function: golden check, golden diff and verify all end here."""
        label = f"{what} {name}".strip()
        fmt = self.value_format(spec, name, expected.dtype)
        try:
            how, g = coerce_output(got, expected, fmt, name)
        except OutputMismatch as err:
            return Verdict("violation", f"{label}: violation: {err}", {"count": int(expected.array.size)})
        eb = self.bound(spec, inputs, name)
        exact, bound = eb if eb is not None else (None, None)
        if how == "bits":
            return compare_tensors(name, expected.dtype, g, expected.array, fmt=fmt, what=what, exact=exact,
                                   bound=bound)
        return compare_values(g, values_of(expected.array, expected.dtype, fmt), fmt=fmt, what=label,
                              exact=exact, bound=bound, shape=expected.array.shape)

    def compare(self, spec: dict, inputs: dict[str, np.ndarray], expected: dict[str, TraceTensor],
                got: dict[str, np.ndarray], what: str) -> Verdict:
        verdicts = []
        for name, t in expected.items():
            if t.role != "output":
                continue
            if name not in got:
                verdicts.append(Verdict("violation", f"{what} {name}: violation: the kernel returned no {name!r}"))
                continue
            verdicts.append(self.judge(spec, inputs, name, t, got[name], what))
        return Verdict.worst(verdicts, what)
