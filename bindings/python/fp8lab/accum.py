"""Single tensor-core instructions, bit-exact: ``d = a . b + c`` as one MMA instruction computes it.

The model (exact products, alignment of every term to the largest exponent keeping a fixed
number of fractional bits by truncation, exact integer sum, normalised and truncated result) and
its presets are documented in ``emulator/accum/tensor_core.hpp`` and
``emulator/accum/tensor_core_presets.cpp``; ``tensor_cores()`` lists the presets with their
sources and how well the hardware measurements back them.
"""
from __future__ import annotations

import numpy as np

from . import _args, _core

__all__ = ["dot", "tensor_cores", "tensor_core_names"]


def tensor_core_names() -> list[str]:
    """Every preset name and short alias accepted as ``instruction``."""
    return list(_core.tensor_core_names())


def tensor_cores() -> list[dict]:
    """The presets: name, alias, input format, k, block, alignment bits, output precision and
    rounding, evidence ("replayed": reproduces all published measurements; "unmeasured") and
    source."""
    return [dict(p) for p in _core.tensor_core_presets()]


def dot(a, b, c=None, instruction: str = "hopper_fp8", fmt: str | None = None, scale_a=None,
        scale_b=None) -> np.ndarray:
    """One tensor-core instruction per row: ``d[...] = a[..., :] . b[..., :] + c[...]``.

    a, b: float32/float64 arrays of shape ``[..., k]`` (k = the instruction's products, e.g. 32
      for ``hopper_fp8``) whose values are exactly representable in the input format; the first
      value that is not raises ValueError naming it.
    c: the FP32 accumulator input, shape ``[...]`` or a scalar; None means 0.
    instruction: a preset name or alias (``tensor_core_names()``).
    fmt: the input format, checked against the instruction's (default: the instruction's own).
    scale_a, scale_b: for block-scaled presets only, shape ``[..., k/scale_block]``: the scale
      values as a float array (exactly representable in the preset's ``scale_format``: UE8M0
      powers of two, or UE4M3 for NVFP4; NaN allowed), or for UE8M0 an int32 array of unbiased
      exponents.
    Returns float32 of shape ``[...]``. Results are independent of the thread count.
    """
    if not isinstance(instruction, str):
        raise TypeError(f"instruction: expected a preset name (str), got {type(instruction).__name__}")
    if fmt is not None and not isinstance(fmt, str):
        raise TypeError(f"fmt: expected a format name (str) or None, got {type(fmt).__name__}")
    a = _as_float_array(a, "a")
    b = _as_float_array(b, "b")
    if c is not None:
        c = _as_float_array(c, "c")
    if scale_a is not None:
        scale_a = _as_scales(scale_a, "scale_a")
    if scale_b is not None:
        scale_b = _as_scales(scale_b, "scale_b")
    return _core.tensor_core_dot(a, b, c, instruction, fmt or "", scale_a, scale_b)


def _as_float_array(x, name: str) -> np.ndarray:
    arr = _args.native_order(np.asarray(x))
    if arr.dtype == np.float32 or arr.dtype == np.float64:
        return np.asarray(arr, order="C")  # (ascontiguousarray would make a 0-d c 1-d)
    if arr.dtype.name in ("float8_e4m3fn", "float8_e5m2", "bfloat16", "float8_e4m3fnuz", "float8_e5m2fnuz",
                          "float6_e2m3fn", "float6_e3m2fn", "float4_e2m1fn", "float8_e8m0fnu"):
        return np.asarray(arr, dtype=np.float32, order="C")  # ml_dtypes arrays: exact widening
    if arr.dtype.kind in "iu" or arr.dtype == np.float16:
        # Integers and float16 convert to float64 exactly; the representability check follows.
        return np.asarray(arr, dtype=np.float64, order="C")
    raise TypeError(f"{name}: expected a float32 or float64 array, got dtype {arr.dtype}")


def _as_scales(x, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind == "f" or arr.dtype.name in ("float8_e8m0fnu", "float8_e4m3fn"):
        return _as_float_array(arr, name)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected scale values (a float array) or UE8M0 exponents (an integer array), "
                        f"got dtype {arr.dtype}")
    if arr.size and (arr.min() < -127 or arr.max() > 127):
        bad = np.argwhere((arr < -127) | (arr > 127))[0]
        raise ValueError(f"{name}: element {list(map(int, bad))} = {int(arr[tuple(bad)])} is outside the UE8M0 "
                         "exponent range [-127, 127]")
    return np.asarray(arr, dtype=np.int32, order="C")
