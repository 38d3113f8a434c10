"""Operation "mla_sparse_decode": sparse MLA decode with FlashMLA's sparse semantics over one of
its FP8 sparse KV layouts (fp8lab.mla.sparse_decode; emulator/mla/sparse_decode.hpp)."""
from __future__ import annotations

import ctypes
import json

import numpy as np

from ...formats import decode, encode, num_threads, set_num_threads
from ...mla_sparse import (sparse_decode, sparse_decode_reference, sparse_kv_block_bytes, sparse_kv_layout,
                           sparse_kv_quantize)
from ..outputs import as_host_array
from ..trace import TraceTensor
from .base import Operation, c_ptr, pair_outputs

_INT32_MAX = 2**31 - 1


class MlaSparseDecodeOp(Operation):
    """fp8lab.mla.sparse_decode: each query attends to the cached tokens ``indices`` names (-1
    invalid; only the first ``topk_length[b]`` count), ``attn_sink`` per head (-inf = none).

    Inputs: ``q`` float32 [batch, s_q, heads, d_qk] (BF16 values), ``kv_cache`` uint8 [blocks,
    block_bytes] in ``layout``, ``indices`` int32 [batch, s_q, topk], ``topk_length`` int32 [batch],
    ``attn_sink`` float32 [heads]. Outputs: ``out`` BF16 [batch, s_q, heads, 512] and ``lse``
    float32 [batch, heads, s_q] (FlashMLA's layouts). A kernel is called as
    ``fn(q, kv_cache, indices, topk_length, attn_sink, spec) -> (out, lse)``.
    ``pinned`` false (default): the summation order is not pinned (FlashMLA's scheduler and
    exp2 arithmetic differ from the emulator's), so a kernel is judged within the certified bound
    of the exact attention; true: bit for bit against the emulator's stated algorithm.
    Spec fields heads, topk, blocks say what the generators make (FlashMLA needs heads 64 or 128
    and topk a multiple of 64)."""

    name = "mla_sparse_decode"
    kinds = ("random", "invalid", "topk_length", "sink", "nan_unused", "empty", "extreme")
    oracle_label = "emulator on 1 thread vs N (determinism)"

    def default_spec(self) -> dict:
        return {"layout": "v32_fp8_sparse", "page_block_size": 64, "softmax_scale": None, "num_splits": 1,
                "decode_p": "bf16", "dequant": "sm90", "heads": 64, "topk": 64, "blocks": 4, "pinned": False}

    def normalize_spec(self, spec) -> dict:
        full = super().normalize_spec(spec)
        full["layout"] = sparse_kv_layout(full["layout"])["name"]  # raises naming the layout
        for key in ("page_block_size", "num_splits", "heads", "topk", "blocks"):
            v = full[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"spec: {key} = {json.dumps(v)}: expected an integer >= 1")
        if full["topk"] > full["blocks"] * full["page_block_size"]:
            raise ValueError(f"spec: topk = {full['topk']} exceeds the cache's blocks * page_block_size = "
                             f"{full['blocks'] * full['page_block_size']} tokens")
        s = full["softmax_scale"]
        if s is not None and (isinstance(s, bool) or not isinstance(s, (int, float)) or not s > 0):
            raise ValueError(f"spec: softmax_scale = {json.dumps(s)}: expected a positive number or null (d_qk^-0.5)")
        if full["decode_p"] not in ("bf16", "fp32"):
            raise ValueError(f"spec: decode_p = {json.dumps(full['decode_p'])}: expected \"bf16\" or \"fp32\"")
        if full["dequant"] not in ("sm90", "reference"):
            raise ValueError(f"spec: dequant = {json.dumps(full['dequant'])}: expected \"sm90\" or \"reference\"")
        if not isinstance(full["pinned"], bool):
            raise ValueError(f"spec.pinned = {json.dumps(full['pinned'])}: expected true or false (a JSON boolean)")
        return full

    def fixtures(self):
        small = {"heads": 8, "topk": 64, "blocks": 2, "page_block_size": 32, "num_splits": 2}
        return [("mla_sparse_decode_v32_small", {**self.default_spec(), **small}, 41, "mixed")]

    # -- inputs

    def generate(self, spec, rng, kind):
        info = sparse_kv_layout(spec["layout"])
        blocks, page, h, topk = spec["blocks"], spec["page_block_size"], spec["heads"], spec["topk"]
        context = blocks * page
        b, s_q = (1, 2) if kind == "mixed" else (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        width = np.exp2(rng.integers(-8, 9, (blocks, page, 1))) if kind in ("extreme", "mixed") else 0.5
        values = (rng.standard_normal((blocks, page, info["d_qk"])) * width).astype(np.float32)
        kv = sparse_kv_quantize(values, spec["layout"])
        q = (rng.standard_normal((b, s_q, h, info["d_qk"])) * 2).astype(np.float32)
        q = decode(encode(q.astype(np.float64), "bf16"), "bf16").astype(np.float32)  # FlashMLA's q is BF16
        ind = np.stack([rng.permutation(context)[:topk] for _ in range(b * s_q)]).reshape(b, s_q, topk).astype(np.int32)
        tl = np.full(b, topk, np.int32)
        sink = np.full(h, -np.inf, np.float32)
        if kind in ("invalid", "mixed"):
            ind[rng.random(ind.shape) < 0.3] = -1
            ind[0, -1, :] = -1  # a query with nothing to attend: out 0, lse +inf
        if kind in ("topk_length", "mixed"):
            tl = rng.integers(0, topk + 1, b).astype(np.int32)
            tl[0] = max(1, min(topk - 1, int(tl[0])))
            past = np.arange(topk)[None, None, :] >= tl[:, None, None]
            ind[past & (rng.random(ind.shape) < 0.5)] = _INT32_MAX  # ignored, as FlashMLA ignores it
        if kind in ("sink", "mixed"):
            sink = rng.uniform(-4, 6, h).astype(np.float32)
            sink[0] = np.inf
        if kind == "empty":
            ind[:] = -1
        if kind in ("nan_unused", "mixed"):
            kv = _poison_unused(kv, spec, ind, tl)
        return {"q": q, "kv_cache": kv, "indices": ind, "topk_length": tl, "attn_sink": sink}

    def input_tensors(self, spec, inputs):
        return {"q": TraceTensor("input", "F32", np.asarray(inputs["q"], dtype=np.float32)),
                "kv_cache": TraceTensor("input", "U8", np.asarray(inputs["kv_cache"], dtype=np.uint8)),
                "indices": TraceTensor("input", "I32", np.asarray(inputs["indices"], dtype=np.int32)),
                "topk_length": TraceTensor("input", "I32", np.asarray(inputs["topk_length"], dtype=np.int32)),
                "attn_sink": TraceTensor("input", "F32", np.asarray(inputs["attn_sink"], dtype=np.float32))}

    def _kw(self, spec, inputs) -> dict:
        return {"layout": spec["layout"], "softmax_scale": spec["softmax_scale"], "topk_length": inputs["topk_length"],
                "attn_sink": inputs["attn_sink"], "page_block_size": spec["page_block_size"],
                "num_splits": spec["num_splits"], "decode_p": spec["decode_p"], "dequant": spec["dequant"]}

    def run(self, spec, inputs):
        out, lse = sparse_decode(inputs["q"], inputs["kv_cache"], inputs["indices"], **self._kw(spec, inputs))
        return {"out": TraceTensor("output", "BF16", _bf16_bits(out)),
                "lse": TraceTensor("output", "F32", np.asarray(lse, dtype=np.float32))}

    def bound(self, spec, inputs, name):
        if spec["pinned"]:
            return None
        ref = sparse_decode_reference(inputs["q"], inputs["kv_cache"], inputs["indices"], **self._kw(spec, inputs))
        return ref[name], ref[f"{name}_bound"]

    def call(self, fn, spec, inputs):
        return pair_outputs(fn(inputs["q"], inputs["kv_cache"], inputs["indices"], inputs["topk_length"],
                               inputs["attn_sink"], spec), ("out", "lse"))

    def call_c(self, f, spec, spec_json, inputs, error):
        # fp8lab_mla_sparse_decode_fn(q, batch, s_q, heads, d_qk, kv_cache, blocks, block_bytes, indices, topk,
        #                             topk_length, attn_sink, spec_json, out, lse, error, error_len)
        q = np.ascontiguousarray(inputs["q"], dtype=np.float32)
        kv = np.ascontiguousarray(inputs["kv_cache"], dtype=np.uint8)
        ind = np.ascontiguousarray(inputs["indices"], dtype=np.int32)
        tl = np.ascontiguousarray(inputs["topk_length"], dtype=np.int32)
        sink = np.ascontiguousarray(inputs["attn_sink"], dtype=np.float32)
        (b, s_q, h, d), topk = q.shape, ind.shape[-1]
        d_v = sparse_kv_layout(spec["layout"])["d_v"]
        out = np.zeros((b, s_q, h, d_v), dtype=np.float32)
        lse = np.zeros((b, h, s_q), dtype=np.float32)
        size = ctypes.c_size_t
        rc = f(c_ptr(q), size(b), size(s_q), size(h), size(d), c_ptr(kv), size(kv.shape[0]), size(kv.shape[1]),
               c_ptr(ind), size(topk), c_ptr(tl), c_ptr(sink), spec_json, c_ptr(out), c_ptr(lse), error,
               size(len(error)))
        return rc, {"out": out, "lse": lse}

    def kernel_outputs(self, spec, got):
        out, lse = as_host_array(got["out"]), as_host_array(got["lse"])
        if out.dtype == np.float32:
            out = _bf16_bits(out)
        if out.dtype != np.uint16 or lse.dtype != np.float32:
            raise TypeError(f"out/lse: the kernel returned {out.dtype}/{lse.dtype}, expected BF16 (or float32 BF16 "
                            "values)/float32")
        return {"out": TraceTensor("output", "BF16", out), "lse": TraceTensor("output", "F32", lse)}

    def shrink(self, spec, inputs):
        b, s_q = inputs["q"].shape[:2]
        for i in range(b):
            for j in range(s_q):
                if b * s_q > 1:
                    yield {**inputs, "q": inputs["q"][i:i + 1, j:j + 1], "indices": inputs["indices"][i:i + 1, j:j + 1],
                           "topk_length": inputs["topk_length"][i:i + 1]}

    def oracle(self, q, kv_cache, indices, topk_length, attn_sink, spec):
        """Generated cases without a kernel check determinism: the emulator on one thread (the mla
        area's tests check it against numpy re-formulations of FlashMLA's tests/ref.py and
        tests/quant.py, tests/python/test_mla_sparse.py)."""
        before = num_threads()
        set_num_threads(1)
        try:
            out = self.run(spec, {"q": q, "kv_cache": kv_cache, "indices": indices, "topk_length": topk_length,
                                  "attn_sink": attn_sink})
        finally:
            set_num_threads(before)
        return out["out"].array, out["lse"].array


def _bf16_bits(values: np.ndarray) -> np.ndarray:
    """BF16 bit patterns of float32 arrays holding BF16 values (exact: the low half is zero)."""
    return (np.ascontiguousarray(values, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)


def _poison_unused(kv: np.ndarray, spec: dict, ind: np.ndarray, tl: np.ndarray) -> np.ndarray:
    """FlashMLA's tests fill every token no counted valid index names with NaN: here its E4M3 bytes
    become 0x7F (NaN) and its scales NaN, so a kernel that reads an invalid slot shows it."""
    page, layout = spec["page_block_size"], sparse_kv_layout(spec["layout"])
    counted = np.arange(ind.shape[-1])[None, None, :] < tl[:, None, None]
    used = np.zeros(kv.shape[0] * page, bool)
    used[ind[counted & (ind >= 0)]] = True
    kv = kv.copy()
    row = layout["d_nope"] + 2 * layout["d_rope"] + (layout["tiles"] * 4 if layout["scale_storage"] == "fp32" else 0)
    for t in np.flatnonzero(~used):
        blk, slot = divmod(int(t), page)
        kv[blk, slot * row: slot * row + layout["d_nope"]] = 0x7F
        if layout["scale_storage"] == "fp32":
            at = slot * row + layout["d_nope"]
            kv[blk, at: at + 4 * layout["tiles"]] = np.full(layout["tiles"], np.nan, np.float32).view(np.uint8)
        else:
            at = page * row + slot * 8
            kv[blk, at: at + layout["tiles"]] = 0xFF
    assert kv.shape[1] == sparse_kv_block_bytes(spec["layout"], page)
    return kv
