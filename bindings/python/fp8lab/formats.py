"""Number formats: encode real numbers to bit patterns and decode them back, exactly.

Bit patterns are unsigned integers (uint8 for 8-bit formats, uint16 up to 16 bits, uint32 above),
right-aligned. ``as_ml_dtypes`` / ``from_ml_dtypes`` reinterpret them as ml_dtypes arrays.
"""
from __future__ import annotations

import numbers

import numpy as np

from . import _args, _core

#: fp8lab format name -> ml_dtypes (or numpy) type name, for the rows that have one: read off the
#: format table (each row's ``ml_dtypes`` field), so a new row needs no edit here.
ML_DTYPES_NAMES = {row["name"]: row["ml_dtypes"] for row in _core.format_rows() if row["ml_dtypes"]}


def formats(detail: bool = False) -> list:
    """Names of the built-in formats, in table order; with ``detail=True`` the rows themselves
    (name, bit layout, bias, non_finite, nan_encoding, zero_exponent, ml_dtypes, source). Any
    ``eXmY`` / ``eXmY_ieee`` (IEEE-like) is accepted too, except a bare ``eXmY`` that starts a
    row's name (``e3m2`` of ``e3m2fn``), which is an error naming both readings."""
    if not isinstance(detail, bool):
        raise TypeError(f"detail: expected True or False, got {type(detail).__name__}")
    if detail:
        return [dict(row) for row in _core.format_rows()]
    return list(_core.formats())


def format_info(fmt: str) -> dict:
    """The semantics of ``fmt``: its row (bit layout, bias, non-finite behaviour, NaN encoding,
    ml_dtypes name, source) and the facts derived from it (limits, NaN pattern)."""
    return dict(_core.format_info(fmt))


def _bits_dtypes(fmt: str) -> tuple:
    """The dtypes an ``out=`` array of ``fmt``'s patterns may have: its storage dtype, and the
    matching ml_dtypes type where there is one (its bytes are the patterns)."""
    info = _core.format_info(fmt)
    storage = np.dtype({8: np.uint8, 16: np.uint16, 32: np.uint32}[info["storage_bits"]])
    ml_name = ML_DTYPES_NAMES.get(info["name"])
    if ml_name is not None:
        try:
            import ml_dtypes
        except ImportError:
            return (storage,)
        ml = np.dtype(getattr(ml_dtypes, ml_name) if hasattr(ml_dtypes, ml_name) else ml_name)
        if ml.itemsize == storage.itemsize and ml != storage:
            return (storage, ml)
    return (storage,)


def encode(x, fmt: str, rounding: str = "nearest_even", overflow: str = "saturate", seed: int = 0,
           flush_subnormals: bool = False, *, out=None) -> np.ndarray:
    """Round float32/float64 ``x`` to ``fmt`` and return the bit patterns (same shape).

    rounding: nearest_even, toward_zero, up, down, stochastic (element i of the flattened array
    uses the counter-based random word for (seed, i): reproducible and thread-count independent).
    overflow: saturate (CUDA satfinite: beyond max finite and +-Inf give +-max finite) or
    inf_or_nan (Inf, or NaN where the format has no Inf; toward_zero stops at max finite).
    NaN gives the format's canonical NaN (sign clear, all other bits set), as CUDA does.
    out: an existing array to write the patterns into and return (no allocation): x's shape,
    C-contiguous, writeable, not overlapping x, dtype the format's storage type (uint8 for 8-bit
    formats) or its ml_dtypes type (e.g. ml_dtypes.float8_e4m3fn).
    """
    seed = _args.integer("seed", seed, 0, _args.UINT64_MAX)
    if out is None:
        return _core.encode(x, fmt, rounding, overflow, seed, bool(flush_subnormals))
    x = x if isinstance(x, np.ndarray) else np.asarray(x)
    dtypes = _bits_dtypes(fmt)
    _args.out_array("out", out, x.shape, dtypes, [("x", x)])
    _core.encode(x, fmt, rounding, overflow, seed, bool(flush_subnormals), out.view(dtypes[0]))
    return out


def decode(bits, fmt: str, dtype=None, *, out=None) -> np.ndarray:
    """Exact values of ``fmt`` bit patterns (``bits``: the format's storage dtype).

    dtype: float64 (the default) or float32 (for formats whose values float32 holds exactly).
    out: an existing array to write the values into and return: bits' shape, C-contiguous,
    writeable, not overlapping bits, of ``dtype`` (when dtype is not given, out's dtype is used)."""
    if dtype is None:
        dtype = out.dtype if isinstance(out, np.ndarray) else np.float64
    try:
        dtype = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"dtype: expected float32 or float64, got {dtype!r}") from e
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype: expected float32 or float64, got {dtype}")
    if out is None:
        return _core.decode(bits, fmt, dtype == np.float32)
    bits = bits if isinstance(bits, np.ndarray) else np.asarray(bits)
    _args.out_array("out", out, bits.shape, (dtype,), [("bits", bits)])
    return _core.decode(bits, fmt, dtype == np.float32, out)


