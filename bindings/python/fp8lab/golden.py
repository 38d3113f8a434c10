"""Golden traces: record the exact bits an operation produced for fixed inputs, check them later,
and explain what changed between two traces.

A trace is a safetensors file (readable by the ``safetensors`` package) holding the inputs, the
outputs and chosen intermediates of one operation, with ``__metadata__`` (all strings) holding the
spec as canonical JSON and its SHA-256, the producer, the seed and a SHA-256 per tensor. Reading
goes through fp8lab's strict C++ parser: a corrupt, truncated or hand-edited file raises
:class:`TraceError` (a ``ValueError``) naming the file and the problem.

Operations plug in through :class:`Operation` (see :data:`OPERATIONS`): each knows how to generate
inputs aimed at known failure modes, run the emulator, store its tensors and compare results.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from . import _core
from .formats import decode, encode, format_info


def _spec_as_dict(spec) -> dict:
    """A spec given as a dict or as JSON object text, as a dict (errors name the argument)."""
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as err:
            raise ValueError(f"spec: not valid JSON ({err})") from None
    if not isinstance(spec, dict):
        raise TypeError(f"spec: expected a dict or JSON object text, got {type(spec).__name__}")
    return spec


TraceError = _core.TraceError

#: safetensors dtype -> numpy dtype used to hold its elements. FP8 and BF16 elements are held as
#: their bit patterns (uint8 / uint16), which is how fp8lab.encode returns them.
NUMPY_OF_DTYPE = {
    "BOOL": np.bool_, "U8": np.uint8, "I8": np.int8, "F8_E5M2": np.uint8, "F8_E4M3": np.uint8,
    "I16": np.int16, "U16": np.uint16, "F16": np.float16, "BF16": np.uint16, "I32": np.int32,
    "U32": np.uint32, "F32": np.float32, "F64": np.float64, "I64": np.int64, "U64": np.uint64,
}
#: fp8lab format -> the safetensors dtype its bit patterns are stored as.
DTYPE_OF_FORMAT = {"e4m3": "F8_E4M3", "e5m2": "F8_E5M2", "bf16": "BF16", "fp16": "F16", "fp32": "F32"}
#: safetensors float dtype -> fp8lab format of its values (for ULP counting).
FORMAT_OF_DTYPE = {"F8_E4M3": "e4m3", "F8_E5M2": "e5m2", "BF16": "bf16", "F16": "fp16", "F32": "fp32"}

ROLES = ("input", "output", "intermediate")


def canonical_json(spec) -> str:
    """The canonical text of a spec (dict or JSON text): keys sorted, no whitespace."""
    text = spec if isinstance(spec, str) else json.dumps(spec, sort_keys=True, separators=(",", ":"),
                                                          ensure_ascii=False, allow_nan=False)
    return _core.golden_canonical_json(text)


def spec_hash(spec) -> str:
    return sha256(canonical_json(spec).encode())


def sha256(data: bytes) -> str:
    """SHA-256 (lower-case hex) computed by fp8lab's own implementation."""
    return _core.golden_sha256(bytes(data))


def producer() -> str:
    from . import __version__

    return f"fp8lab {__version__} emulator"


def dtype_for_format(fmt: str) -> str:
    if fmt in DTYPE_OF_FORMAT:
        return DTYPE_OF_FORMAT[fmt]
    return {8: "U8", 16: "U16", 32: "U32"}[format_info(fmt)["storage_bits"]]


# --------------------------------------------------------------------------------------------
# Verdicts


@dataclasses.dataclass
class Verdict:
    """One comparison's outcome, in fp8lab's one vocabulary (see emulator/checks/verdict.hpp).

    kind: "bit-identical", "within-bound" or "violation"; summary: one readable line; details: the
    counts, max ULP, max relative error, bound ratio and first offending element (JSON-able)."""

    kind: str
    summary: str
    details: dict = dataclasses.field(default_factory=dict)

    RANK = {"bit-identical": 0, "within-bound": 1, "violation": 2}

    @property
    def ok(self) -> bool:
        return self.kind != "violation"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "summary": self.summary, **self.details}

    @staticmethod
    def worst(verdicts: Iterable["Verdict"], what: str = "") -> "Verdict":
        verdicts = list(verdicts)
        if not verdicts:
            return Verdict("bit-identical", f"{what}: nothing to compare", {})
        worst = max(verdicts, key=lambda v: Verdict.RANK[v.kind])
        if len(verdicts) == 1:
            return worst
        parts = "; ".join(v.summary for v in verdicts if v.kind == worst.kind)
        return Verdict(worst.kind, parts, {"parts": [v.to_dict() for v in verdicts]})


def compare_values(got, expected, *, fmt: str | None, what: str, exact=None, bound=None,
                   shape=None) -> Verdict:
    """Compares two arrays of values of format ``fmt`` (ULPs counted in it) with the shared C++
    comparison. Without ``exact``/``bound`` any difference is a violation (a pinned result)."""
    got = np.ascontiguousarray(got, dtype=np.float64).ravel()
    expected = np.ascontiguousarray(expected, dtype=np.float64).ravel()
    if got.shape != expected.shape:
        return Verdict("violation", f"{what}: violation: got {got.size} elements, expected {expected.size}",
                       {"count": int(expected.size)})
    if fmt is None:
        mant, emin = 52, -1022
    else:
        info = format_info(fmt)
        mant, emin = info["mantissa_bits"], info["min_normal_exponent"]
    ex = None if exact is None else np.ascontiguousarray(exact, dtype=np.float64).ravel()
    bd = None if bound is None else np.ascontiguousarray(bound, dtype=np.float64).ravel()
    kind, summary, details = _core.verdict_compare(got, expected, ex, bd, list(shape or []), mant, emin, what)
    return Verdict(kind, summary, json.loads(details))


def values_of(array: np.ndarray, dtype: str, fmt: str | None = None) -> np.ndarray:
    """Float64 values of a trace tensor (FP8/BF16 bit patterns decoded exactly)."""
    fmt = fmt or FORMAT_OF_DTYPE.get(dtype)
    if dtype in ("F8_E4M3", "F8_E5M2", "BF16") or (fmt and dtype in ("U8", "U16", "U32")):
        return decode(np.ascontiguousarray(array), fmt)
    return np.asarray(array, dtype=np.float64)


def compare_tensors(name: str, dtype: str, got: np.ndarray, expected: np.ndarray, *, fmt: str | None = None,
                    what: str = "", exact=None, bound=None) -> Verdict:
    """Bits first (so two different NaN encodings, or -0 vs +0, are a difference), then values."""
    label = f"{what} {name}".strip()
    if got.shape != expected.shape:
        return Verdict("violation", f"{label}: violation: shape {tuple(got.shape)}, expected {tuple(expected.shape)}",
                       {"count": int(expected.size)})
    if np.ascontiguousarray(got).tobytes() == np.ascontiguousarray(expected).tobytes():
        return Verdict("bit-identical", f"{label}: bit-identical ({expected.size} elements)",
                       {"count": int(expected.size), "differing": 0})
    fmt = fmt or FORMAT_OF_DTYPE.get(dtype)
    if dtype in NUMPY_OF_DTYPE and not np.issubdtype(NUMPY_OF_DTYPE[dtype], np.floating) and fmt is None:
        # Integer tensors (indices, counts, raw scale bytes) are pinned: any change is a violation.
        diff = np.flatnonzero(np.ravel(got) != np.ravel(expected))
        i = int(diff[0])
        coord = list(np.unravel_index(i, expected.shape)) if expected.ndim else []
        return Verdict("violation", f"{label}: violation at {[int(c) for c in coord]}: got {np.ravel(got)[i]}, "
                       f"expected {np.ravel(expected)[i]} ({diff.size} of {expected.size} elements differ)",
                       {"count": int(expected.size), "differing": int(diff.size)})
    v = compare_values(values_of(got, dtype, fmt), values_of(expected, dtype, fmt), fmt=fmt, what=label,
                       exact=exact, bound=bound, shape=expected.shape)
    if v.kind == "bit-identical":  # bits differ but values compare equal: NaN payload or sign of NaN
        gb, eb = np.ravel(got).view(np.uint8), np.ravel(expected).view(np.uint8)
        i = int(np.flatnonzero(gb != eb)[0]) // got.dtype.itemsize
        return Verdict("violation", f"{label}: violation at flat index {i}: the bit patterns differ "
                       f"(0x{np.ravel(got).view(f'u{got.dtype.itemsize}')[i]:x} vs "
                       f"0x{np.ravel(expected).view(f'u{got.dtype.itemsize}')[i]:x}) though both decode to "
                       f"{np.ravel(values_of(expected, dtype, fmt))[i]}", v.details)
    return v


