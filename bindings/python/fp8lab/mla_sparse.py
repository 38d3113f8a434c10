"""Sparse MLA decode (DeepSeek-V3.2's DSA) with FlashMLA's sparse semantics, and FlashMLA's two FP8
sparse KV-cache layouts. Imported into :mod:`fp8lab.mla`.

Layouts (``layout=``; emulator/mla/sparse_kv_layout.hpp states the bytes and the sources):

- ``"v32_fp8_sparse"`` (``"v32"``): DeepSeek-V3.2, d_qk 576 / d_v 512, 656 bytes per token:
  512 E4M3 | 4 FP32 scales (one per 128) | 64 BF16 RoPE.
- ``"model1_fp8_sparse"`` (``"model1"``): d_qk = d_v = 512 (448 nope + 64 RoPE), 584 bytes per
  token laid out per block: page x (448 E4M3 | 64 BF16), then page x (7 UE8M0 scales + 1 pad),
  then zero padding to a multiple of 576 bytes.

A cache is a uint8 array ``[blocks, block_bytes]`` (:func:`sparse_kv_block_bytes`); for V32 also
FlashMLA's ``[blocks, page, 1, 656]`` view. Token index = block * page_block_size + slot.

Typical use::

    kv = sparse_kv_quantize(values, "v32")                 # values [blocks, page, 576]
    out, lse = sparse_decode(q, kv, indices, layout="v32", softmax_scale=s, attn_sink=sink)
    ref = sparse_decode_reference(q, kv, indices, layout="v32", softmax_scale=s, attn_sink=sink)
"""
from __future__ import annotations

import numpy as np

from . import _args, _core

__all__ = ["sparse_kv_layout", "sparse_kv_block_bytes", "sparse_kv_quantize", "sparse_kv_dequantize",
           "sparse_kv_unpack", "sparse_kv_pack", "sparse_decode", "sparse_decode_reference", "sparse_decode_compare"]


def sparse_kv_layout(layout: str = "v32") -> dict:
    """The layout as data: d_qk, d_nope, d_rope, d_v, tile, tiles, scale_storage, bytes_per_token,
    scale_rule (the quant scale-rule row its quantiser uses)."""
    return dict(_core.mla_sparse_kv_layout(_name(layout)))


def sparse_kv_block_bytes(layout: str = "v32", page_block_size: int = 64) -> int:
    """Bytes of one block of ``page_block_size`` tokens (MODEL1 pads each block to a multiple of 576)."""
    return int(_core.mla_sparse_kv_block_bytes(_name(layout), _pos_int(page_block_size, "page_block_size")))


def _name(layout) -> str:
    if not isinstance(layout, str):
        raise TypeError(f"layout: expected a layout name (str), got {type(layout).__name__}")
    return layout


def _pos_int(v, name: str) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {type(v).__name__}")
    if int(v) < 1:
        raise ValueError(f"{name}: must be at least 1, got {int(v)}")
    return int(v)


