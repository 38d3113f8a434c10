"""Multi-head Latent Attention (DeepSeek-V3): prefill in the naive and the weight-absorbed form,
a FlashMLA-layout paged latent cache (BF16 or FP8), split-KV decode, and certified bounds.

Everything that changes bits is a field of :class:`MlaSpec` (defaults: DeepSeek-V3). The arithmetic
each function pins is written in the C++ headers (emulator/mla/forward.hpp, decode.hpp); this module
converts and validates, then calls ``fp8lab._core``.

Typical use::

    spec = MlaSpec(hidden=256, heads=8)            # any dims; defaults are DeepSeek-V3's
    w = init_weights(spec, seed=0)
    r = forward(x, w, spec, form="absorbed")      # r["out"], r["latent"], r["k_pe"], r["q_absorbed"]
    cache, table, lens = build_cache([r["latent"]], [r["k_pe"]], spec)
    out, lse = decode(r["q_absorbed"][-1:], cache, table, lens, spec)
    verdict = compare(out, lse, r["q_absorbed"][-1:], cache, table, lens, spec)
"""
from __future__ import annotations

import dataclasses
import json
import struct
from pathlib import Path

import numpy as np

from . import _core

#: Python type of each schema kind (fp8lab._core.spec_fields).
_PY_TYPES = {"int": int, "number": float, "bool": bool, "string": str, "enum": str}


def _spec_class(name: str, spec: str, doc: str, nested: dict, methods: dict):
    """A frozen dataclass whose fields, types and defaults are the emulator's declared schema
    (emulator/mla/mla_spec.cpp, ``_core.spec_fields(spec)``): nothing here restates them."""
    fields = []
    for f in _core.spec_fields(spec):
        if f["kind"] == "object":
            sub = nested[f["key"]]
            fields.append((f["key"], sub, dataclasses.field(default_factory=sub)))
        else:
            fields.append((f["key"], _PY_TYPES[f["kind"]], dataclasses.field(default=f["default"])))
    cls = dataclasses.make_dataclass(name, fields, frozen=True, namespace=methods)
    cls.__module__, cls.__doc__ = __name__, doc
    return cls


Yarn = _spec_class("Yarn", "mla.yarn", """YaRN RoPE scaling as DeepSeek-V3 ``precompute_freqs_cis`` applies
it (active when ``max_seq_len > original_seq_len``). Fields and defaults: ``MlaSpec.yarn``'s
schema (``fp8lab._core.spec_fields("mla.yarn")``).""", {}, {})


def _to_json(self) -> str:
    """Canonical JSON (keys sorted), read strictly and validated by the emulator's schema."""
    return _core.mla_spec_json(_spec_dict(self))


def _from_json(cls, text: str):
    """The spec of JSON text (any subset of fields; strict types, unknown keys are errors)."""
    return _from_dict(_core.mla_spec(text))


def _replace(self, **changes):
    return dataclasses.replace(self, **changes)


MlaSpec = _spec_class("MlaSpec", "mla", """The numeric contract of one MLA layer (defaults:
DeepSeek-V3). Serialisable: ``to_json`` / ``from_json``. Its fields, their kinds, choices and
defaults are the emulator's schema (emulator/mla/mla_spec.hpp says what each means;
``fp8lab._core.spec_fields("mla")`` lists them).

rope_layout: "interleaved" (DeepSeek reference, adjacent pairs) or "half_split" (HF rotate_half).
softmax_scale: "deepseek" ((nope+rope)^-0.5 * mscale^2), "flashmla" ((kv_lora+rope)^-0.5,
FlashMLA's default - wrong for DeepSeek-V3) or a positive number as text.
wq_a, wq_b, wkv_a, wkv_b, wo, attn, decode_p: "fp32" or "bf16" arithmetic of each projection, of
the attention einsums, and of P before P.V in decode; the projections wq_a, wq_b, wkv_a and wo
also take "fp8" (the GEMM recipe ``deepseek_v3_fp8_linear``: DeepSeek-V3's FP8 linear, BF16
output) and "bf16_tc" (BF16 through the Hopper BF16 wgmma model). wkv_b also takes "fp8": the FP8
checkpoint weights as DeepSeek-V3 runs them (naive: that FP8 linear; absorbed: the dequantised
weights in the attention format; both certified against the exact attention of the dequantised
weights; the weights are ``weights['wkv_b']`` quantised 128x128 with the "deepseek" rule, or a
checkpoint's ``wkv_b_e4m3`` + ``wkv_b_scale_inv`` when given). cache: "bf16" or "fp8" (FlashMLA).
attn_ops: the op sequence of the attention einsums. "fused" (fp8lab's: one BF16 rounding of
fl32(q.k * scale) per score, the absorbed score as one dot) or "deepseek_reference"
(DeepSeek-V3 inference/model.py in BF16: bf16(bf16(q.k) * scale), absorbed
bf16(bf16(bf16(q_abs.c) + bf16(q_pe.k_pe)) * scale); needs attn="bf16" and BF16 inputs;
emulator/mla/forward.hpp step 2r says what is pinned and what is bounded).
""", {"yarn": Yarn}, {"to_json": _to_json, "from_json": classmethod(_from_json), "replace": _replace})