# --------------------------------------------------------------------------------------------
# Traces


@dataclasses.dataclass
class TraceTensor:
    role: str
    dtype: str  # safetensors dtype
    array: np.ndarray


@dataclasses.dataclass
class Trace:
    op: str
    spec: dict
    seed: int = 0
    producer: str = dataclasses.field(default_factory=producer)
    tensors: dict[str, TraceTensor] = dataclasses.field(default_factory=dict)
    extra: dict[str, str] = dataclasses.field(default_factory=dict)
    path: str | None = None
    #: filled only by read_trace(..., check_digests=False): the tensors whose digests do not match
    digest_mismatches: list[str] = dataclasses.field(default_factory=list)

    @property
    def spec_json(self) -> str:
        return canonical_json(self.spec)

    def of_role(self, role: str) -> dict[str, TraceTensor]:
        return {k: t for k, t in self.tensors.items() if t.role == role}

    def inputs(self) -> dict[str, np.ndarray]:
        return {k: t.array for k, t in self.of_role("input").items()}

    def _core_tensors(self) -> dict:
        out = {}
        for name, t in self.tensors.items():
            if t.role not in ROLES:
                raise ValueError(f"tensors[{name!r}]: role {t.role!r} is not one of {ROLES}")
            want = NUMPY_OF_DTYPE.get(t.dtype)
            if want is None:
                raise ValueError(f"tensors[{name!r}]: unknown dtype {t.dtype!r}; expected one of {sorted(NUMPY_OF_DTYPE)}")
            a = np.asarray(t.array)
            if a.dtype != np.dtype(want):
                raise TypeError(f"tensors[{name!r}]: dtype {t.dtype} is held as {np.dtype(want)}, got {a.dtype}")
            out[name] = (t.role, t.dtype, tuple(int(d) for d in a.shape),
                         np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<"), copy=False).tobytes())
        return out

    def to_bytes(self) -> bytes:
        return _core.golden_serialize_trace(self.op, self.spec_json, self.producer, int(self.seed),
                                            self._core_tensors(), dict(self.extra))

    def write(self, path, update: bool = False) -> None:
        """Atomic write (temporary file, fsync, rename); refuses to replace ``path`` unless update."""
        _core.golden_write_trace(os.fspath(path), self.op, self.spec_json, self.producer, int(self.seed),
                                 self._core_tensors(), dict(self.extra), bool(update))
        self.path = os.fspath(path)


def _from_core(d: dict, path: str | None) -> Trace:
    tensors = {}
    for name, (role, dtype, shape, data) in d["tensors"].items():
        arr = np.frombuffer(data, dtype=np.dtype(NUMPY_OF_DTYPE[dtype]).newbyteorder("<")).astype(
            NUMPY_OF_DTYPE[dtype]).reshape(shape)
        tensors[name] = TraceTensor(role, dtype, arr)
    return Trace(op=d["op"], spec=json.loads(d["spec"]), seed=int(d["seed"]), producer=d["producer"],
                 tensors=tensors, extra=dict(d["extra"]), path=path, digest_mismatches=list(d["digest_mismatches"]))


def read_trace(path, check_digests: bool = True) -> Trace:
    """Reads and fully validates a trace (header, offsets, dtypes, digests, spec hash).

    With ``check_digests=False`` a digest mismatch is listed in ``Trace.digest_mismatches`` instead
    of raised, so a caller can still say which element was edited."""
    return _from_core(_core.golden_read_trace(os.fspath(path), bool(check_digests)), os.fspath(path))


def parse_trace(data: bytes, source: str = "<bytes>", check_digests: bool = True) -> Trace:
    return _from_core(_core.golden_parse_trace(bytes(data), source, bool(check_digests)), None)


# --------------------------------------------------------------------------------------------
# Operations


class Operation:
    """How golden/verify handle one operation. Subclasses fill in the hooks."""

    name = ""
    #: generator kinds, each aimed at a known failure mode (REFERENCE.md "Known failures")
    kinds: tuple[str, ...] = ("random",)
    #: what `fp8lab verify` compares the emulator with on generated cases (see oracle())
    oracle_label = "emulator vs independent oracle"

    def available(self) -> bool:
        return True

    def default_spec(self) -> dict:
        raise NotImplementedError

    def normalize_spec(self, spec) -> dict:
        """A full spec dict from a dict, JSON text or recipe name (raises ValueError naming it)."""
        if spec is None:
            return self.default_spec()
        spec = _spec_as_dict(spec)
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
        """(exact, bound) arrays for output ``name`` when the spec certifies one, else None."""
        return None

    def call(self, fn: Callable, spec: dict, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Calls a user kernel ``fn`` on the inputs; returns its outputs by trace name."""
        raise NotImplementedError

    def adapt(self, trace: "Trace") -> "Trace":
        """Maps another producer's layout of this op's tensors onto this one's (default: as is)."""
        return trace

    def kernel_outputs(self, spec: dict, got: dict[str, np.ndarray]) -> dict[str, "TraceTensor"]:
        """A kernel's outputs (from call()) as trace tensors, for traces recorded on hardware."""
        raise NotImplementedError

    def shrink(self, spec: dict, inputs: dict[str, np.ndarray]) -> Iterable[dict[str, np.ndarray]]:
        """Smaller variants of a failing case, most aggressive first."""
        return []

    def compare(self, spec: dict, inputs: dict[str, np.ndarray], expected: dict[str, TraceTensor],
                got: dict[str, np.ndarray], what: str) -> Verdict:
        verdicts = []
        for name, t in expected.items():
            if t.role != "output":
                continue
            if name not in got:
                verdicts.append(Verdict("violation", f"{what} {name}: violation: the kernel returned no {name!r}"))
                continue
            g = np.asarray(got[name])
            if g.dtype != t.array.dtype:
                verdicts.append(Verdict("violation", f"{what} {name}: violation: dtype {g.dtype}, expected {t.array.dtype}"))
                continue
            eb = self.bound(spec, inputs, name)
            exact, bound = eb if eb is not None else (None, None)
            verdicts.append(compare_tensors(name, t.dtype, g, t.array, fmt=self.value_format(spec, name, t.dtype),
                                            what=what, exact=exact, bound=bound))
        return Verdict.worst(verdicts, what)


def _ragged_sizes(rng: np.random.Generator, kind: str) -> int:
    if kind == "ragged":
        return int(rng.choice([0, 1, 2, 31, 127, 129, 255]))
    return int(rng.integers(1, 300))


class CastOp(Operation):
    """fp8lab.encode: float32 -> format bit patterns (rounding and overflow from the spec)."""

    name = "cast"
    kinds = ("random", "extreme", "subnormal", "ties", "zeros", "ragged", "nan_inf")

    def default_spec(self) -> dict:
        return {"to": "e4m3", "rounding": "nearest_even", "overflow": "saturate", "flush_subnormals": False,
                "seed": 0}

    def fixtures(self):
        out = []
        for fmt in ("e4m3", "e5m2"):
            for rounding in ("nearest_even", "toward_zero", "stochastic"):
                for overflow in ("saturate", "inf_or_nan"):
                    if rounding != "nearest_even" and overflow != "saturate":
                        continue
                    spec = {**self.default_spec(), "to": fmt, "rounding": rounding, "overflow": overflow,
                            "seed": 1234 if rounding == "stochastic" else 0}
                    out.append((f"cast_{fmt}_{rounding}_{overflow}", spec, 1, "mixed"))
        for fmt in ("bf16", "ue8m0", "e2m1"):
            out.append((f"cast_{fmt}_nearest_even_saturate", {**self.default_spec(), "to": fmt}, 2, "mixed"))
        return out

    def generate(self, spec, rng, kind):
        info = format_info(spec["to"])
        fmax, tiny = info["max_finite"], info["min_positive"]
        if kind == "mixed":  # one array covering every kind (fixtures)
            parts = [self.generate(spec, rng, k)["x"] for k in self.kinds if k != "ragged"]
            return {"x": np.concatenate(parts).astype(np.float32)}
        n = _ragged_sizes(rng, kind)
        if kind == "random":
            x = rng.standard_normal(n) * 2.0 ** rng.integers(-8, 8, n)
        elif kind == "extreme":
            x = rng.choice([-1, 1], n) * fmax * rng.uniform(0.9, 1.2, n)
        elif kind == "subnormal":
            x = rng.choice([-1, 1], n) * tiny * rng.uniform(0, 8, n)
        elif kind == "ties":
            # Exact midpoints between neighbours: where rounding modes disagree.
            bits = rng.integers(0, 1 << min(info["total_bits"], 16), n).astype(np.uint32)
            bits &= (1 << info["total_bits"]) - 1
            store = {8: np.uint8, 16: np.uint16, 32: np.uint32}[info["storage_bits"]]
            v = decode(bits.astype(store), spec["to"])
            v = v[np.isfinite(v)]
            step = np.ldexp(1.0, np.maximum(np.frexp(np.abs(v))[1] - 1, info["min_normal_exponent"])
                            - info["mantissa_bits"])
            x = v + step / 2
        elif kind == "zeros":
            x = np.array([0.0, -0.0] * max(1, n // 2))
        elif kind == "nan_inf":
            x = np.array([np.nan, np.inf, -np.inf, -np.nan, fmax, -fmax, 2 * fmax, np.finfo(np.float32).max])
        else:  # ragged
            x = rng.standard_normal(n)
        with np.errstate(over="ignore"):
            return {"x": np.asarray(x, dtype=np.float64).astype(np.float32)}

    def input_tensors(self, spec, inputs):
        return {"x": TraceTensor("input", "F32", np.asarray(inputs["x"], dtype=np.float32))}

    def run(self, spec, inputs):
        y = encode(np.asarray(inputs["x"], dtype=np.float32), spec["to"], spec["rounding"], spec["overflow"],
                   int(spec["seed"]), bool(spec["flush_subnormals"]))
        dtype = dtype_for_format(spec["to"])
        if dtype == "F16":
            y = y.view(np.float16)
        elif dtype == "F32":
            y = y.view(np.float32)
        return {"y": TraceTensor("output", dtype, y)}

    def value_format(self, spec, name, dtype):
        return spec["to"]

    def call(self, fn, spec, inputs):
        y = np.asarray(fn(inputs["x"].copy(), spec))
        dtype = dtype_for_format(spec["to"])
        if dtype in ("F16", "F32") and y.dtype.kind == "u":
            y = y.view(NUMPY_OF_DTYPE[dtype])  # kernels return bit patterns; traces hold F16/F32 values
        return {"y": y}

    def kernel_outputs(self, spec, got):
        y = np.asarray(got["y"])
        dtype = dtype_for_format(spec["to"])
        want = np.dtype(NUMPY_OF_DTYPE[dtype])
        if y.dtype != want:
            raise TypeError(f"y: the kernel returned dtype {y.dtype}; {spec['to']} is stored as {want}")
        return {"y": TraceTensor("output", dtype, y)}

    def oracle(self, x, spec):
        """An independent cast in numpy (exact float64 arithmetic and a table of every pattern), for
        round-to-nearest-even and toward-zero on signed formats of up to 16 bits with a zero."""
        info = format_info(spec["to"])
        if (spec["rounding"] not in ("nearest_even", "toward_zero") or spec["flush_subnormals"]
                or info["total_bits"] > 16 or not info["signed"] or not info["has_zero"]):
            raise ValueError(f"spec: the numpy cast oracle does not cover {spec}")
        store = {8: np.uint8, 16: np.uint16, 32: np.uint32}[info["storage_bits"]]
        patterns = np.arange(1 << info["total_bits"], dtype=np.uint32).astype(store)
        values = decode(patterns, spec["to"])
        finite = np.isfinite(values)
        # value -> pattern; +0 and -0 are told apart below by the sign of x.
        table = {float(v): int(p) for v, p in zip(values[finite][::-1], patterns[finite][::-1])}
        x = np.asarray(x, dtype=np.float64).ravel()
        out = np.zeros(x.size, dtype=store)
        fmax, emin, mant = info["max_finite"], info["min_normal_exponent"], info["mantissa_bits"]
        nan = info.get("nan_bits", 0)
        sign_bit = 1 << (info["total_bits"] - 1)
        inf_bits = table[fmax] + 1 if info["has_inf"] else nan  # IEEE: +Inf follows +max finite
        for i, v in enumerate(x):
            neg = np.signbit(v)
            a = abs(v)
            if np.isnan(v):
                out[i] = nan
                continue
            if np.isinf(a):
                bits = table[fmax] if spec["overflow"] == "saturate" else inf_bits
            else:
                e = max(int(np.frexp(a)[1]) - 1, emin) if a else emin
                q = np.ldexp(1.0, e - mant)  # the spacing of the format at a; a / q is exact
                r = np.rint(a / q) if spec["rounding"] == "nearest_even" else np.trunc(a / q)
                r = r * q
                if r > fmax:
                    bits = table[fmax] if (spec["overflow"] == "saturate" or spec["rounding"] == "toward_zero") \
                        else inf_bits
                else:
                    bits = table[float(r)]
            if neg and not (bits == nan and np.isnan(v)):
                bits |= sign_bit
            out[i] = bits
        return out

    def shrink(self, spec, inputs):
        x = inputs["x"]
        n = x.size
        if n > 1:
            yield {"x": x[: n // 2]}
            yield {"x": x[n // 2:]}
            if n > 2:
                for i in range(min(n, 64)):  # a single element
                    yield {"x": x[i:i + 1]}


def _gemm_module():
    # The gemm area's wrapper module (fp8lab.gemm is also the function the package re-exports).
    import importlib

    return importlib.import_module("fp8lab.gemm")


def _qtensor_class():
    """The quant area's QTensor binding, when this build has it (block-scaled GEMM operands)."""
    return getattr(_core, "QTensor", None)


class GemmOp(Operation):
    """fp8lab.gemm: D = A · Bᵀ with block-scaled FP8 operands (A m x k, B n x k, DeepGEMM's NT layout).

    Inputs: ``a``/``b`` element bit patterns and ``a_scales``/``b_scales`` (float32, row-major over
    the tile grid of ``a_tile``/``b_tile``; 0 = the whole dimension). Output ``d`` in ``out``.
    Intermediate ``block_partials`` (promoted specs): the unscaled tensor-core partial sum of each
    ``promote_every`` block of K — what leaves the tensor core at each promotion.
    ``pinned``: true when the spec is a pinned function (every accumulation model of gemm/ is), so
    a kernel must match bits; false for kernels whose summation order is not pinned (split-K,
    atomics): then a difference within the certified bound (gemm/bounds) is "within bound".
    """

    name = "gemm"
    kinds = ("random", "zero_block", "extreme", "ragged", "subnormal", "cancel", "outlier")

    def available(self) -> bool:
        return hasattr(_core, "gemm")

    def default_spec(self) -> dict:
        return {"a_format": "e4m3", "a_tile": [1, 128], "b_format": "e4m3", "b_tile": [128, 128],
                "accumulate": "promoted", "promote_every": 128, "combine": "deepgemm",
                "instruction": "hopper_fp8", "out": "bf16", "pinned": True}

    def oracle_spec(self) -> dict:
        return {**self.default_spec(), "accumulate": "fp32", "a_tile": [1, 0], "b_tile": [1, 0]}

    def normalize_spec(self, spec) -> dict:
        full = super().normalize_spec(spec)
        for key in ("a_tile", "b_tile"):
            t = full[key]
            if not (isinstance(t, (list, tuple)) and len(t) == 2 and all(isinstance(v, int) and v >= 0 for v in t)):
                raise ValueError(f"spec: {key} must be [rows, cols] of non-negative ints (0 = whole dimension), got {t!r}")
            full[key] = [int(t[0]), int(t[1])]
        if full["out"] not in ("bf16", "fp32", "fp64"):
            raise ValueError(f"spec: out must be bf16, fp32 or fp64, got {full['out']!r}")
        return full

    def fixtures(self):
        base = {**self.default_spec(), "a_tile": [1, 0], "b_tile": [1, 0]}  # per-row: every model accepts it
        out = []
        for acc in ("exact", "fp32", "fp32_pairwise", "tensorcore"):
            out.append((f"gemm_{acc}_bf16", {**base, "accumulate": acc}, 11, "mixed"))
        for combine in ("deepgemm", "triton", "cublas"):
            out.append((f"gemm_promoted_{combine}_bf16", {**self.default_spec(), "combine": combine}, 11, "mixed"))
        out.append(("gemm_promoted_deepgemm_fp32", {**self.default_spec(), "out": "fp32"}, 11, "mixed"))
        return out

    # -- inputs

    @staticmethod
    def _grid(rows, cols, tile):
        tr = tile[0] or max(rows, 1)
        tc = tile[1] or max(cols, 1)
        return (-(-rows // tr) if rows else 0, -(-cols // tc) if cols else 0)

    def _scales(self, rng, shape, kind):
        if _qtensor_class() is None:
            return np.ones(shape, dtype=np.float32)  # unit scales: exact without QTensor
        if kind == "extreme":
            return np.ldexp(1.0, rng.integers(-40, 40, shape)).astype(np.float32)
        s = rng.uniform(1e-3, 4, shape).astype(np.float32)
        return np.where(rng.random(shape) < 0.5, np.ldexp(1.0, np.round(np.log2(s)).astype(int)), s).astype(np.float32)

    def generate(self, spec, rng, kind):
        fa, fb = spec["a_format"], spec["b_format"]
        if kind == "mixed":
            m, n, k = 5, 6, 300
        elif kind == "ragged":
            m, n = (int(v) for v in rng.choice([1, 3, 5, 7], 2))
            k = int(rng.choice([1, 31, 33, 127, 129, 200, 257]))
        else:
            m, n = int(rng.integers(1, 9)), int(rng.integers(1, 9))
            k = int(rng.choice([32, 128, 256, int(rng.integers(1, 300))]))
        def values(rows, fmt):
            fmax = format_info(fmt)["max_finite"]
            x = rng.standard_normal((rows, k)) * np.ldexp(1.0, rng.integers(-4, 5, (rows, 1)))
            if kind == "extreme":
                x = rng.choice([-1.0, 1.0], (rows, k)) * fmax
            elif kind == "subnormal":
                x = x * format_info(fmt)["min_positive"]
            elif kind == "outlier" and k:
                x[:, int(rng.integers(0, k))] = fmax
            return np.clip(x, -fmax, fmax)
        xa, xb = values(m, fa), values(n, fb)
        if kind in ("zero_block", "mixed") and k > 128:
            xa[0, 128:256] = 0  # an all-zero 1x128 block (its amax is 0: NaN-scale territory)
            xb[:, :128] = 0 if kind == "zero_block" else xb[:, :128]
        if kind == "cancel" and k >= 2:
            xa[:, 1::2] = xa[:, 0:(k // 2) * 2:2]
            xb[:, 1::2] = -xb[:, 0:(k // 2) * 2:2]
        inputs = {"a": encode(xa, fa), "b": encode(xb, fb)}
        inputs["a_scales"] = self._scales(rng, self._grid(m, k, spec["a_tile"]), kind)
        inputs["b_scales"] = self._scales(rng, self._grid(n, k, spec["b_tile"]), kind)
        return inputs

    def input_tensors(self, spec, inputs):
        out = {}
        for x in ("a", "b"):
            out[x] = TraceTensor("input", dtype_for_format(spec[f"{x}_format"]), np.asarray(inputs[x]))
            out[f"{x}_scales"] = TraceTensor("input", "F32", np.asarray(inputs[f"{x}_scales"], dtype=np.float32))
        return out

    # -- the emulator

    def _operand(self, spec, inputs, x):
        bits, scales = inputs[x], np.asarray(inputs[f"{x}_scales"], dtype=np.float32)
        fmt, tile = spec[f"{x}_format"], spec[f"{x}_tile"]
        if bits.ndim != 2:
            raise ValueError(f"{x}: expected a 2-D array of bit patterns, got shape {bits.shape}")
        if scales.shape != self._grid(bits.shape[0], bits.shape[1], tile):
            raise ValueError(f"{x}_scales: expected shape {self._grid(bits.shape[0], bits.shape[1], tile)} for "
                             f"tile {tile}, got {scales.shape}")
        if np.all(scales == 1):
            return decode(np.ascontiguousarray(bits), fmt).astype(np.float32)
        qt = _qtensor_class()
        if qt is None:
            raise ValueError(f"{x}_scales: non-unit scales need the quant area's QTensor, not in this build")
        return _make_qtensor(qt, bits, scales, fmt, tile)

    def _spec_args(self, spec):
        return dict(accumulate=spec["accumulate"], promote_every=int(spec["promote_every"]),
                    combine=spec["combine"], instruction=spec["instruction"], out=spec["out"])

    def kernel_outputs(self, spec, got):
        d = np.asarray(got["d"], dtype=np.float64)
        if spec["out"] in ("bf16", "fp32"):
            back = decode(encode(d, spec["out"]), spec["out"])
            bad = np.flatnonzero(~((back == d) | (np.isnan(back) & np.isnan(d))))
            if bad.size:
                i = np.unravel_index(int(bad[0]), d.shape)
                raise ValueError(f"d: element {[int(c) for c in i]} = {d[i]!r} from the kernel is not a "
                                 f"{spec['out']} value")
        return {"d": self._d_tensor(spec, d)}

    def _d_tensor(self, spec, d):
        if spec["out"] == "bf16":
            return TraceTensor("output", "BF16", encode(np.asarray(d, dtype=np.float64), "bf16"))
        if spec["out"] == "fp32":
            return TraceTensor("output", "F32", np.asarray(d).astype(np.float32))
        return TraceTensor("output", "F64", np.asarray(d, dtype=np.float64))

    def run(self, spec, inputs):
        g = _gemm_module()
        a, b = self._operand(spec, inputs, "a"), self._operand(spec, inputs, "b")
        out = {"d": self._d_tensor(spec, g.gemm(a, b, **self._spec_args(spec)))}
        if spec["accumulate"] == "promoted":
            ea = decode(np.ascontiguousarray(inputs["a"]), spec["a_format"]).astype(np.float32)
            eb = decode(np.ascontiguousarray(inputs["b"]), spec["b_format"]).astype(np.float32)
            step = int(spec["promote_every"])
            k = ea.shape[1]
            parts = [g.gemm(ea[:, j:j + step], eb[:, j:j + step], accumulate="tensorcore",
                            instruction=spec["instruction"], out="fp32") for j in range(0, k, step)]
            arr = np.stack(parts).astype(np.float32) if parts else np.zeros((0, ea.shape[0], eb.shape[0]), np.float32)
            out["block_partials"] = TraceTensor("intermediate", "F32", arr)
        return out

    def value_format(self, spec, name, dtype):
        if name == "d":
            return {"bf16": "bf16", "fp32": "fp32", "fp64": None}[spec["out"]]
        return FORMAT_OF_DTYPE.get(dtype)

    def bound(self, spec, inputs, name):
        if name != "d":
            return None
        g = _gemm_module()
        a, b = self._operand(spec, inputs, "a"), self._operand(spec, inputs, "b")
        return g.gemm_exact(a, b, out="fp64"), g.gemm_bound(a, b, **self._spec_args(spec))

    def adapt(self, trace):
        """Hardware traces written by gpu/hardware_trace.hpp name the operands "a.bits"/"a.scales"
        (U8 E4M3 bits, F32 scales) with the effective tiles in metadata "a.tile" = "RxC", and store
        the GemmSpec's own JSON: mapped here onto this op's names and spec keys."""
        if "a.bits" not in trace.tensors:
            return trace
        tensors = {k: v for k, v in trace.tensors.items() if not k.startswith(("a.", "b."))}
        spec = dict(trace.spec)
        for x in ("a", "b"):
            tile = trace.extra.get(f"{x}.tile", "")
            try:
                r, c = (int(v) for v in tile.split("x"))
            except ValueError:
                raise ValueError(f"{trace.path or 'trace'}: metadata '{x}.tile' = {tile!r} is not RxC") from None
            tensors[x] = TraceTensor("input", "F8_E4M3", trace.tensors[f"{x}.bits"].array)
            tensors[f"{x}_scales"] = TraceTensor("input", "F32", trace.tensors[f"{x}.scales"].array)
            spec[f"{x}_tile"], spec[f"{x}_format"] = [r, c], "e4m3"
        return dataclasses.replace(trace, spec=spec, tensors=tensors)

    def call(self, fn, spec, inputs):
        d = fn(inputs["a"], inputs["a_scales"], inputs["b"], inputs["b_scales"], spec)
        return {"d": d}

    def compare(self, spec, inputs, expected, got, what):
        t = expected["d"]
        if "d" not in got:
            return Verdict("violation", f"{what} d: violation: the kernel returned no 'd'")
        g = np.asarray(got["d"])
        if g.shape != t.array.shape:
            return Verdict("violation", f"{what} d: violation: shape {g.shape}, expected {t.array.shape}")
        fmt = self.value_format(spec, "d", t.dtype)
        if g.dtype == t.array.dtype:  # the emulator's own tensor (BF16 as bits): compare as stored
            got_values = values_of(g, t.dtype, fmt)
        elif g.dtype.kind == "f":     # a kernel's float32/float64 values of the output format
            got_values = g.astype(np.float64)
        else:
            return Verdict("violation", f"{what} d: violation: dtype {g.dtype}, expected float32 or float64 values")
        exact = bound = None
        if not spec.get("pinned", True):
            exact, bound = self.bound(spec, inputs, "d")
        return compare_values(got_values, values_of(t.array, t.dtype, fmt), fmt=fmt, what=f"{what} d",
                              exact=exact, bound=bound, shape=t.array.shape)

    def shrink(self, spec, inputs):
        a, b = inputs["a"], inputs["b"]
        m, k = a.shape
        n = b.shape[0]
        (atr, atc), (btr, btc) = spec["a_tile"], spec["b_tile"]

        def cut(rows_a, rows_b, kk):
            ga = self._grid(rows_a.stop - rows_a.start, kk, [atr, atc])
            gb = self._grid(rows_b.stop - rows_b.start, kk, [btr, btc])
            ra0 = rows_a.start // (atr or max(m, 1))
            rb0 = rows_b.start // (btr or max(n, 1))
            return {"a": a[rows_a, :kk], "b": b[rows_b, :kk],
                    "a_scales": inputs["a_scales"][ra0:ra0 + ga[0], :ga[1]],
                    "b_scales": inputs["b_scales"][rb0:rb0 + gb[0], :gb[1]]}
        for i in range(min(m, 8)):
            if m > 1 and (atr in (0, 1)):
                yield cut(slice(i, i + 1), slice(0, n), k)
        for j in range(min(n, 8)):
            if n > 1 and (btr in (0, 1)):
                yield cut(slice(0, m), slice(j, j + 1), k)
        if m > 1:
            yield cut(slice(0, (m + 1) // 2), slice(0, n), k)
        if n > 1:
            yield cut(slice(0, m), slice(0, (n + 1) // 2), k)
        for kk in (1, 2, 4, 8, 16, 31, 32, 33, 64, 127, 128, 129, k // 2):
            if 0 < kk < k:
                yield cut(slice(0, m), slice(0, n), kk)

    def oracle(self, a, a_scales, b, b_scales, spec):
        """An independent GEMM in numpy for accumulate "fp32" (sequential FP32 over k of
        fl(fl(a*sa) * fl(b*sb))) with per-row or per-tensor scales, outputs fp32 or bf16 (round to
        nearest even by the bit trick on the FP32 pattern)."""
        if spec["accumulate"] != "fp32" or spec["out"] not in ("fp32", "bf16") or any(
                spec[t][1] not in (0,) for t in ("a_tile", "b_tile")):
            raise ValueError(f"spec: the numpy GEMM oracle does not cover {spec}")
        xa = decode(np.ascontiguousarray(a), spec["a_format"]).astype(np.float32)
        xb = decode(np.ascontiguousarray(b), spec["b_format"]).astype(np.float32)
        m, k = xa.shape
        n = xb.shape[0]
        sa = np.repeat(np.asarray(a_scales, np.float32), spec["a_tile"][0] or max(m, 1), axis=0)[:m]
        sb = np.repeat(np.asarray(b_scales, np.float32), spec["b_tile"][0] or max(n, 1), axis=0)[:n]
        x = (xa * sa).astype(np.float32)
        y = (xb * sb).astype(np.float32)
        acc = np.zeros((m, n), dtype=np.float32)
        for t in range(k):
            acc = (acc + (x[:, t:t + 1] * y[:, t][None, :]).astype(np.float32)).astype(np.float32)
        if spec["out"] == "fp32":
            return acc
        u = acc.view(np.uint32).astype(np.uint64)
        r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint32) << 16
        r = np.where(np.isnan(acc), np.uint32(0x7FFF0000), r).astype(np.uint32)
        return r.view(np.float32)


class MoeRouteOp(Operation):
    """fp8lab's MoE router (moe area, ``_core.moe_route``): top-k expert ids and gate weights per
    token from the gate logits and the aux-loss-free bias. Spec: the router spec dict (a recipe
    name in ``base`` plus overrides; normalised through the moe area). Outputs ``ids`` (int32) and
    ``weights`` (float32) are pinned; intermediate ``scores`` are the gate scores."""

    name = "moe_route"
    kinds = ("random", "ties", "negative_bias", "extreme", "ragged")
    oracle_label = "emulator on 1 thread vs N (determinism)"

    def available(self) -> bool:
        return hasattr(_core, "moe_route") and hasattr(_core, "moe_spec")

    def default_spec(self) -> dict:
        return dict(_core.moe_spec({"base": "deepseek_v3", "experts": 32, "topk": 4, "groups": 4,
                                    "topk_groups": 2}))

    def normalize_spec(self, spec) -> dict:
        if spec is None:
            return self.default_spec()
        spec = _spec_as_dict(spec)
        if "base" not in spec and "name" not in spec:
            spec = {**self.default_spec(), **spec}
        return dict(_core.moe_spec(spec))

    def fixtures(self):
        small = {"experts": 32, "topk": 4, "groups": 4, "topk_groups": 2}
        return [("moe_route_deepseek_v3_small", {"base": "deepseek_v3", **small}, 21, "mixed"),
                ("moe_route_deepseek_v3", {"base": "deepseek_v3"}, 22, "mixed"),
                ("moe_route_deepseek_v3_2025_02", {"base": "deepseek_v3_2025_02"}, 22, "mixed"),
                ("moe_route_deepseek_v3_hf_small", {"base": "deepseek_v3_hf", **small}, 23, "mixed")]

    def generate(self, spec, rng, kind):
        e = int(spec["experts"])
        if kind == "mixed":
            parts = [self.generate(spec, rng, k) for k in ("random", "ties", "negative_bias", "extreme")]
            return {"logits": np.concatenate([p["logits"] for p in parts]), "bias": parts[0]["bias"]}
        t = int(rng.choice([0, 1, 3])) if kind == "ragged" else int(rng.integers(1, 9))
        logits = rng.standard_normal((t, e)) * 2
        bias = rng.standard_normal(e) * 0.05
        if kind == "ties":
            logits = np.round(logits)  # few distinct values: exact ties between experts and groups
            bias = np.zeros(e)
        elif kind == "negative_bias":
            bias = -2.0 - np.abs(bias) * 10  # every biased score negative: masked groups must be -inf, not 0
        elif kind == "extreme":
            logits = rng.choice([-40.0, 40.0], (t, e))  # sigmoid saturates to exactly 0 or 1: ties again
        return {"logits": logits.astype(np.float32), "bias": bias.astype(np.float32)}

    def input_tensors(self, spec, inputs):
        return {"logits": TraceTensor("input", "F32", np.asarray(inputs["logits"], dtype=np.float32)),
                "bias": TraceTensor("input", "F32", np.asarray(inputs["bias"], dtype=np.float32))}

    def run(self, spec, inputs):
        logits = np.ascontiguousarray(inputs["logits"], dtype=np.float32)
        bias = np.ascontiguousarray(inputs["bias"], dtype=np.float32)
        ids, weights = _core.moe_route(logits, bias, spec)
        scores = _core.moe_gate_scores(logits, spec)
        return {"ids": TraceTensor("output", "I32", np.asarray(ids, dtype=np.int32)),
                "weights": TraceTensor("output", "F32", np.asarray(weights, dtype=np.float32)),
                "scores": TraceTensor("intermediate", "F32", np.asarray(scores, dtype=np.float32))}

    def call(self, fn, spec, inputs):
        ids, weights = fn(inputs["logits"], inputs["bias"], spec)
        return {"ids": np.asarray(ids), "weights": np.asarray(weights)}

    def kernel_outputs(self, spec, got):
        ids, w = np.asarray(got["ids"]), np.asarray(got["weights"])
        if ids.dtype != np.int32 or w.dtype != np.float32:
            raise TypeError(f"ids/weights: the kernel returned {ids.dtype}/{w.dtype}, expected int32/float32")
        return {"ids": TraceTensor("output", "I32", ids), "weights": TraceTensor("output", "F32", w)}

    def shrink(self, spec, inputs):
        logits = inputs["logits"]
        t = logits.shape[0]
        if t > 1:
            for i in range(min(t, 16)):
                yield {"logits": logits[i:i + 1], "bias": inputs["bias"]}
            yield {"logits": logits[: t // 2], "bias": inputs["bias"]}

    def oracle(self, logits, bias, spec):
        """No second router formulation lives here (the moe area tests its own against a naive
        one): generated cases check determinism instead — the emulator on one thread."""
        from .formats import num_threads, set_num_threads

        before = num_threads()
        set_num_threads(1)
        try:
            out = self.run(spec, {"logits": logits, "bias": bias})
        finally:
            set_num_threads(before)
        return out["ids"].array, out["weights"].array


class QuantizeOp(Operation):
    """fp8lab.quantize (quant area): a float32 matrix to block-quantised element bits plus one
    scale per tile under a named scale rule (DeepSeek, DeepGEMM, TransformerEngine, FlashMLA,
    vLLM, MX, ...). Outputs ``q`` (element bits) and ``scales`` (float32 multipliers, or UE8M0
    bytes for rules that store them) are pinned; intermediate ``scale_values`` are the float32
    multipliers of every tile."""

    name = "quantize"
    kinds = ("random", "zero_block", "extreme", "subnormal", "outlier", "ragged", "nan")
    oracle_label = "emulator on 1 thread vs N (determinism)"

    def available(self) -> bool:
        return hasattr(_core, "quantize") and hasattr(_core, "QTensor")

    def default_spec(self) -> dict:
        return {"rule": "deepseek", "tile": [1, 128], "fmt": "e4m3"}

    def normalize_spec(self, spec) -> dict:
        full = super().normalize_spec(spec)
        t = full["tile"]
        if not (isinstance(t, (list, tuple)) and len(t) == 2 and all(isinstance(v, int) and v >= 0 for v in t)):
            raise ValueError(f"spec: tile must be [rows, cols] of non-negative ints (0 = whole dimension), got {t!r}")
        full["tile"] = [int(t[0]), int(t[1])]
        _core.scale_rule(full["rule"])  # raises, naming the rule, when it is unknown
        format_info(full["fmt"])
        return full

    def fixtures(self):
        out = []
        for rule in _core.scale_rules():
            tile = [1, 32] if _core.scale_rule(rule).get("tile_elements") == 32 else [1, 128]
            out.append((f"quantize_{rule}_{tile[0]}x{tile[1]}", {"rule": rule, "tile": tile, "fmt": "e4m3"}, 31, "mixed"))
        out.append(("quantize_deepseek_128x128", {"rule": "deepseek", "tile": [128, 128], "fmt": "e4m3"}, 32, "mixed"))
        return out

    def generate(self, spec, rng, kind):
        if kind == "mixed":
            rows, cols = 6, 300  # a ragged last 1x128 tile
        elif kind == "ragged":
            rows, cols = int(rng.choice([0, 1, 3, 129])), int(rng.choice([0, 1, 31, 127, 129, 200]))
        else:
            rows, cols = int(rng.integers(1, 6)), int(rng.choice([32, 128, 256, int(rng.integers(1, 300))]))
        x = rng.standard_normal((rows, cols)) * np.ldexp(1.0, rng.integers(-6, 7, (rows, 1)))
        tc = spec["tile"][1] or max(cols, 1)
        if kind in ("zero_block", "mixed") and rows and cols:
            x[0, :min(tc, cols)] = 0  # an all-zero tile: the amax floor decides (the old NaN-scale bug)
        if kind in ("extreme", "mixed") and rows > 1:
            x[1] *= 2.0 ** 100  # amax near float32's top: scale overflow paths
            if rows > 2:
                x[2] *= 2.0 ** -120  # tiny: scales near float32's subnormals
        if kind == "subnormal":
            x *= 2.0 ** -130
        if kind in ("outlier", "mixed") and rows > 3 and cols:
            x[3, int(rng.integers(0, cols))] = 1e30
        if kind in ("nan", "mixed") and rows > 4 and cols:
            x[4, int(rng.integers(0, cols))] = np.nan  # how NaN enters amax differs between rules
        with np.errstate(over="ignore"):
            return {"x": x.astype(np.float32)}

    def input_tensors(self, spec, inputs):
        return {"x": TraceTensor("input", "F32", np.asarray(inputs["x"], dtype=np.float32))}

    def run(self, spec, inputs):
        x = np.ascontiguousarray(inputs["x"], dtype=np.float32)
        q = _core.quantize(x, tuple(spec["tile"]), spec["fmt"], spec["rule"])
        scales = np.asarray(q.scales)
        return {"q": TraceTensor("output", dtype_for_format(spec["fmt"]), np.asarray(q.bits)),
                "scales": TraceTensor("output", "U8" if scales.dtype == np.uint8 else "F32", scales),
                "scale_values": TraceTensor("intermediate", "F32", np.asarray(q.scale_values, dtype=np.float32))}

    def value_format(self, spec, name, dtype):
        if name == "q":
            return spec["fmt"]
        return None if dtype == "U8" else FORMAT_OF_DTYPE.get(dtype)

    def call(self, fn, spec, inputs):
        q, scales = fn(inputs["x"], spec)
        return {"q": np.asarray(q), "scales": np.asarray(scales)}

    def kernel_outputs(self, spec, got):
        q, s = np.asarray(got["q"]), np.asarray(got["scales"])
        return {"q": TraceTensor("output", dtype_for_format(spec["fmt"]), q),
                "scales": TraceTensor("output", "U8" if s.dtype == np.uint8 else "F32", s)}

    def shrink(self, spec, inputs):
        x = inputs["x"]
        rows, cols = x.shape
        tr = spec["tile"][0] or max(rows, 1)
        tc = spec["tile"][1] or max(cols, 1)
        for r in range(0, min(rows, 8 * tr), tr):  # one tile row
            if rows > tr:
                yield {"x": x[r:r + tr]}
        for c in range(0, min(cols, 8 * tc), tc):  # one tile column block
            if cols > tc:
                yield {"x": x[:, c:c + tc]}

    def oracle(self, x, spec):
        """Generated cases without a kernel check determinism: the quantiser on one thread (the
        quant area checks its rules against the published sources)."""
        from .formats import num_threads, set_num_threads

        before = num_threads()
        set_num_threads(1)
        try:
            out = self.run(spec, {"x": x})
        finally:
            set_num_threads(before)
        return out["q"].array, out["scales"].array


class TcProbeOp(Operation):
    """Replays hardware tensor-core probe traces (gpu/hardware_trace.hpp, op "tc_probe"): for each
    case ``<name>``, inputs ``<name>.a`` / ``<name>.b`` (F32, 32 products per instruction, chained)
    and ``<name>.c`` (U32 FP32 bits), output ``<name>.d_wgmma`` (U32), recomputed through the spec's
    ``instruction`` preset with fp8lab.accum's dot. Recorded on a GPU only: no generators."""

    name = "tc_probe"

    def available(self) -> bool:
        return hasattr(_core, "tensor_core_dot")

    def default_spec(self) -> dict:
        return {"instruction": "hopper_fp8"}

    def normalize_spec(self, spec) -> dict:
        spec = dict(spec) if isinstance(spec, dict) else json.loads(spec)
        if not isinstance(spec.get("instruction"), str):
            raise ValueError("spec: a tc_probe trace needs an \"instruction\" preset name")
        return spec

    def run(self, spec, inputs):
        import importlib

        accum = importlib.import_module("fp8lab.accum")
        out = {}
        for name in inputs:
            if not name.endswith(".c"):
                continue
            base = name[:-2]
            a = np.asarray(inputs[base + ".a"], dtype=np.float32)
            b = np.asarray(inputs[base + ".b"], dtype=np.float32)
            d = np.asarray(inputs[name]).view(np.float32).reshape(())
            for s in range(0, a.size - a.size % 32, 32):  # each wgmma consumes the previous D as C
                d = np.asarray(accum.dot(a[s:s + 32], b[s:s + 32], d, instruction=spec["instruction"]),
                               dtype=np.float32).reshape(())
            out[base + ".d_wgmma"] = TraceTensor("output", "U32", d.reshape(1).view(np.uint32))
        return out

    def value_format(self, spec, name, dtype):
        return "fp32" if name.endswith(".d_wgmma") else FORMAT_OF_DTYPE.get(dtype)


def _make_qtensor(qt, bits, scales, fmt, tile):
    # Any rule that stores float32 scales: the rule only says how scales are stored here; the GEMM
    # uses the multipliers as given.
    return qt.from_parts(np.ascontiguousarray(bits), np.ascontiguousarray(scales, dtype=np.float32), fmt,
                         tuple(tile), "deepseek")


#: Operation name -> implementation. Areas add theirs with register_operation().
OPERATIONS: dict[str, Operation] = {}


def register_operation(op: Operation) -> None:
    OPERATIONS[op.name] = op


register_operation(CastOp())
register_operation(QuantizeOp())
register_operation(GemmOp())
register_operation(MoeRouteOp())
register_operation(TcProbeOp())


def operation(name: str) -> Operation:
    if name not in OPERATIONS or not OPERATIONS[name].available():
        known = sorted(n for n, o in OPERATIONS.items() if o.available())
        raise ValueError(f"op: unknown or unavailable operation {name!r}; available: {known}")
    return OPERATIONS[name]


# --------------------------------------------------------------------------------------------
# record / check / diff


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
        got = o.call(fn, spec, {k: np.array(v) for k, v in arrays.items()})
        tensors.update(o.kernel_outputs(spec, {k: np.asarray(v) for k, v in got.items()}))
    trace = Trace(op=op, spec=spec, seed=int(seed), tensors=tensors)
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
            got = o.call(fn, spec, inputs)
    except KeyError as err:
        raise ValueError(f"{trace.path or 'trace'}: op {trace.op!r} needs tensor {err.args[0]!r}, "
                         "which the trace does not hold") from None
    expected = {k: t for k, t in trace.tensors.items() if t.role == "output"}
    return o.compare(spec, inputs, expected, got, what)


def default_golden_dir() -> Path:
    """fixtures/golden: $FP8LAB_GOLDEN_DIR, else ./fixtures/golden, else the source tree's."""
    env = os.environ.get("FP8LAB_GOLDEN_DIR")
    if env:
        return Path(env)
    here = Path.cwd() / "fixtures" / "golden"
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[3] / "fixtures" / "golden"


def record_all(directory=None, update: bool = False) -> list[Path]:
    """Regenerates every committed fixture (`fp8lab golden record --all --update`)."""
    directory = Path(directory or default_golden_dir())
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for o in OPERATIONS.values():
        if not o.available():
            continue
        for stem, spec, seed, kind in o.fixtures():
            path = directory / f"{stem}.safetensors"
            record(o.name, spec, seed, kind).write(path, update=update)
            written.append(path)
    return written


def _ulp_histogram(ulps: np.ndarray) -> list[tuple[str, int]]:
    edges = [(1, 1), (2, 2), (3, 4), (5, 8), (9, 16), (17, 256), (257, math.inf)]
    out = []
    finite = ulps[np.isfinite(ulps)]
    for lo, hi in edges:
        c = int(np.count_nonzero((finite >= lo - 0.5) & (finite < hi + 0.5))) if hi != math.inf else int(
            np.count_nonzero(finite >= lo - 0.5))
        label = f"{lo}" if lo == hi else (f"{lo}–{hi}" if hi != math.inf else f"≥{lo}")
        out.append((label, c))
    # Sub-ULP moves (possible across binades or for wider outputs) and non-finite distances.
    out.insert(0, ("<1", int(np.count_nonzero((finite > 0) & (finite < 0.5)))))
    out.append(("NaN/Inf change", int(np.count_nonzero(~np.isfinite(ulps)))))
    return out


def _ulp_distances(a: np.ndarray, b: np.ndarray, fmt: str | None) -> np.ndarray:
    if fmt is None:
        mant, emin = 52, -1022
    else:
        info = format_info(fmt)
        mant, emin = info["mantissa_bits"], info["min_normal_exponent"]
    a = a.astype(np.float64).ravel()
    b = b.astype(np.float64).ravel()
    out = np.zeros(a.size)
    with np.errstate(invalid="ignore", over="ignore"):
        both_nan = np.isnan(a) & np.isnan(b)
        m = np.maximum(np.abs(a), np.abs(b))
        e = np.maximum(np.frexp(m)[1] - 1, emin)
        out = np.abs(a - b) / np.ldexp(1.0, e - mant)
        out[both_nan] = 0
        out[(np.isnan(a) ^ np.isnan(b)) | ((np.isinf(a) | np.isinf(b)) & (a != b))] = np.inf
        out[a == b] = 0
    return out


def _spec_difference(a: dict, b: dict) -> list[str]:
    lines = []
    for key in sorted(set(a) | set(b)):
        if a.get(key, "<absent>") != b.get(key, "<absent>"):
            lines.append(f"- `{key}`: `{json.dumps(a.get(key, '<absent>'))}` → `{json.dumps(b.get(key, '<absent>'))}`")
    return lines


@dataclasses.dataclass
class DiffResult:
    markdown: str
    verdict: Verdict
    moved: int
    compared: int

    def html(self) -> str:
        """The report as one self-contained HTML page (the Markdown subset diff writes)."""
        return markdown_to_html(self.markdown, title="fp8lab regression report")


def markdown_to_html(md: str, title: str = "") -> str:
    """Renders the Markdown subset of the diff report: headings, bullet lists, pipe tables,
    paragraphs, **bold** and `code`."""
    import html
    import re

    def inline(text: str) -> str:
        t = html.escape(text)
        t = re.sub(r"`([^`]*)`", r"<code>\1</code>", t)
        return re.sub(r"\*\*([^*]*)\*\*", r"<strong>\1</strong>", t)

    out, lines, i = [], md.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{inline(line[level:].strip())}</h{level}>")
        elif line.startswith("- "):
            out.append("<ul>")
            while i < len(lines) and lines[i].startswith("- "):
                out.append(f"<li>{inline(lines[i][2:])}</li>")
                i += 1
            out.append("</ul>")
            continue
        elif " | " in line and i + 1 < len(lines) and set(lines[i + 1].replace(" ", "")) <= set("-|"):
            head = [c.strip() for c in line.split("|")]
            out.append("<table><tr>" + "".join(f"<th>{inline(c)}</th>" for c in head) + "</tr>")
            i += 2
            while i < len(lines) and " | " in lines[i]:
                out.append("<tr>" + "".join(f"<td>{inline(c.strip())}</td>" for c in lines[i].split("|")) + "</tr>")
                i += 1
            out.append("</table>")
            continue
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
        i += 1
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #999;padding:2px 8px}code{background:#eee}")
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(out) + "\n</body></html>\n")


def diff(a, b, block: int = 128) -> DiffResult:
    """A regression report between traces ``a`` (before) and ``b`` (after) of the same inputs."""
    ta = a if isinstance(a, Trace) else read_trace(a)
    tb = b if isinstance(b, Trace) else read_trace(b)
    name_a = Path(ta.path).name if ta.path else "A"
    name_b = Path(tb.path).name if tb.path else "B"
    if ta.op != tb.op:
        raise ValueError(f"b: {name_b} records op {tb.op!r}, {name_a} records {ta.op!r}; diff compares one operation")
    ins_a, ins_b = ta.of_role("input"), tb.of_role("input")
    if sorted(ins_a) != sorted(ins_b) or any(
            ins_a[k].array.tobytes() != ins_b[k].array.tobytes() or ins_a[k].array.shape != ins_b[k].array.shape
            for k in ins_a):
        raise ValueError(f"b: {name_b} and {name_a} do not hold the same inputs; diff needs traces of the same inputs")
    o = OPERATIONS.get(ta.op)
    lines = [f"# Regression report: `{name_a}` → `{name_b}`", "",
             f"- operation: `{ta.op}`",
             f"- producers: `{ta.producer}` → `{tb.producer}`",
             f"- spec: `{spec_hash(ta.spec)[:16]}` → `{spec_hash(tb.spec)[:16]}`"]
    spec_lines = _spec_difference(ta.spec, tb.spec)
    lines += ["", "## Spec difference", ""] + (spec_lines or ["The specs are identical."])
    verdicts, total_moved, total = [], 0, 0
    names = sorted(set(ta.of_role("output")) | set(ta.of_role("intermediate")) |
                   set(tb.of_role("output")) | set(tb.of_role("intermediate")))
    for name in names:
        lines += ["", f"## `{name}`", ""]
        if name not in ta.tensors or name not in tb.tensors:
            lines.append(f"Only in {'B' if name not in ta.tensors else 'A'}.")
            continue
        x, y = ta.tensors[name], tb.tensors[name]
        if x.dtype != y.dtype or x.array.shape != y.array.shape:
            lines.append(f"Changed type: {x.dtype}{list(x.array.shape)} → {y.dtype}{list(y.array.shape)}.")
            verdicts.append(Verdict("violation", f"{name}: dtype or shape changed"))
            continue
        fmt = o.value_format(tb.spec, name, x.dtype) if o else FORMAT_OF_DTYPE.get(x.dtype)
        moved_mask = (x.array.reshape(x.array.size, -1).view(np.uint8) !=
                      y.array.reshape(y.array.size, -1).view(np.uint8)).any(axis=1) if x.array.size else np.zeros(0, bool)
        moved = int(moved_mask.sum())
        total_moved += moved
        total += x.array.size
        lines.append(f"{moved} of {x.array.size} elements moved ({x.dtype}, shape {list(x.array.shape)}, role {x.role}).")
        if not moved:
            verdicts.append(Verdict("bit-identical", f"{name}: bit-identical"))
            continue
        is_float = fmt is not None or np.issubdtype(x.array.dtype, np.floating)
        if is_float:
            va, vb = values_of(x.array, x.dtype, fmt), values_of(y.array, y.dtype, fmt)
            ulps = _ulp_distances(va, vb, fmt)[moved_mask]
            lines += ["", f"ULP distance (in {fmt or 'fp64'}) | elements", "--- | ---"]
            lines += [f"{label} | {count}" for label, count in _ulp_histogram(ulps) if count]
            lines.append(f"\nmax ULP distance: {np.max(ulps):g}")
        where = np.flatnonzero(moved_mask)
        arr_shape = x.array.shape
        if len(arr_shape) >= 2:
            coords = np.unravel_index(where, arr_shape)
            rows, cols = coords[-2], coords[-1]
            urows, rcount = np.unique(rows, return_counts=True)
            lines += ["", "Rows with moved elements: " + ", ".join(f"{r} ({c})" for r, c in list(zip(urows, rcount))[:32])
                      + (" …" if urows.size > 32 else "")]
            blocks = {}
            for r, c in zip(rows, cols):
                key = (int(r) // block, int(c) // block)
                blocks[key] = blocks.get(key, 0) + 1
            lines += [f"Blocks ({block}x{block}) with moved elements: " +
                      ", ".join(f"({br}, {bc}): {n}" for (br, bc), n in sorted(blocks.items())[:32])]
        else:
            ublk, bcount = np.unique(where // block, return_counts=True)
            lines += ["", f"Blocks of {block} with moved elements: " +
                      ", ".join(f"{int(k)} ({int(c)})" for k, c in zip(ublk, bcount))]
            lines.append("First moved indices: " + ", ".join(str(int(i)) for i in where[:16]) +
                         (" …" if where.size > 16 else ""))
        if x.role != "output":
            lines.append("\nAn intermediate: informative, not part of the verdict.")
            continue
        eb = o.bound(tb.spec, {k: t.array for k, t in ins_b.items()}, name) if o and o.available() else None
        v = compare_tensors(name, x.dtype, y.array, x.array, fmt=fmt, what="",
                            exact=None if eb is None else eb[0], bound=None if eb is None else eb[1])
        if eb is None:
            lines.append("\nBound: the spec pins these bits, so every moved element is a violation.")
        else:
            lines.append(f"\nBound: certified by the spec; {v.details.get('violations', 0)} moved elements are outside it.")
        lines.append(f"\n**Verdict:** {v.summary}")
        verdicts.append(v)
    verdict = Verdict.worst(verdicts, f"{name_a} → {name_b}")
    lines[1:1] = ["", f"**{verdict.kind}**: {total_moved} of {total} compared elements moved."]
    return DiffResult("\n".join(lines) + "\n", verdict, total_moved, total)