def _cache(kv_cache, layout: str, page_block_size) -> tuple[np.ndarray, int]:
    """The cache as uint8 [blocks, block_bytes] and its page_block_size; errors name kv_cache."""
    info = sparse_kv_layout(layout)
    a = np.asarray(kv_cache)
    if a.dtype == np.int8 or (a.dtype.itemsize == 1 and a.dtype.name.startswith("float8")):
        a = a.view(np.uint8)  # FlashMLA takes fp8_e4m3fn, int8 or uint8 views of the same bytes
    if a.dtype != np.uint8:
        raise TypeError(f"kv_cache: expected uint8 bytes (or int8 / float8 views), got dtype {a.dtype}")
    if a.ndim == 4:
        if a.shape[2] != 1:
            raise ValueError(f"kv_cache: h_kv (dimension 2) must be 1, got {a.shape[2]}")
        if a.shape[3] != info["bytes_per_token"]:
            raise ValueError(f"kv_cache: {a.shape[3]} bytes per token, but layout {info['name']} has "
                             f"{info['bytes_per_token']}")
        page = a.shape[1]
        if page_block_size is not None and int(page_block_size) != page:
            raise ValueError(f"page_block_size: {page_block_size} disagrees with kv_cache's shape {a.shape}")
        need = sparse_kv_block_bytes(layout, page)
        if page * info["bytes_per_token"] != need:
            raise ValueError(f"kv_cache: layout {info['name']} pads each block of {page} tokens to {need} bytes; pass "
                             f"the bytes as [blocks, {need}] (sparse_kv_quantize's output)")
        return np.ascontiguousarray(a.reshape(a.shape[0], need)), page
    if a.ndim != 2:
        raise ValueError(f"kv_cache: expected [blocks, block_bytes] (or V32's [blocks, page, 1, 656]), got shape {a.shape}")
    page = 64 if page_block_size is None else _pos_int(page_block_size, "page_block_size")
    need = sparse_kv_block_bytes(layout, page)
    if a.shape[1] != need:
        raise ValueError(f"kv_cache: blocks of {a.shape[1]} bytes, but layout {info['name']} with page_block_size "
                         f"{page} needs {need} ({info['bytes_per_token']} bytes per token)")
    return np.ascontiguousarray(a), page


def sparse_kv_quantize(values, layout: str = "v32") -> np.ndarray:
    """FlashMLA's quantize_k_cache: values float32 [blocks, page_block_size, d_qk] (rounded to BF16
    first) -> uint8 [blocks, block_bytes]. Per tile s = 2^ceil(log2(max(amax/448, 1e-4))),
    elements E4M3(x / s). Non-finite values are an error naming the element."""
    v = _args.native_order(np.asarray(values))
    if v.dtype != np.float32:
        raise TypeError(f"values: expected float32, got dtype {v.dtype}")
    return _core.mla_sparse_kv_quantize(np.ascontiguousarray(v), _name(layout))


def sparse_kv_dequantize(kv_cache, layout: str = "v32", page_block_size: int | None = None,
                         order: str = "sm90") -> np.ndarray:
    """The values a kernel attends to, float32 [blocks, page, d_qk] (BF16 values). order "sm90":
    FlashMLA's SM90 kernel, bf16(e4m3 * bf16(scale)); "reference": tests/quant.py (V32: the FP32
    product rounded once; MODEL1 as sm90). NaN scales or elements give NaN (no error: FlashMLA's
    tests fill unused slots with NaN)."""
    a, page = _cache(kv_cache, layout, page_block_size)
    return _core.mla_sparse_kv_dequantize(a, _name(layout), page, order)


def sparse_kv_unpack(kv_cache, layout: str = "v32", page_block_size: int | None = None) -> dict:
    """The fields of a cache: nope uint8 [blocks, page, d_nope] (E4M3 bits), scales [blocks, page,
    tiles] (float32 for V32, uint8 UE8M0 bytes for MODEL1), rope uint16 [blocks, page, 64] (BF16
    bits). Pad bytes are not read."""
    a, page = _cache(kv_cache, layout, page_block_size)
    return dict(_core.mla_sparse_kv_unpack(a, _name(layout), page))


def sparse_kv_pack(fields: dict, layout: str = "v32") -> np.ndarray:
    """The inverse of :func:`sparse_kv_unpack` (pad bytes 0): ``pack(unpack(b)) == b`` byte for byte
    for every cache with valid scales and zero pad bytes. Scales must be positive and finite (a
    NaN scale, or UE8M0 byte 0xFF, is an error naming the element)."""
    if not isinstance(fields, dict):
        raise TypeError(f"fields: expected a dict with nope, scales, rope, got {type(fields).__name__}")
    missing = {"nope", "scales", "rope"} - set(fields)
    if missing:
        raise ValueError(f"fields: missing {sorted(missing)}")
    return _core.mla_sparse_kv_pack(fields["nope"], fields["scales"], fields["rope"], _name(layout))


