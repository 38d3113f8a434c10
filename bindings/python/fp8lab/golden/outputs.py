"""What a kernel may return for an output, and how it is brought to the trace's representation.

Kernels return what their framework gives them: numpy arrays, ml_dtypes arrays (bfloat16,
float8_*), torch tensors on any device, or any DLPack producer. An output is accepted either as
the trace's own storage (e.g. BF16 bit patterns as uint16), as the same format under its
framework's float type (ml_dtypes/torch bfloat16 for a bf16 output, float8_e4m3fn for e4m3), or as
float16/bfloat16/float32/float64 *values*, each of which must be a value of the output format.
Anything else (None, a wrong shape, int for float, a value the format cannot hold) is an
:class:`OutputMismatch`: the kernel's result is wrong, which the caller reports as a violation.
"""
from __future__ import annotations

import numpy as np

from ..formats import decode, encode

#: fp8lab format -> the framework float dtype name (numpy, ml_dtypes, torch) of the same format
FRAMEWORK_NAME = {"bf16": "bfloat16", "e4m3": "float8_e4m3fn", "e5m2": "float8_e5m2", "fp16": "float16",
                  "fp32": "float32"}
#: float dtypes whose values are accepted for any float output (each converts to float64 exactly)
VALUE_DTYPES = {"float16", "bfloat16", "float32", "float64", "float8_e4m3fn", "float8_e5m2"}


class OutputMismatch(ValueError):
    """A kernel output that is not an acceptable result (the message says why)."""


def _torch_to_numpy(t) -> np.ndarray:
    import ml_dtypes

    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    name = str(t.dtype).removeprefix("torch.")
    if name in ("bfloat16", "float8_e4m3fn", "float8_e5m2"):  # numpy has no such dtype: hand over the bits
        import torch

        bits = t.contiguous().view(torch.int16 if name == "bfloat16" else torch.uint8).numpy()
        return bits.view(getattr(ml_dtypes, name))
    return t.contiguous().numpy()


def as_host_array(x) -> np.ndarray:
    """A kernel output as a numpy array in host memory (torch and DLPack tensors copied over)."""
    if x is None:
        raise OutputMismatch("the kernel returned None")
    if type(x).__module__.startswith("torch") and hasattr(x, "detach"):
        return _torch_to_numpy(x)
    if hasattr(x, "__dlpack__") and not isinstance(x, np.ndarray):
        try:
            return np.from_dlpack(x)
        except (TypeError, ValueError, RuntimeError, BufferError):
            try:  # another device or a dtype numpy lacks: torch reads any DLPack producer
                import torch
            except ImportError:
                raise OutputMismatch(f"a {type(x).__name__} numpy cannot read through DLPack "
                                     "(install torch to copy it from its device)") from None
            return _torch_to_numpy(torch.from_dlpack(x))
    a = np.asarray(x)
    if a.dtype == object:
        raise OutputMismatch(f"the kernel returned a {type(x).__name__}, not an array")
    return a


def coerce_output(got, expected, fmt: str | None, name: str) -> tuple[str, np.ndarray]:
    """("bits", array in the trace tensor's dtype) or ("values", float64 values of ``fmt``)."""
    g = as_host_array(got)
    want = expected.array
    if g.shape != want.shape:
        raise OutputMismatch(f"shape {tuple(g.shape)}, expected {tuple(want.shape)}")
    if g.dtype == want.dtype:
        return "bits", g
    if fmt is not None and g.dtype.name == FRAMEWORK_NAME.get(fmt) and g.dtype.itemsize == want.dtype.itemsize:
        return "bits", np.ascontiguousarray(g).view(want.dtype)
    if want.dtype.kind in "iu" and fmt is None and g.dtype.kind in "iu":
        same = g.astype(want.dtype)
        if not np.array_equal(same.astype(np.int64), g.astype(np.int64)):
            i = int(np.flatnonzero(same.astype(np.int64) != g.astype(np.int64))[0])
            raise OutputMismatch(f"element {np.unravel_index(i, g.shape)} = {g.ravel()[i]} does not fit {want.dtype}")
        return "bits", same
    float_output = fmt is not None or want.dtype.kind == "f"
    if float_output and g.dtype.name in VALUE_DTYPES:
        v = g.astype(np.float64)
        if fmt is not None and v.size:
            with np.errstate(over="ignore", invalid="ignore"):
                back = decode(encode(v, fmt, overflow="inf_or_nan"), fmt)  # Inf is a value where fmt has one
            bad = np.flatnonzero(~((back == v) | np.isnan(v)))
            if bad.size:
                i = int(bad[0])
                at = [int(c) for c in np.unravel_index(i, v.shape)]
                raise OutputMismatch(f"element {at} = {v.ravel()[i]!r} ({g.dtype}) is not a {fmt} value")
        return "values", v
    raise OutputMismatch(f"{name}: dtype {g.dtype}, expected {want.dtype} (or float values of {fmt or want.dtype})")