def as_ml_dtypes(bits: np.ndarray, fmt: str) -> np.ndarray:
    """View fp8lab bit patterns as the matching ml_dtypes array (no copy for 8/16-bit formats)."""
    import ml_dtypes

    fmt = _core.format_info(fmt)["name"] if isinstance(fmt, str) else fmt  # ml_dtypes names are aliases
    if fmt not in ML_DTYPES_NAMES:
        raise ValueError(f"fmt: {fmt!r} has no ml_dtypes counterpart; those that do: {sorted(ML_DTYPES_NAMES)}")
    ml_name = ML_DTYPES_NAMES[fmt]
    target = np.dtype(getattr(ml_dtypes, ml_name) if hasattr(ml_dtypes, ml_name) else ml_name)
    if target.itemsize == bits.dtype.itemsize:
        return bits.view(target)
    raise ValueError(f"bits: dtype {bits.dtype} does not match {fmt}'s storage")


def from_ml_dtypes(values: np.ndarray) -> tuple[np.ndarray, str]:
    """The bit patterns and fp8lab format name of an ml_dtypes (or float16/float32) array."""
    name = values.dtype.name
    for fmt, ml_name in ML_DTYPES_NAMES.items():
        if ml_name == name:
            storage = {1: np.uint8, 2: np.uint16, 4: np.uint32}[values.dtype.itemsize]
            return values.view(storage), fmt
    raise TypeError(f"values: dtype {name} is not one of {sorted(ML_DTYPES_NAMES.values())}")


def ocp_to_fnuz(bits, scale, fmt: str = "e4m3"):
    """OCP FP8 bit patterns of ``fmt`` (e4m3 or e5m2) and their scale as AMD FNUZ ones (e4m3fnuz /
    e5m2fnuz) with the scale doubled, as AMD's stacks convert them (vLLM
    ``normalize_e4m3fn_to_e4m3fnuz``): each pattern is kept (its FNUZ value is half the OCP value),
    OCP -0 becomes 0, and an OCP NaN/Inf becomes the FNUZ NaN 0x80. Returns ``(bits, scale * 2)``;
    ``decode(bits) * scale`` is unchanged, exactly."""
    return _core.ocp_to_fnuz(_uint8_bits(bits), fmt), _scaled(scale, 2.0)


def fnuz_to_ocp(bits, scale, fmt: str = "e4m3fnuz", overflow: str = "saturate"):
    """The inverse of ``ocp_to_fnuz``: FNUZ patterns of ``fmt`` as OCP ones with the scale halved.
    Exact except the top of E4M3FNUZ (+-240 is +-480 in OCP terms, past E4M3's 448), which
    ``overflow`` decides (saturate: 448; inf_or_nan: NaN). NaN (0x80) gives the OCP NaN."""
    return _core.fnuz_to_ocp(_uint8_bits(bits), fmt, overflow), _scaled(scale, 0.5)


def _uint8_bits(bits) -> np.ndarray:
    arr = np.asarray(bits)
    if arr.dtype != np.uint8:
        raise TypeError(f"bits: expected dtype uint8 (8-bit patterns), got {arr.dtype}")
    return np.ascontiguousarray(arr)


def _scaled(scale, factor: float):
    arr = np.asarray(scale)
    if arr.dtype.kind != "f":
        raise TypeError(f"scale: expected a float scale or array of scales, got dtype {arr.dtype}")
    out = arr * arr.dtype.type(factor)  # a power of two: exact unless it leaves the range
    if not np.all(np.isfinite(out) | ~np.isfinite(arr)):
        raise ValueError(f"scale: times {factor} leaves the {arr.dtype} range")
    return out[()] if out.ndim == 0 else out


def set_num_threads(n: int) -> None:
    """Threads used by the emulator's parallel loops (results never depend on it); 0 = default."""
    if isinstance(n, numbers.Integral) and not isinstance(n, bool) and n < 0:
        raise ValueError(f"n: {n} is negative; expected 0 (default) or a positive thread count")
    _core.set_num_threads(_args.integer("n", n, 0, 4096))  # kMaxThreads, emulator/common/parallel.hpp


def num_threads() -> int:
    return int(_core.num_threads())


def buffer_cache_info() -> dict:
    """The process's cache of large per-call buffers (a GEMM's operand copies, packed layouts and
    result; emulator/common/buffer_pool.hpp): bytes and buffers held now, and since the process
    started the requests of 1 MiB or more it served (reused) and those that took new memory
    (allocated). FP8LAB_BUFFER_CACHE_MB caps what it holds (default 256; 0 turns it off)."""
    return {k: int(v) for k, v in _core.buffer_cache_info().items()}


def release_buffer_cache() -> None:
    """Frees every buffer the cache holds (memory back to the system now; results are unaffected)."""
    _core.release_buffer_cache()
