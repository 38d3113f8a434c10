"""Operation "gemm": fp8lab.gemm, D = A · Bᵀ with block-scaled FP8 operands, with a numpy oracle."""
from __future__ import annotations

import ctypes
import json
import dataclasses

import numpy as np

from ... import _core
from ...blockgemm import gemm, gemm_bound, gemm_exact
from ...formats import decode, encode, format_info
from ..outputs import as_host_array
from ..trace import FORMAT_OF_DTYPE, TraceTensor, dtype_for_format
from .base import Operation, c_ptr


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
    kinds = ("random", "zero_block", "extreme", "ragged", "subnormal", "cancel", "outlier", "non_finite")

    def default_spec(self) -> dict:
        r = _core.gemm_recipe(_core.default_gemm_recipe)  # operands' format and tile, then the GemmSpec
        return {"a_format": r["a"]["format"], "a_tile": r["a"]["tile"], "b_format": r["b"]["format"],
                "b_tile": r["b"]["tile"], **r["gemm"], "pinned": True}

    def oracle_spec(self) -> dict:
        return {**self.default_spec(), "accumulate": "fp32", "a_tile": [1, 0], "b_tile": [1, 0]}

    def normalize_spec(self, spec) -> dict:
        full = super().normalize_spec(spec)
        for key in ("a_tile", "b_tile"):
            t = full[key]
            if not (isinstance(t, (list, tuple)) and len(t) == 2 and all(isinstance(v, int) and v >= 0 for v in t)):
                raise ValueError(f"spec: {key} must be [rows, cols] of non-negative ints (0 = whole dimension), got {t!r}")
            full[key] = [int(t[0]), int(t[1])]
        # The GemmSpec part is read by the emulator's GemmSpec schema (strict types, named errors).
        full.update(_core.gemm_spec({f["key"]: full[f["key"]] for f in _core.spec_fields("gemm")}))
        if not isinstance(full["pinned"], bool):
            raise ValueError(f"spec.pinned = {json.dumps(full['pinned'])}: expected true or false (a JSON boolean)")
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
        overflow = "saturate"
        if kind == "non_finite" and k:
            # NaN (and +/-Inf in formats that have it) in a third of the rows of A and of B: D follows
            # the GEMM's NaN/Inf policy there (emulator/gemm/non_finite.hpp); a kernel that zeroes
            # or drops them differs.
            overflow = "inf_or_nan"  # so that an Inf encodes as Inf (the values are clipped: no overflow)
            for x, fmt in ((xa, fa), (xb, fb)):
                specials = [np.nan] + ([np.inf, -np.inf] if format_info(fmt)["has_inf"] else [])
                for r in rng.choice(x.shape[0], max(1, x.shape[0] // 3), replace=False):
                    x[r, int(rng.integers(0, k))] = specials[int(rng.integers(0, len(specials)))]
        if kind in ("zero_block", "mixed") and k > 128:
            xa[0, 128:256] = 0  # an all-zero 1x128 block (its amax is 0: NaN-scale territory)
            xb[:, :128] = 0 if kind == "zero_block" else xb[:, :128]
        if kind == "cancel" and k >= 2:
            xa[:, 1::2] = xa[:, 0:(k // 2) * 2:2]
            xb[:, 1::2] = -xb[:, 0:(k // 2) * 2:2]
        inputs = {"a": encode(xa, fa, overflow=overflow), "b": encode(xb, fb, overflow=overflow)}
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
        # Any rule that stores float32 scales: the rule only says how scales are stored here; the
        # GEMM uses the multipliers as given.
        return _core.QTensor.from_parts(np.ascontiguousarray(bits), np.ascontiguousarray(scales, dtype=np.float32),
                                        fmt, tuple(tile), "deepseek")

    def _spec_args(self, spec):
        return dict(accumulate=spec["accumulate"], promote_every=int(spec["promote_every"]),
                    combine=spec["combine"], instruction=spec["instruction"], out=spec["out"])

    def kernel_outputs(self, spec, got):
        d = np.asarray(got["d"], dtype=np.float64)
        if spec["out"] in ("bf16", "fp32"):
            back = decode(encode(d, spec["out"], overflow="inf_or_nan"), spec["out"])
            bad = np.flatnonzero(~((back == d) | (np.isnan(back) & np.isnan(d))))
            if bad.size:
                i = np.unravel_index(int(bad[0]), d.shape)
                raise ValueError(f"d: element {[int(c) for c in i]} = {d[i]!r} from the kernel is not a "
                                 f"{spec['out']} value")
        return {"d": self._d_tensor(spec, d)}

    def _d_tensor(self, spec, d):
        # A NaN is stored as the output format's canonical NaN (sign clear, all other bits set: what
        # the tensor cores and CUDA's conversions write), so NaN payloads never decide a verdict.
        if spec["out"] == "bf16":
            return TraceTensor("output", "BF16", encode(np.asarray(d, dtype=np.float64), "bf16", overflow="inf_or_nan"))
        if spec["out"] == "fp32":
            v = np.asarray(d).astype(np.float32)
            return TraceTensor("output", "F32", np.where(np.isnan(v), np.uint32(0x7FFFFFFF).view(np.float32), v))
        v = np.asarray(d, dtype=np.float64)
        return TraceTensor("output", "F64", np.where(np.isnan(v), np.uint64(0x7FFFFFFFFFFFFFFF).view(np.float64), v))

    def run(self, spec, inputs):
        a, b = self._operand(spec, inputs, "a"), self._operand(spec, inputs, "b")
        out = {"d": self._d_tensor(spec, gemm(a, b, **self._spec_args(spec)))}
        if spec["accumulate"] == "promoted":
            ea = decode(np.ascontiguousarray(inputs["a"]), spec["a_format"]).astype(np.float32)
            eb = decode(np.ascontiguousarray(inputs["b"]), spec["b_format"]).astype(np.float32)
            step = int(spec["promote_every"])
            k = ea.shape[1]
            parts = [gemm(ea[:, j:j + step], eb[:, j:j + step], accumulate="tensorcore",
                          instruction=spec["instruction"], out="fp32") for j in range(0, k, step)]
            arr = np.stack(parts).astype(np.float32) if parts else np.zeros((0, ea.shape[0], eb.shape[0]), np.float32)
            out["block_partials"] = TraceTensor("intermediate", "F32", arr)
        return out

    def value_format(self, spec, name, dtype):
        if name == "d":
            return {"bf16": "bf16", "fp32": "fp32", "fp64": None}[spec["out"]]
        return FORMAT_OF_DTYPE.get(dtype)

    def bound(self, spec, inputs, name):
        if name != "d" or spec.get("pinned", True):
            return None  # a pinned spec: the bits are the contract, any difference is a violation
        a, b = self._operand(spec, inputs, "a"), self._operand(spec, inputs, "b")
        return gemm_exact(a, b, out="fp64"), gemm_bound(a, b, **self._spec_args(spec))

    # -- what a trace stores: exactly the emulator's to_json(GemmSpec) as its spec, the operands'
    # formats and tiles and `pinned` as metadata strings ("a.format", "a.tile" = "RxC", as the
    # hardware traces of gpu/hardware_trace.hpp write them, "pinned" = "true" / "false").

    def stored_spec(self, spec):
        stored = json.loads(_core.gemm_spec_json({f["key"]: spec[f["key"]] for f in _core.spec_fields("gemm")}))
        extra = {"pinned": "true" if spec["pinned"] else "false"}
        for x in ("a", "b"):
            extra[f"{x}.format"] = spec[f"{x}_format"]
            extra[f"{x}.tile"] = "{}x{}".format(*spec[f"{x}_tile"])
        return stored, extra

    @staticmethod
    def _tile_of(trace, x):
        tile = trace.extra.get(f"{x}.tile", "")
        try:
            r, c = (int(v) for v in tile.split("x"))
        except ValueError:
            raise ValueError(f"{trace.path or 'trace'}: metadata '{x}.tile' = {tile!r} is not RxC") from None
        return [r, c]

    def adapt(self, trace):
        """The op's spec dict and tensor names from what a trace stores: the GemmSpec JSON with the
        operands in metadata (this op's traces), the op's own dict (traces written before it stored
        to_json(GemmSpec): keys "a_format", "a_tile", ...), or a hardware trace of
        gpu/hardware_trace.hpp (operands "a.bits"/"a.scales", U8 E4M3 bits and F32 scales)."""
        if "a.bits" in trace.tensors:
            tensors = {k: v for k, v in trace.tensors.items() if not k.startswith(("a.", "b."))}
            spec = dict(trace.spec)
            for x in ("a", "b"):
                tensors[x] = TraceTensor("input", "F8_E4M3", trace.tensors[f"{x}.bits"].array)
                tensors[f"{x}_scales"] = TraceTensor("input", "F32", trace.tensors[f"{x}.scales"].array)
                spec[f"{x}_tile"], spec[f"{x}_format"] = self._tile_of(trace, x), "e4m3"
            return dataclasses.replace(trace, spec=spec, tensors=tensors)
        if "a_format" in trace.spec:
            return trace  # the earlier form: the op's dict as it is
        spec = dict(trace.spec)
        for x in ("a", "b"):
            if f"{x}.format" not in trace.extra:
                raise ValueError(f"{trace.path or 'trace'}: a gemm trace needs metadata '{x}.format' "
                                 "(or the spec key 'a_format' of the earlier form)")
            spec[f"{x}_format"], spec[f"{x}_tile"] = trace.extra[f"{x}.format"], self._tile_of(trace, x)
        pinned = trace.extra.get("pinned", "true")
        if pinned not in ("true", "false"):
            raise ValueError(f"{trace.path or 'trace'}: metadata 'pinned' = {pinned!r}: expected 'true' or 'false'")
        spec["pinned"] = pinned == "true"
        return dataclasses.replace(trace, spec=spec)

    def call(self, fn, spec, inputs):
        d = fn(inputs["a"], inputs["a_scales"], inputs["b"], inputs["b_scales"], spec)
        return {"d": d}

    def judge(self, spec, inputs, name, expected, got, what):
        # The NaN/Inf policy (emulator/gemm/non_finite.hpp): a NaN's sign and payload are not part of
        # the model, so a kernel's float NaNs are read as the canonical NaN the trace stores.
        if name == "d" and not isinstance(got, TraceTensor):
            try:
                g = as_host_array(got)
            except Exception:  # noqa: BLE001 - judged (and named) by the generic path below
                g = None
            if g is not None and g.dtype in (np.float32, np.float64) and np.isnan(g).any():
                canonical = (np.uint32(0x7FFFFFFF).view(np.float32) if g.dtype == np.float32
                             else np.uint64(0x7FFFFFFFFFFFFFFF).view(np.float64))
                got = np.where(np.isnan(g), canonical, g).astype(g.dtype)
        return super().judge(spec, inputs, name, expected, got, what)

    def call_c(self, f, spec, spec_json, inputs, error):
        # fp8lab_gemm_fn(a, a_scales, b, b_scales, m, n, k, spec_json, d, error, error_len)
        a, b = np.ascontiguousarray(inputs["a"]), np.ascontiguousarray(inputs["b"])
        sa = np.ascontiguousarray(inputs["a_scales"], dtype=np.float32)
        sb = np.ascontiguousarray(inputs["b_scales"], dtype=np.float32)
        (m, k), n = a.shape, b.shape[0]
        d = np.zeros((m, n), dtype=np.float32)
        size = ctypes.c_size_t
        rc = f(c_ptr(a), c_ptr(sa), c_ptr(b), c_ptr(sb), size(m), size(n), size(k), spec_json, c_ptr(d), error,
               size(len(error)))
        return rc, {"d": d}

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
