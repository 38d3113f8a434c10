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


def native_order(a):
    """``a`` with its values in native byte order. An input array in the other byte order (``'>f4'``
    on this little-endian machine: h5py, network data) holds the same values, but the C++ core reads
    native words, so it is copied once; every other object is returned as it is. Output arrays,
    written in place, are not converted: ``out_array`` refuses them."""
    import numpy as np

    if isinstance(a, np.ndarray) and not a.dtype.isnative:
        return a.astype(a.dtype.newbyteorder("="))
    return a


def out_array(name: str, out, shape, dtypes, inputs=()):
    """``out`` checked as the destination of a cast: a numpy array of one of ``dtypes`` and of
    ``shape``, C-contiguous, writeable, and sharing no memory with any of ``inputs`` ((name,
    array) pairs; the result would overwrite its own input). Returns it."""
    import numpy as np

    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array, got {type(out).__name__}")
    if out.dtype not in dtypes:
        raise TypeError(f"{name}: expected dtype {' or '.join(str(np.dtype(d)) for d in dtypes)}, got {out.dtype}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {out.shape}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name}: must be C-contiguous (a strided view cannot be filled in place)")
    if not out.flags.writeable:
        raise ValueError(f"{name}: is read-only")
    for arg, a in inputs:
        if isinstance(a, np.ndarray) and np.may_share_memory(a, out):
            raise ValueError(f"{name}: shares memory with {arg}; the result would overwrite its own input")
    return out