def _decode_args(q, kv_cache, indices, layout, page_block_size, softmax_scale, topk_length, attn_sink,
                 num_splits, decode_p, dequant):
    info = sparse_kv_layout(layout)
    qa = _args.native_order(np.asarray(q))
    if qa.dtype != np.float32:
        raise TypeError(f"q: expected float32 (BF16 values, as FlashMLA's bf16 q), got dtype {qa.dtype}")
    if qa.ndim != 4 or qa.shape[3] != info["d_qk"]:
        raise ValueError(f"q: expected [batch, s_q, heads, {info['d_qk']}] for layout {info['name']}, got shape {qa.shape}")
    kv, page = _cache(kv_cache, layout, page_block_size)
    ind = np.asarray(indices)
    if ind.dtype.kind not in "iu":
        raise TypeError(f"indices: expected an integer array, got dtype {ind.dtype}")
    if ind.ndim != 3 or ind.shape[:2] != qa.shape[:2]:
        raise ValueError(f"indices: expected [batch, s_q, topk] = [{qa.shape[0]}, {qa.shape[1]}, topk], got shape {ind.shape}")
    if ind.size and (ind.min() < -2**31 or ind.max() >= 2**31):
        raise ValueError("indices: values must fit int32")
    tl = None
    if topk_length is not None:
        tl = np.asarray(topk_length)
        if tl.dtype.kind not in "iu":
            raise TypeError(f"topk_length: expected an integer array, got dtype {tl.dtype}")
        if tl.shape != (qa.shape[0],):
            raise ValueError(f"topk_length: expected shape [batch] = ({qa.shape[0]},) (FlashMLA: one length per "
                             f"sequence), got {tl.shape}")
        if tl.size and (tl.min() < -2**31 or tl.max() >= 2**31):
            raise ValueError("topk_length: values must fit int32")
        tl = np.ascontiguousarray(tl, dtype=np.int32)
    sink = None
    if attn_sink is not None:
        sink = _args.native_order(np.asarray(attn_sink))
        if sink.dtype != np.float32:
            raise TypeError(f"attn_sink: expected float32 [heads], got dtype {sink.dtype}")
        if sink.shape != (qa.shape[2],):
            raise ValueError(f"attn_sink: expected shape [heads] = ({qa.shape[2]},), got {sink.shape}")
        sink = np.ascontiguousarray(sink)
    if softmax_scale is None:
        softmax_scale = float(info["d_qk"]) ** -0.5  # FlashMLA's default: q.shape[-1] ** -0.5
    if isinstance(softmax_scale, (bool, np.bool_)) or not isinstance(softmax_scale, (int, float, np.floating, np.integer)):
        raise TypeError(f"softmax_scale: expected a number, got {type(softmax_scale).__name__}")
    if decode_p not in ("bf16", "fp32"):
        raise ValueError(f"decode_p: expected 'bf16' (FlashMLA) or 'fp32', got {decode_p!r}")
    if dequant not in ("sm90", "reference"):
        raise ValueError(f"dequant: expected 'sm90' or 'reference', got {dequant!r}")
    return (np.ascontiguousarray(qa), kv, np.ascontiguousarray(ind, dtype=np.int32), _name(layout), page,
            float(softmax_scale), tl, sink, _pos_int(num_splits, "num_splits"), decode_p, dequant)