def _spec_dict(spec) -> dict:
    """An MlaSpec (or a dict of its fields, ``yarn`` a Yarn or a dict) as the dict the schema reads."""
    d = dataclasses.asdict(spec) if isinstance(spec, MlaSpec) else dict(spec)
    if isinstance(d.get("yarn"), Yarn):
        d["yarn"] = dataclasses.asdict(d["yarn"])
    if isinstance(d.get("softmax_scale"), (int, float)) and not isinstance(d["softmax_scale"], bool):
        d["softmax_scale"] = str(d["softmax_scale"])  # a number is written as text ("0.125")
    return d


def _from_dict(d: dict) -> MlaSpec:
    return MlaSpec(**{**d, "yarn": Yarn(**d["yarn"])})


def _spec_json(spec) -> str:
    if isinstance(spec, MlaSpec):
        return spec.to_json()
    if isinstance(spec, str):
        return _core.mla_spec_json(spec)
    if isinstance(spec, dict):
        return _core.mla_spec_json(_spec_dict(spec))
    raise TypeError(f"spec: expected an MlaSpec, a dict of its fields or its JSON, got {type(spec).__name__}")


def _spec(spec) -> MlaSpec:
    return spec if isinstance(spec, MlaSpec) else MlaSpec.from_json(_spec_json(spec))


