"""Integer arguments checked before they reach the C++ core, so a value out of range is an error
naming the argument and its range rather than pybind11's "incompatible function arguments"."""
from __future__ import annotations

import numbers

INT32_MAX = 2 ** 31 - 1
UINT64_MAX = 2 ** 64 - 1
#: the largest tile side the schemas accept (emulator/gemm/recipe.cpp, bindings/src/quant.cpp)
TILE_MAX = 2 ** 40


def integer(name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} = {value}: expected an integer in [{lo}, {hi}]")
    return int(value)