def sparse_decode(q, kv_cache, indices, *, layout: str = "v32", softmax_scale: float | None = None,
                  topk_length=None, attn_sink=None, page_block_size: int | None = None, num_splits: int = 1,
                  decode_p: str = "bf16", dequant: str = "sm90") -> tuple[np.ndarray, np.ndarray]:
    """Sparse MLA decode as FlashMLA's ``flash_mla_with_kvcache(..., indices=...)``
    (emulator/mla/sparse_decode.hpp states the arithmetic).

    q float32 [batch, s_q, heads, d_qk]; kv_cache the layout's bytes; indices int [batch, s_q, topk]
    token indices (block * page + slot), -1 = invalid; topk_length int [batch] (only the first
    topk_length[b] indices count; later entries are ignored); attn_sink float32 [heads]
    (out * 1/(1 + exp(sink - lse)); -inf none, +inf gives 0); softmax_scale default d_qk^-0.5
    (FlashMLA's default; DeepSeek-V3.2 passes its own).
    Returns (out float32 [batch, s_q, heads, 512] holding BF16 values, lse float32 [batch, heads,
    s_q] natural log, without the sink). A query with no counted valid index: out 0, lse +inf.
    Errors name the argument: indices outside [0, blocks * page) other than -1, topk larger than the
    cache's context, topk_length outside [0, topk], a layout/shape/dtype mismatch, NaN in attn_sink,
    a selected token that dequantises to NaN/Inf (NaN scale)."""
    return tuple(_core.mla_sparse_decode(*_decode_args(q, kv_cache, indices, layout, page_block_size, softmax_scale,
                                                       topk_length, attn_sink, num_splits, decode_p, dequant)))


def sparse_decode_reference(q, kv_cache, indices, *, layout: str = "v32", softmax_scale: float | None = None,
                            topk_length=None, attn_sink=None, page_block_size: int | None = None,
                            num_splits: int = 1, decode_p: str = "bf16", dequant: str = "sm90",
                            scope: str = "any_kernel") -> dict:
    """The exact attention (float64) of the same inputs and its certified bound:
    dict(out, out_bound [batch, s_q, heads, 512], lse, lse_bound [batch, heads, s_q]). scope
    "any_kernel": any kernel of this algorithm (any summation order, truncating FP32 steps, exp
    within 2^-21, a log-domain sink); "emulator": :func:`sparse_decode` exactly as written."""
    if scope not in ("any_kernel", "emulator"):
        raise ValueError(f"scope: expected 'any_kernel' or 'emulator', got {scope!r}")
    return dict(_core.mla_sparse_decode_reference(
        *_decode_args(q, kv_cache, indices, layout, page_block_size, softmax_scale, topk_length, attn_sink,
                      num_splits, decode_p, dequant), scope))


def sparse_decode_compare(out, lse, q, kv_cache, indices, **kw) -> dict:
    """Judges a sparse-decode result (a kernel's or this emulator's) against the exact attention
    with the certified bound: {"ok", "max_out_ratio", "max_lse_ratio", "out_violations",
    "lse_violations"} (ratios observed / bound; lse +inf must match exactly)."""
    ref = sparse_decode_reference(q, kv_cache, indices, **kw)
    o = np.asarray(out, dtype=np.float64)
    lv = np.asarray(lse, dtype=np.float64)
    if o.shape != ref["out"].shape:
        raise ValueError(f"out: expected shape {ref['out'].shape}, got {o.shape}")
    if lv.shape != ref["lse"].shape:
        raise ValueError(f"lse: expected shape {ref['lse'].shape}, got {lv.shape}")
    with np.errstate(invalid="ignore", divide="ignore"):
        eo = np.abs(o - ref["out"])
        ro = np.where(ref["out_bound"] > 0, eo / ref["out_bound"], np.where(eo == 0, 0.0, np.inf))
        inf_ref = np.isinf(ref["lse"])
        el = np.where(inf_ref, np.where(lv == ref["lse"], 0.0, np.inf), np.abs(lv - ref["lse"]))
        rl = np.where(inf_ref, el, el / np.where(ref["lse_bound"] > 0, ref["lse_bound"], 1.0))
    ro = np.where(np.isnan(ro), np.inf, ro)
    rl = np.where(np.isnan(rl), np.inf, rl)
    return {"ok": bool((ro <= 1).all() and (rl <= 1).all()),
            "max_out_ratio": float(ro.max(initial=0.0)), "max_lse_ratio": float(rl.max(initial=0.0)),
            "out_violations": int((ro > 1).sum()), "lse_violations": int((rl > 1).sum())}
