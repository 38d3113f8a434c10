"""Trace files: the dtype tables, canonical spec JSON and digests, and reading/writing a trace.

A trace is a safetensors file (readable by the ``safetensors`` package) holding the inputs, the
outputs and chosen intermediates of one operation, with ``__metadata__`` (all strings) holding the
spec as canonical JSON and its SHA-256, the producer, the seed and a SHA-256 per tensor. Reading
goes through fp8lab's strict C++ parser: a corrupt, truncated or hand-edited file raises
:class:`TraceError` (a ``ValueError``) naming the file and the problem.
"""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from .. import _core
from ..formats import format_info

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
    from .. import __version__

    return f"fp8lab {__version__} emulator"


def dtype_for_format(fmt: str) -> str:
    if fmt in DTYPE_OF_FORMAT:
        return DTYPE_OF_FORMAT[fmt]
    return {8: "U8", 16: "U16", 32: "U32"}[format_info(fmt)["storage_bits"]]




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

