"""Operation "cast": fp8lab.encode, float32 -> bit patterns of a format, with a numpy oracle."""
from __future__ import annotations

import ctypes

import numpy as np

from ...formats import decode, encode, format_info
from ..trace import NUMPY_OF_DTYPE, TraceTensor, dtype_for_format
from .base import Operation, c_ptr, ragged_size


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
        n = ragged_size(rng, kind)
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
        y = fn(inputs["x"].copy(), spec)
        dtype = dtype_for_format(spec["to"])
        if dtype in ("F16", "F32") and isinstance(y, np.ndarray) and y.dtype.kind == "u":
            y = y.view(NUMPY_OF_DTYPE[dtype])  # kernels return bit patterns; traces hold F16/F32 values
        return {"y": y}

    def call_c(self, f, spec, spec_json, inputs, error):
        # fp8lab_cast_fn(x, n, spec_json, y, error, error_len)
        x = np.ascontiguousarray(inputs["x"], dtype=np.float32)
        storage = {8: np.uint8, 16: np.uint16, 32: np.uint32}[format_info(spec["to"])["storage_bits"]]
        y = np.zeros(x.shape, dtype=storage)
        rc = f(c_ptr(x), ctypes.c_size_t(x.size), spec_json, c_ptr(y), error, ctypes.c_size_t(len(error)))
        return rc, self.call(lambda *_: y, spec, inputs)

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