def _f32(a, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype.kind != "f":
        raise TypeError(f"{name}: expected a float array, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def kv_bytes_per_token(spec=None) -> dict:
    """KV-cache bytes per token and layer: MHA with the same dims (BF16), MLA BF16, MLA FP8."""
    return dict(_core.mla_kv_bytes(_spec_json(spec or MlaSpec())))


def softmax_scale(spec=None, which: str | None = None) -> float:
    """The FP32 softmax scale of ``spec`` (or of ``which``: "deepseek", "flashmla", a number)."""
    return float(_core.mla_softmax_scale(_spec_json(spec or MlaSpec()), which or ""))


def init_weights(spec, seed: int) -> dict:
    """Deterministic weights (counter-based RNG; uniform with std fan_in^-1/2, rounded to BF16)."""
    return dict(_core.mla_init_weights(_spec_json(spec), int(seed)))


def weight_cache_info() -> dict:
    """What the cache of quantised FP8 projection weights holds (entries, bytes), its limits
    (max_entries, max_bytes: least recently used evicted first) and how often it served a call
    (hits) or quantised (misses). Entries are keyed by the weights' values (a fingerprint taken at
    every call), shape and recipe, so writing into a weight array between calls is seen by the next
    call (emulator/mla/weight_cache.hpp)."""
    return dict(_core.mla_weight_cache_info())


def clear_weight_cache() -> None:
    """Drops every cached quantised weight tensor (the hit/miss counters stay)."""
    _core.mla_clear_weight_cache()


def _prefix(prefix):
    if prefix is None:
        return None, None
    if not isinstance(prefix, dict) or "latent" not in prefix or "k_pe" not in prefix:
        raise TypeError("prefix: expected a dict with 'latent' [P, kv_lora] and 'k_pe' [P, rope] "
                        "(e.g. an earlier forward's result)")
    return _f32(prefix["latent"], "prefix['latent']"), _f32(prefix["k_pe"], "prefix['k_pe']")


def forward(x, weights: dict, spec, form: str = "absorbed", start_pos: int = 0, prefix: dict | None = None) -> dict:
    """Prefill of x [tokens, hidden] at positions start_pos.. : causal attention over ``prefix``'s
    keys (latent and k_pe of earlier positions, e.g. an earlier forward's result; a chunked
    prefill gives the same bits as one call) and these tokens. Returns out [T, hidden], attn
    [T, heads, v] and the intermediates q_nope, q_pe, latent [T, kv_lora], k_pe [T, rope],
    q_absorbed [T, heads, kv_lora+rope] (decode's query).

    ``weights`` (init_weights' dict, or a checkpoint's) is read in place, not copied and not
    snapshotted: float32 C-contiguous arrays are viewed for the duration of the call (other dtypes
    and layouts are converted to such a copy first), every call checks their sizes and that every
    value is finite (ValueError naming the tensor and element), and a write into an array between
    calls is what the next call computes with. (FP8 projections keep their quantised weights
    between calls, keyed by a fingerprint of the values taken at every call: ``weight_cache_info``.) Do not write into them while a call runs (it runs
    without the GIL)."""
    if form not in ("naive", "absorbed"):
        raise ValueError(f"form: expected 'naive' or 'absorbed', got {form!r}")
    if not isinstance(weights, dict):
        raise TypeError(f"weights: expected a dict of arrays, got {type(weights).__name__}")
    if int(start_pos) < 0:
        raise ValueError(f"start_pos: must be >= 0, got {start_pos}")
    w = {k: _f32(v, f"weights[{k!r}]") for k, v in weights.items()}
    pl, pk = _prefix(prefix)
    return dict(_core.mla_forward(_f32(x, "x"), w, _spec_json(spec), form, int(start_pos), pl, pk))


def compare_forms(x, weights: dict, spec, start_pos: int = 0, prefix: dict | None = None) -> dict:
    """Absorbed vs naive attention on the same projections, with the certified bounds of both
    against the exact attention. Returns a dict with 'verdict' (fp8lab verdict vocabulary),
    the outputs, exact values, bounds and max_observed_over_bound."""
    w = {k: _f32(v, f"weights[{k!r}]") for k, v in weights.items()}
    pl, pk = _prefix(prefix)
    d = dict(_core.mla_compare_forms(_f32(x, "x"), w, _spec_json(spec), int(start_pos), pl, pk))
    d["verdict"] = json.loads(d.pop("verdict_json"))
    return d


def wkv_b_naive(latent, weights: dict, spec) -> tuple[np.ndarray, np.ndarray]:
    """The naive form's per-head keys|values [T, heads, nope+v] of ``latent`` [T, kv_lora] under
    ``spec.wkv_b`` (with "fp8": 1x128 "deepseek" act_quant + the promoted FP8 GEMM, BF16 out), and
    a certified per-element bound on their distance from latent @ W.T with W the exact (dequantised)
    weights."""
    if not isinstance(weights, dict):
        raise TypeError(f"weights: expected a dict of arrays, got {type(weights).__name__}")
    w = {k: _f32(v, f"weights[{k!r}]") for k, v in weights.items()}
    kv, bound = _core.mla_wkv_b_naive(_f32(latent, "latent"), w, _spec_json(spec))
    return kv, bound


def build_cache(latents, k_pe, spec, page: int | None = None, block_order=None):
    """Paged cache in FlashMLA's layout from per-sequence latents and k_pe.

    latents / k_pe: a list of [L_b, kv_lora] / [L_b, rope] arrays (one per sequence; L_b may be
    0), or one 2-D array each (a single sequence). page overrides spec.page. block_order: optional
    permutation of physical block indices (logical block i is stored at block_order[i]).
    Returns (cache, block_table int32 [batch, max_blocks], seqlens int32 [batch]); cache is uint16
    BF16 bits [blocks, page, 1, kv_lora+rope] or uint8 bytes [blocks, page, 1, 656] for FP8.
    """
    s = _spec(spec)
    if page is not None:
        if int(page) <= 0:
            raise ValueError(f"page: must be positive, got {page}")
        s = s.replace(page=int(page))
    if isinstance(latents, np.ndarray) and latents.ndim == 2:
        latents, k_pe = [latents], [k_pe]
    if not isinstance(latents, (list, tuple)) or not isinstance(k_pe, (list, tuple)):
        raise TypeError("latents, k_pe: expected lists of per-sequence arrays (or one 2-D array each)")
    if len(latents) != len(k_pe):
        raise ValueError(f"k_pe: {len(k_pe)} sequences, but latents has {len(latents)}")
    lat = [np.asarray(a, dtype=np.float32).reshape(-1, s.kv_lora) if np.asarray(a).size == 0 else _f32(a, "latents")
           for a in latents]
    kpe = [np.asarray(a, dtype=np.float32).reshape(-1, s.rope) if np.asarray(a).size == 0 else _f32(a, "k_pe")
           for a in k_pe]
    for b, (a, r) in enumerate(zip(lat, kpe)):
        if a.ndim != 2 or a.shape[1] != s.kv_lora:
            raise ValueError(f"latents: sequence {b} has shape {a.shape}, expected [L, {s.kv_lora}]")
        if r.ndim != 2 or r.shape != (a.shape[0], s.rope):
            raise ValueError(f"k_pe: sequence {b} has shape {r.shape}, expected [{a.shape[0]}, {s.rope}]")
    seqlens = np.array([a.shape[0] for a in lat], dtype=np.int32)
    all_lat = np.concatenate(lat) if lat else np.zeros((0, s.kv_lora), np.float32)
    all_kpe = np.concatenate(kpe) if kpe else np.zeros((0, s.rope), np.float32)
    order = None if block_order is None else np.ascontiguousarray(block_order, dtype=np.int32)
    return _core.mla_build_cache(np.ascontiguousarray(all_lat), np.ascontiguousarray(all_kpe), seqlens,
                                 s.to_json(), order)


def _causal(causal) -> bool:
    if not isinstance(causal, (bool, np.bool_)):
        raise TypeError(f"causal: expected a bool, got {type(causal).__name__}")
    return bool(causal)


def decode(q, cache, block_table, seqlens, spec, *, causal: bool = True):
    """Split-KV decode (emulator/mla/decode.hpp states the split, mask, order and formats).

    q: float32 [batch, heads, kv_lora+rope] (one query token per sequence) or FlashMLA's
    [batch, s_q, heads, kv_lora+rope] with s_q >= 1 query tokens per sequence (multi-token
    prediction / speculative decoding: the last s_q of the sequence's seqlens[b] cached tokens).
    causal (FlashMLA's flag; default True here, False in flash_mla_with_kvcache): query i (0-based)
    sees keys [0, seqlens[b] - s_q + i]; False: every query sees all seqlens[b] keys. Split
    boundaries come from seqlens[b] alone (not from s_q or the mask), as FlashMLA's scheduler's.
    Returns (out, lse): out float32 holding BF16 values, [batch, heads, kv_lora] for 3-D q or
    [batch, s_q, heads, kv_lora] for 4-D q; lse float32 natural log, [batch, heads] or
    [batch, heads, s_q] (FlashMLA's layouts). A query that sees no key (empty sequence, or causal
    with seqlens[b] < s_q - i): out 0, lse +inf."""
    return _core.mla_decode(_f32(q, "q"), cache, _i32(block_table, "block_table"), _i32(seqlens, "seqlens"),
                            _spec_json(spec), _causal(causal))


def decode_reference(q, cache, block_table, seqlens, spec, scale_of: str | None = None,
                     scope: str = "any_kernel", *, causal: bool = True) -> dict:
    """Exact attention (float64) of the same inputs and certified bounds: dict(out, lse, out_bound,
    lse_bound): [batch, heads, kv_lora] and [batch, heads] for one query (3-D q, or 4-D with
    s_q = 1, as before), ``decode``'s [batch, s_q, heads, kv_lora] and [batch, heads, s_q] for
    s_q > 1. Each query's exact attention
    and bound use its own visible keys (causal as in ``decode``) and the split plan of the full
    length. scope "any_kernel" (default): the bound of any kernel of this algorithm (any
    summation order, truncating FP32 steps, exp within 2^-21); "emulator": the tighter bound of
    ``decode`` exactly as written. scale_of picks another softmax scale for the exact side."""
    return dict(_core.mla_decode_reference(_f32(q, "q"), cache, _i32(block_table, "block_table"),
                                           _i32(seqlens, "seqlens"), _spec_json(spec), scale_of or "", scope,
                                           _causal(causal)))


def compare(out, lse, q, cache, block_table, seqlens, spec, scope: str = "any_kernel", *,
            causal: bool = True) -> dict:
    """Judges a decode result (this emulator's or a kernel's: out [b, h, kv_lora], lse [b, h] for
    one query, any shape of that size; out [b, s_q, h, kv_lora], lse [b, h, s_q] exactly for
    s_q > 1, FlashMLA's layouts) against the
    exact attention with the certified bound of ``spec`` (scope and causal as in
    decode_reference). Returns {"out": verdict, "lse": verdict, "ok": bool, "max_out_ratio",
    "max_lse_ratio", "out_summary", "lse_summary"}."""
    d = dict(_core.mla_compare_decode(_f32(out, "out"), _f32(lse, "lse"), _f32(q, "q"), cache,
                                      _i32(block_table, "block_table"), _i32(seqlens, "seqlens"), _spec_json(spec),
                                      scope, _causal(causal)))
    res = {"out": json.loads(d["out_json"]), "lse": json.loads(d["lse_json"]),
           "out_summary": d["out_summary"], "lse_summary": d["lse_summary"],
           "max_out_ratio": d["max_out_ratio"], "max_lse_ratio": d["max_lse_ratio"]}
    res["ok"] = res["out"]["kind"] != "violation" and res["lse"]["kind"] != "violation"
    return res


def _i32(a, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected an integer array, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.int32)


def report_numbers(tokens: int = 256, heads: int = 16, hidden: int = 512, seed: int = 11) -> dict:
    """The numbers the report quotes, on DeepSeek-V3 cache dims (kv_lora 512, rope 64, nope 128,
    v 128, q_lora 1536) with a reduced hidden size and head count so it runs in seconds:
    KV bytes per token (MHA vs MLA BF16 vs MLA FP8, full DeepSeek-V3 dims), the attention-output
    error of the FP8 latent cache vs the BF16 cache (decode of the last token over ``tokens``
    cached tokens, latents and queries from the emulated projections of deterministic weights),
    and the absorbed-vs-naive discrepancy of the prefill (first 16 tokens) with its bound ratio, with
    wkv_b in BF16 and as an FP8 checkpoint (``wkv_b="fp8"``)."""
    spec = MlaSpec(hidden=int(hidden), heads=int(heads))
    w = init_weights(spec, seed)
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3 ** 0.5, 3 ** 0.5, (int(tokens), spec.hidden)).astype(np.float32)
    r = forward(x, w, spec, "absorbed")
    q = r["q_absorbed"][-1:]
    outs = {}
    for cache in ("bf16", "fp8"):
        s = spec.replace(cache=cache)
        c, table, lens = build_cache([r["latent"]], [r["k_pe"]], s)
        outs[cache] = decode(q, c, table, lens, s)
    o8, o16 = outs["fp8"][0].astype(np.float64), outs["bf16"][0].astype(np.float64)
    forms = compare_forms(x[:16], w, spec)
    forms8 = compare_forms(x[:16], w, spec.replace(wkv_b="fp8"))
    return {
        "kv_bytes_per_token": kv_bytes_per_token(MlaSpec()),
        "fp8_vs_bf16_cache": {
            "tokens": int(tokens), "heads": int(heads),
            "normwise_rel_error": float(np.linalg.norm(o8 - o16) / np.linalg.norm(o16)),
            "max_abs_over_max_out": float(np.abs(o8 - o16).max() / np.abs(o16).max()),
            "max_lse_diff": float(np.abs(outs["fp8"][1] - outs["bf16"][1]).max()),
        },
        "absorbed_vs_naive": {
            "verdict": forms["verdict"]["kind"],
            "max_abs_difference": forms["max_abs_difference"],
            "max_rel_difference": forms["max_rel_difference"],
            "max_observed_over_bound": forms["max_observed_over_bound"],
        },
        # wkv_b as DeepSeek-V3 runs an FP8 checkpoint: naive through the FP8 linear, absorbed on
        # the dequantised weights.
        "absorbed_vs_naive_fp8_wkv_b": {
            "verdict": forms8["verdict"]["kind"],
            "max_abs_difference": forms8["max_abs_difference"],
            "max_rel_difference": forms8["max_rel_difference"],
            "max_observed_over_bound": forms8["max_observed_over_bound"],
        },
    }


# --- DeepSeek-V3 checkpoint shards ------------------------------------------------------------

#: fp8lab weight name -> HF DeepSeek-V3 tensor name under model.layers.{i}.self_attn.
HF_NAMES = {
    "wq_a": "q_a_proj.weight",
    "q_norm": "q_a_layernorm.weight",
    "wq_b": "q_b_proj.weight",
    "wq": "q_proj.weight",
    "wkv_a": "kv_a_proj_with_mqa.weight",
    "kv_norm": "kv_a_layernorm.weight",
    "wkv_b": "kv_b_proj.weight",
    "wo": "o_proj.weight",
}

_ST_DTYPES = {"F32": ("<f4", None), "F16": ("<f2", None), "BF16": ("<u2", "bf16"), "F8_E4M3": ("u1", "e4m3")}


def read_safetensors(path) -> tuple[dict, dict]:
    """Reads a safetensors file strictly (header length, JSON header, offsets inside the data) into
    ({name: float32 array}, {name: safetensors dtype}); BF16 and F8_E4M3 are decoded exactly with
    fp8lab.decode. Other dtypes raise ValueError naming the tensor. (The safetensors package's numpy
    loader knows neither BF16 nor F8_E4M3.)"""
    from .formats import decode as _decode

    data = Path(path).read_bytes()
    if len(data) < 8:
        raise ValueError(f"path: {path} is too short to be a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise ValueError(f"path: {path}: header length {n} runs past the end of the file")
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out, dtypes = {}, {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = info.get("dtype")
        if dt not in _ST_DTYPES:
            raise ValueError(f"{path}: tensor {name!r} has dtype {dt}, expected one of {sorted(_ST_DTYPES)}")
        np_dt, fmt = _ST_DTYPES[dt]
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        count = int(np.prod(shape)) if shape else 1
        if not (0 <= begin <= end <= len(body)) or end - begin != count * np.dtype(np_dt).itemsize:
            raise ValueError(f"{path}: tensor {name!r} has data_offsets {begin, end} inconsistent with shape {shape}")
        raw = np.frombuffer(body[begin:end], dtype=np_dt).reshape(shape)
        out[name] = (raw.astype(np.float32) if fmt is None
                     else _decode(np.ascontiguousarray(raw.astype(np.uint8 if fmt == "e4m3" else np.uint16)), fmt)
                     .astype(np.float32))
        dtypes[name] = dt
    return out, dtypes


def dequantize_block_fp8(weight: np.ndarray, scale_inv: np.ndarray, block: int = 128) -> np.ndarray:
    """W[r, c] = e4m3[r, c] * weight_scale_inv[r // 128, c // 128] in float32 (DeepSeek-V3
    inference/kernel.py weight_dequant; despite its name the stored scale is the multiplier)."""
    rows, cols = weight.shape
    gr, gc = -(-rows // block), -(-cols // block)
    if scale_inv.shape != (gr, gc):
        raise ValueError(f"weight_scale_inv: expected shape {(gr, gc)} for a {weight.shape} weight, got {scale_inv.shape}")
    w = np.asarray(weight).astype(np.float32, copy=False)
    s = np.asarray(scale_inv).astype(np.float32, copy=False)
    out = np.empty((rows, cols), np.float32)
    # One band of `block` rows at a time, its row of scales repeated along the columns only: the
    # same float32 products as multiplying by the full repeated scale array, without building it.
    for i in range(gr):
        r0, r1 = i * block, min(rows, (i + 1) * block)
        np.multiply(w[r0:r1], np.repeat(s[i], block)[:cols], out=out[r0:r1])
    return out


def load_deepseek_shard(paths, layer: int, spec=None, fp8_wkv_b: bool = False) -> dict:
    """Attention weights of one layer from DeepSeek-V3 safetensors shard(s): the HF checkpoint's
    names (model.layers.{i}.self_attn.q_a_proj.weight + .weight_scale_inv), or those of the
    reference's inference/convert.py (layers.{i}.attn.wq_a.weight + .scale, model-parallel 1).
    FP8 weights with 128x128 scales are dequantised, BF16/F32 tensors decoded exactly. Shapes are
    checked against ``spec`` (default: DeepSeek-V3). Returns the weights dict ``forward`` takes.
    With ``fp8_wkv_b`` and an FP8 wkv_b in the shard, the dict also holds its E4M3 elements
    ('wkv_b_e4m3', float32 values) and block multipliers ('wkv_b_scale_inv'), which a spec with
    wkv_b="fp8" then uses as they are (no re-quantisation of the dequantised weights)."""
    s = _spec(spec or MlaSpec())
    if isinstance(paths, (str, Path)):
        paths = [paths]
    tensors, dtypes = {}, {}
    for p in paths:
        t, d = read_safetensors(p)
        tensors.update(t)
        dtypes.update(d)
    hf_prefix = f"model.layers.{int(layer)}.self_attn."
    converted = not any(k.startswith(hf_prefix) for k in tensors)
    prefix = f"layers.{int(layer)}.attn." if converted else hf_prefix
    wanted = ["wkv_a", "kv_norm", "wkv_b", "wo"] + (["wq_a", "q_norm", "wq_b"] if s.q_lora > 0 else ["wq"])
    qk = s.nope + s.rope
    shapes = {"wq_a": (s.q_lora, s.hidden), "q_norm": (s.q_lora,), "wq_b": (s.heads * qk, s.q_lora),
              "wq": (s.heads * qk, s.hidden), "wkv_a": (s.kv_lora + s.rope, s.hidden), "kv_norm": (s.kv_lora,),
              "wkv_b": (s.heads * (s.nope + s.v), s.kv_lora), "wo": (s.hidden, s.heads * s.v)}
    weights = {}
    for key in wanted:
        name = prefix + (key + ".weight" if converted else HF_NAMES[key])
        if name not in tensors:
            raise ValueError(f"paths: tensor {name!r} not found in {[str(p) for p in paths]}")
        w = tensors[name]
        if dtypes[name] == "F8_E4M3":
            sname = name[:-len("weight")] + "scale" if converted else name + "_scale_inv"
            if sname not in tensors:
                raise ValueError(f"paths: FP8 tensor {name!r} has no {sname!r}")
            if key == "wkv_b" and fp8_wkv_b:
                weights["wkv_b_e4m3"] = np.ascontiguousarray(w, dtype=np.float32)
                weights["wkv_b_scale_inv"] = np.ascontiguousarray(tensors[sname], dtype=np.float32)
            w = dequantize_block_fp8(w, tensors[sname])
        if w.shape != shapes[key]:
            raise ValueError(f"{name}: shape {w.shape} does not match spec (expected {shapes[key]})")
        weights[key] = np.ascontiguousarray(w, dtype=np.float32)
    return weights


__all__ = [
    "MlaSpec", "Yarn", "build_cache", "compare", "compare_forms", "decode", "decode_reference",
    "clear_weight_cache", "dequantize_block_fp8", "forward", "init_weights", "kv_bytes_per_token", "load_deepseek_shard",
    "read_safetensors", "report_numbers", "softmax_scale", "weight_cache_info", "wkv_b_naive",
]
from .mla_index import check_selection, index, index_bound, index_exact, indexer_spec, selection_changes, selection_verdict, topk_stability  # noqa: E402,F401,I001  (DeepSeek-V3.2 lightning indexer)
from .mla_sparse import *  # noqa: E402,F401,F403  (sparse decode, FlashMLA FP8 sparse KV layouts: mla_sparse.py)
