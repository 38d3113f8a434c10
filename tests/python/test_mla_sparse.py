"""Sparse MLA decode and FlashMLA's FP8 sparse KV layouts (fp8lab.mla.sparse_*), against numpy +
ml_dtypes re-formulations written from FlashMLA's own test code:
tests/quant.py (quantize_k_cache / dequantize_k_cache, both layouts), tests/ref.py
(ref_sparse_attn_decode), and the SM90 kernel's dequantisation (components/dequant.h:
bf16(fp8 -> fp32 -> bf16 times the scale rounded to bf16))."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import fp8lab.mla as mla

BF16, E4M3 = ml_dtypes.bfloat16, ml_dtypes.float8_e4m3fn
# tests/quant.py FP8KVCacheLayout.get_meta: (d, d_nope, d_rope, tile_size, num_tiles)
META = {"v32": (576, 512, 64, 128, 4), "model1": (512, 448, 64, 64, 7)}


# ---- numpy formulations (from FlashMLA tests/quant.py) ----
def ceil_pow2(s: np.ndarray) -> np.ndarray:
    """torch.pow(2, s.log2().ceil()) taken exactly (frexp), as the intended 2^ceil(log2 s)."""
    m, e = np.frexp(s.astype(np.float64))
    return np.where(m == 0.5, s, np.ldexp(1.0, e)).astype(np.float32)


def np_quantize(values: np.ndarray, layout: str) -> np.ndarray:
    d, d_nope, d_rope, tile, ntiles = META[layout]
    x = values.astype(BF16)  # input_k_cache is a bf16 tensor
    nb, page, _ = x.shape
    nope = np.empty((nb, page, d_nope), np.uint8)
    scales = np.empty((nb, page, ntiles), np.float32)
    for t in range(ntiles):
        blk = x[..., t * tile:(t + 1) * tile].astype(np.float32)
        s = np.abs(blk).max(-1) / np.float32(448.0)
        s = ceil_pow2(np.maximum(s, np.float32(1e-4)))  # _cast_scale_inv_to_ue8m0
        scales[..., t] = s
        nope[..., t * tile:(t + 1) * tile] = (blk / s[..., None]).astype(E4M3).view(np.uint8)
    rope = x[..., d_nope:].view(np.uint16).view(np.uint8).reshape(nb, page, 2 * d_rope)
    if layout == "v32":  # per token: nope | 4 x fp32 scale | rope
        tok = np.concatenate([nope, scales.view(np.uint8).reshape(nb, page, 4 * ntiles), rope], axis=-1)
        return tok.reshape(nb, page * 656)
    # MODEL1 per block: page x (nope | rope), page x (7 e8m0 + 1 pad), padded to a multiple of 576
    e8 = (np.log2(scales).round() + 127).astype(np.uint8)
    sc = np.concatenate([e8, np.zeros((nb, page, 1), np.uint8)], axis=-1).reshape(nb, page * 8)
    blk = np.concatenate([np.concatenate([nope, rope], axis=-1).reshape(nb, page * 576), sc], axis=-1)
    pad = -blk.shape[1] % 576
    return np.concatenate([blk, np.zeros((nb, pad), np.uint8)], axis=-1)


def np_dequantize(fields: dict, layout: str, order: str = "sm90") -> np.ndarray:
    d, d_nope, d_rope, tile, ntiles = META[layout]
    e = fields["nope"].view(E4M3).astype(np.float32)
    if layout == "v32":
        s = fields["scales"]
    else:
        s = np.ldexp(1.0, fields["scales"].astype(np.int64) - 127).astype(np.float32)
    if order == "sm90":  # dequant.h: __float22bfloat162_rn(fp32) * (bf16)scale, a bf16 multiply
        s = s.astype(BF16).astype(np.float32)
    s = np.repeat(s, tile, axis=-1)
    nope = (e * s).astype(BF16).astype(np.float32)
    rope = fields["rope"].view(BF16).astype(np.float32)
    return np.concatenate([nope, rope], axis=-1)


def logsumexp(x: np.ndarray) -> np.ndarray:
    m = x.max(-1, keepdims=True)
    ms = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.exp(x - ms).sum(-1)) + ms[..., 0]


def np_sparse_decode(q, kv_values, indices, scale, topk_length=None, attn_sink=None, d_v=512,
                     sink_sign=1.0, topk_shift=0):
    """tests/ref.py ref_sparse_attn_decode in float64. sink_sign / topk_shift are the mutations."""
    b, s_q, h, d = q.shape
    topk = indices.shape[-1]
    kv = kv_values.reshape(-1, d).astype(np.float64)
    invalid = indices == -1
    if topk_length is not None:
        invalid = invalid | (np.arange(topk)[None, None, :] >= (topk_length + topk_shift)[:, None, None])
    gathered = kv[np.where(invalid, 0, indices).reshape(-1)].reshape(b, s_q, topk, d)
    gathered[np.isnan(gathered)] = 0.0
    attn = np.einsum("bshd,bstd->bsht", q.astype(np.float64), gathered) * scale
    attn = np.where(invalid[:, :, None, :], -np.inf, attn)
    lse = logsumexp(attn)
    with np.errstate(invalid="ignore"):
        w = np.exp(attn - lse[..., None])
    out = np.einsum("bsht,bstc->bshc", w, gathered[..., :d_v])
    if attn_sink is not None:
        with np.errstate(over="ignore"):
            out = out * (1.0 / (1.0 + np.exp(sink_sign * (attn_sink.astype(np.float64)[None, None, :] - lse))))[..., None]
    lonely = lse == -np.inf
    out[lonely] = 0.0
    lse = np.where(lonely, np.inf, lse)
    return out, lse.transpose(0, 2, 1)


# ---- fixtures ----
def make_case(layout, seed, b=2, s_q=2, h=8, blocks=4, page=64, topk=128, with_len=True, with_sink=True):
    rng = np.random.default_rng(seed)
    d = META[layout][0]
    values = (rng.standard_normal((blocks, page, d)) * 0.5).astype(np.float32)
    values[1, 3, :64] *= 40  # an outlier tile: another scale binade
    kv = mla.sparse_kv_quantize(values, layout)
    q = (rng.standard_normal((b, s_q, h, d)) * 2).astype(BF16).astype(np.float32)
    context = blocks * page
    ind = np.stack([np.stack([rng.permutation(np.arange(1, context))[:topk] for _ in range(s_q)]) for _ in range(b)])
    ind = ind.astype(np.int32)
    ind[0, 0, 3:40:3] = -1  # invalid slots among valid ones
    tl = np.array([topk - 37, topk][:b], np.int32) if with_len else None
    sink = rng.uniform(-3, 3, h).astype(np.float32) if with_sink else None
    if with_sink:
        sink[0], sink[1] = -np.inf, np.inf  # FlashMLA: -inf no effect, +inf out 0
    return dict(q=q, kv_cache=kv, indices=ind, layout=layout, topk_length=tl, attn_sink=sink)


def kw_of(c):
    return {k: c[k] for k in ("layout", "topk_length", "attn_sink")}


SCALE = np.float32(576 ** -0.5 * 1.3)


# ---- layouts ----
@pytest.mark.parametrize("layout", ["v32", "model1"])
def test_layout_bytes_match_flashmla_quantizer_and_round_trip(layout):
    rng = np.random.default_rng(1)
    d = META[layout][0]
    for page in (64, 5):  # 5: MODEL1's block padding is not a whole number of tokens
        v = (rng.standard_normal((3, page, d)) * np.exp2(rng.integers(-10, 10, (3, page, 1)))).astype(np.float32)
        v[0, 0, :] = 0  # all-zero tiles: the 1e-4 scale floor
        kv = mla.sparse_kv_quantize(v, layout)
        assert kv.shape == (3, mla.sparse_kv_block_bytes(layout, page))
        np.testing.assert_array_equal(kv, np_quantize(v, layout))
        f = mla.sparse_kv_unpack(kv, layout, page_block_size=page)
        assert np.array_equal(mla.sparse_kv_pack(f, layout), kv)  # byte for byte
        for order in ("sm90", "reference"):
            got = mla.sparse_kv_dequantize(kv, layout, page_block_size=page, order=order)
            np.testing.assert_array_equal(got.view(np.uint32), np_dequantize(f, layout, order).view(np.uint32))
    assert mla.sparse_kv_layout(layout)["bytes_per_token"] == {"v32": 656, "model1": 584}[layout]
    assert mla.sparse_kv_block_bytes("model1", 64) == 37440 and mla.sparse_kv_block_bytes("v32", 64) == 64 * 656


def test_random_fields_round_trip_and_v32_dequant_order():
    rng = np.random.default_rng(2)
    for layout in ("v32", "model1"):
        _, d_nope, d_rope, _, nt = META[layout]
        f = {"nope": rng.integers(0, 256, (2, 7, d_nope), dtype=np.uint8),
             "rope": rng.integers(0, 0x7F00, (2, 7, d_rope), dtype=np.uint16),
             "scales": (rng.uniform(0.01, 4, (2, 7, nt)).astype(np.float32) if layout == "v32"
                        else rng.integers(100, 150, (2, 7, nt), dtype=np.uint8))}
        f["nope"][f["nope"] & 0x7F == 0x7F] = 0  # no E4M3 NaN bytes
        kv = mla.sparse_kv_pack(f, layout)
        g = mla.sparse_kv_unpack(kv, layout, page_block_size=7)
        for k in f:
            np.testing.assert_array_equal(g[k], f[k])
        assert np.array_equal(mla.sparse_kv_pack(g, layout), kv)
    # A foreign FP32 scale with more than 8 significant bits: SM90 rounds it to BF16 first.
    a = mla.sparse_kv_dequantize(kv_v32 := mla.sparse_kv_pack({**f, **_v32_fields(rng)}, "v32"), "v32", 7, "sm90")
    b = mla.sparse_kv_dequantize(kv_v32, "v32", 7, "reference")
    assert (a != b).any()
    fv = mla.sparse_kv_unpack(kv_v32, "v32", 7)
    np.testing.assert_array_equal(a, np_dequantize(fv, "v32", "sm90"))
    np.testing.assert_array_equal(b, np_dequantize(fv, "v32", "reference"))


def _v32_fields(rng):
    return {"nope": rng.integers(0, 0x7E, (2, 7, 512), dtype=np.uint8),
            "rope": rng.integers(0, 0x7F00, (2, 7, 64), dtype=np.uint16),
            "scales": rng.uniform(0.01, 4, (2, 7, 4)).astype(np.float32)}


def test_v32_flashmla_4d_view_accepted():
    c = make_case("v32", 3, with_len=False, with_sink=False)
    kv4 = c["kv_cache"].reshape(4, 64, 1, 656)
    a = mla.sparse_decode(c["q"], kv4, c["indices"], layout="v32", softmax_scale=SCALE)
    b = mla.sparse_decode(c["q"], c["kv_cache"], c["indices"], layout="v32", softmax_scale=SCALE)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


# ---- decode against tests/ref.py ----
@pytest.mark.parametrize("layout", ["v32", "model1"])
@pytest.mark.parametrize("splits", [1, 3])
def test_decode_matches_flashmla_reference_within_bound(layout, splits):
    c = make_case(layout, 10 + splits)
    out, lse = mla.sparse_decode(c["q"], c["kv_cache"], c["indices"], softmax_scale=SCALE, num_splits=splits, **kw_of(c))
    assert out.shape == (2, 2, 8, 512) and lse.shape == (2, 8, 2)
    assert np.array_equal(out, out.astype(BF16).astype(np.float32))  # BF16 values
    values = np_dequantize(mla.sparse_kv_unpack(c["kv_cache"], layout), layout)
    ro, rl = np_sparse_decode(c["q"], values, c["indices"], float(SCALE), c["topk_length"], c["attn_sink"])
    for scope in ("any_kernel", "emulator"):
        ref = mla.sparse_decode_reference(c["q"], c["kv_cache"], c["indices"], softmax_scale=SCALE,
                                          num_splits=splits, scope=scope, **kw_of(c))
        np.testing.assert_allclose(ref["out"], ro, rtol=0, atol=1e-12)
        np.testing.assert_allclose(ref["lse"], rl, rtol=1e-13)
        assert (np.abs(out - ro) <= ref["out_bound"]).all()
        assert (np.abs(lse - rl) <= ref["lse_bound"]).all()
    assert (out[:, :, 1] == 0).all()  # head 1 has sink +inf
    r = mla.sparse_decode_compare(out, lse, c["q"], c["kv_cache"], c["indices"], softmax_scale=SCALE,
                                  num_splits=splits, **kw_of(c))
    assert r["ok"] and 0 < r["max_out_ratio"] <= 1, r


def test_sink_minus_inf_is_no_sink_bit_for_bit():
    c = make_case("v32", 4, with_sink=False)
    a = mla.sparse_decode(c["q"], c["kv_cache"], c["indices"], softmax_scale=SCALE, topk_length=c["topk_length"])
    sink = np.full(8, -np.inf, np.float32)
    b = mla.sparse_decode(c["q"], c["kv_cache"], c["indices"], softmax_scale=SCALE, topk_length=c["topk_length"],
                          attn_sink=sink)
    assert all(np.array_equal(x.view(np.uint32), y.view(np.uint32)) for x, y in zip(a, b))


# ---- mutations: each must be caught ----
def test_mutant_sink_sign_flipped_is_caught():
    c = make_case("model1", 5)
    values = np_dequantize(mla.sparse_kv_unpack(c["kv_cache"], "model1"), "model1")
    mo, ml = np_sparse_decode(c["q"], values, c["indices"], float(SCALE), c["topk_length"], c["attn_sink"],
                              sink_sign=-1.0)
    r = mla.sparse_decode_compare(mo.astype(np.float32), ml.astype(np.float32), c["q"], c["kv_cache"], c["indices"],
                                  softmax_scale=SCALE, **kw_of(c))
    assert not r["ok"] and r["out_violations"] > 100, r


@pytest.mark.parametrize("shift", [1, -1])
def test_mutant_topk_length_off_by_one_is_caught(shift):
    c = make_case("v32", 6)
    values = np_dequantize(mla.sparse_kv_unpack(c["kv_cache"], "v32"), "v32")
    mo, ml = np_sparse_decode(c["q"], values, c["indices"], float(SCALE), c["topk_length"], c["attn_sink"],
                              topk_shift=shift)
    r = mla.sparse_decode_compare(mo.astype(np.float32), ml.astype(np.float32), c["q"], c["kv_cache"], c["indices"],
                                  softmax_scale=SCALE, **kw_of(c))
    assert not r["ok"] and r["lse_violations"] > 0, r


# ---- NaN in invalid slots, empty selection ----
@pytest.mark.parametrize("layout", ["v32", "model1"])
def test_nan_in_invalid_and_uncounted_slots_never_reaches_output(layout):
    c = make_case(layout, 7)
    ind, tl = c["indices"], c["topk_length"]
    counted = np.arange(ind.shape[-1])[None, None, :] < tl[:, None, None]
    used = np.unique(ind[counted & (ind >= 0)])
    # Write NaN bytes into every unused token of the cache directly (unused: index 0, -1's target,
    # the tokens past topk_length).
    blocks, page = 4, 64
    bb = mla.sparse_kv_block_bytes(layout, page)
    kv = c["kv_cache"].copy()
    ref_bytes = mla.sparse_kv_dequantize(kv, layout)
    unused = np.setdiff1d(np.arange(blocks * page), used)
    assert 0 in unused and len(unused) > 20
    poisoned = kv.copy()
    f = mla.sparse_kv_unpack(kv, layout)
    for t in unused:
        f["nope"][t // page, t % page] = 0x7F
        f["rope"][t // page, t % page] = 0x7FC0
    packed = mla.sparse_kv_pack(f, layout)  # scales still valid here
    poisoned[:] = packed
    # NaN scales of the unused tokens, written at their byte offsets.
    for t in unused:
        b, s = divmod(int(t), page)
        if layout == "v32":
            poisoned[b, s * 656 + 512: s * 656 + 528] = np.full(4, np.nan, np.float32).view(np.uint8)
        else:
            poisoned[b, page * 576 + s * 8: page * 576 + s * 8 + 7] = 0xFF
    deq = mla.sparse_kv_dequantize(poisoned, layout)
    assert np.isnan(deq.reshape(-1, deq.shape[-1])[unused]).all(axis=1).all()
    assert np.array_equal(deq.reshape(-1, deq.shape[-1])[used], ref_bytes.reshape(-1, deq.shape[-1])[used])
    a = mla.sparse_decode(c["q"], kv, ind, softmax_scale=SCALE, num_splits=2, **kw_of(c))
    b = mla.sparse_decode(c["q"], poisoned, ind, softmax_scale=SCALE, num_splits=2, **kw_of(c))
    assert np.isfinite(b[0]).all()
    assert all(np.array_equal(x.view(np.uint32), y.view(np.uint32)) for x, y in zip(a, b))
    # ... and a counted index that names a NaN token is an error naming the cache, not a NaN.
    bad = ind.copy()
    bad[1, 1, 0] = int(unused[-1])
    with pytest.raises(ValueError, match=r"kv_cache: token \d+ \(selected by indices\[1, 1, 0\]\)"):
        mla.sparse_decode(c["q"], poisoned, bad, softmax_scale=SCALE, **kw_of(c))
    assert bb == poisoned.shape[1]


def test_empty_selection_gives_zero_and_plus_inf():
    c = make_case("v32", 8)
    ind = c["indices"].copy()
    ind[0, 1, :] = -1                  # every index invalid
    tl = np.array([100, 0], np.int32)  # sequence 1: nothing counted
    for sink in (None, c["attn_sink"]):
        out, lse = mla.sparse_decode(c["q"], c["kv_cache"], ind, softmax_scale=SCALE, topk_length=tl, attn_sink=sink)
        assert (out[0, 1] == 0).all() and (out[1] == 0).all()
        assert np.isposinf(lse[0, :, 1]).all() and np.isposinf(lse[1]).all()
        assert np.isfinite(lse[0, :, 0]).all()
        ref = mla.sparse_decode_reference(c["q"], c["kv_cache"], ind, softmax_scale=SCALE, topk_length=tl,
                                          attn_sink=sink)
        assert np.isposinf(ref["lse"][1]).all() and (ref["out"][1] == 0).all()
        assert mla.sparse_decode_compare(out, lse, c["q"], c["kv_cache"], ind, softmax_scale=SCALE, topk_length=tl,
                                         attn_sink=sink)["ok"]


# ---- bad input ----
def test_errors_name_the_argument():
    c = make_case("v32", 9)
    q, kv, ind = c["q"], c["kv_cache"], c["indices"]

    def call(**over):
        args = dict(q=q, kv_cache=kv, indices=ind, softmax_scale=SCALE, topk_length=c["topk_length"])
        args.update(over)
        return mla.sparse_decode(args.pop("q"), args.pop("kv_cache"), args.pop("indices"), **args)

    for v in (256, -2, 2**31 - 1):
        bad = ind.copy()
        bad[1, 0, 5] = v
        with pytest.raises(ValueError, match=r"indices: element \[1, 0, 5\] = -?\d+ is neither -1"):
            call(indices=bad)
    bad = ind.copy()
    bad[0, 0, -1] = 10**6  # past topk_length[0]: ignored, as FlashMLA ignores it
    call(indices=bad)
    with pytest.raises(ValueError, match=r"indices: topk = 300 .* exceeds the cache's context of 256"):
        call(indices=np.zeros((2, 2, 300), np.int32), topk_length=None)
    with pytest.raises(ValueError, match=r"topk_length: element 1 = 129 is outside \[0, topk = 128\]"):
        call(topk_length=np.array([5, 129], np.int32))
    with pytest.raises(ValueError, match="topk_length: expected shape"):
        call(topk_length=np.array([5, 6, 7], np.int32))
    with pytest.raises(ValueError, match="kv_cache: blocks of 41984 bytes, but layout model1_fp8_sparse"):
        call(layout="model1", q=np.zeros((2, 2, 8, 512), np.float32))
    with pytest.raises(ValueError, match=r"q: expected \[batch, s_q, heads, 512\]"):
        call(layout="model1")
    with pytest.raises(ValueError, match="kv_cache: 584 bytes per token, but layout v32_fp8_sparse has 656"):
        call(kv_cache=np.zeros((2, 64, 1, 584), np.uint8))
    with pytest.raises(TypeError, match="kv_cache: expected uint8"):
        call(kv_cache=kv.astype(np.float32))
    with pytest.raises(TypeError, match="q: expected float32"):
        call(q=q.astype(np.float64))
    with pytest.raises(ValueError, match="layout: unknown sparse KV layout 'v3'"):
        call(layout="v3")
    with pytest.raises(ValueError, match="attn_sink: element 2 is NaN"):
        call(attn_sink=np.where(np.arange(8) == 2, np.nan, 0).astype(np.float32))
    with pytest.raises(ValueError, match="indices: expected \\[batch, s_q, topk\\]"):
        call(indices=ind[:1])
    with pytest.raises(ValueError, match="softmax_scale"):
        call(softmax_scale=-1.0)
    # NaN scale in a selected token
    f = mla.sparse_kv_unpack(kv, "v32")
    t = int(ind[0, 0, 0])
    bad_kv = kv.copy()
    b, s = divmod(t, 64)
    bad_kv[b, s * 656 + 512: s * 656 + 516] = np.array([np.nan], np.float32).view(np.uint8)
    with pytest.raises(ValueError, match=rf"kv_cache: token {t} \(selected by indices\[0, 0, 0\]\).*NaN/Inf scale"):
        call(kv_cache=bad_kv)
    f["scales"][0, 2, 1] = np.nan
    with pytest.raises(ValueError, match=r"scales: element \[0, 2, 1\] is nan"):
        mla.sparse_kv_pack(f, "v32")
    with pytest.raises(ValueError, match=r"values: element \[0, 0, 3\] is inf"):
        mla.sparse_kv_quantize(np.where(np.arange(576) == 3, np.inf, 0).astype(np.float32).reshape(1, 1, 576), "v32")
    with pytest.raises(ValueError, match=r"values: expected float32 \[blocks, page_block_size, 512\]"):
        mla.sparse_kv_quantize(np.zeros((1, 64, 576), np.float32), "model1")
    with pytest.raises(TypeError, match="scales: expected dtype uint8"):
        mla.sparse_kv_pack({**mla.sparse_kv_unpack(np_quantize(np.zeros((1, 2, 512), np.float32), "model1"), "model1", 2),
                            "scales": np.ones((1, 2, 7), np.float32)}, "model1")


# ---- the golden / verify operation ----
def test_verify_operation_accepts_the_emulator_and_catches_wrong_kernels():
    import fp8lab
    from fp8lab import golden

    o = golden.OPERATIONS["mla_sparse_decode"]
    small = {"heads": 8, "topk": 128, "blocks": 4, "page_block_size": 32}  # 2 tiles of 64: splits matter

    def emulator(q, kv, ind, tl, sink, spec, splits=None):
        return mla.sparse_decode(q, kv, ind, layout=spec["layout"], softmax_scale=spec["softmax_scale"],
                                 topk_length=tl, attn_sink=sink, page_block_size=spec["page_block_size"],
                                 num_splits=splits or spec["num_splits"])

    r = fp8lab.verify(emulator, op="mla_sparse_decode", spec={**small, "num_splits": 2}, cases=len(o.kinds))
    assert r.kind == "bit-identical", r

    def two_splits(*args):  # a kernel that splits where the spec does not: other bits, same bound
        return emulator(*args, splits=2)

    r = fp8lab.verify(two_splits, op="mla_sparse_decode", spec=small, cases=len(o.kinds))
    assert r.ok and r.kind == "within-bound", r
    pinned = {**small, "pinned": True}
    assert fp8lab.verify(two_splits, op="mla_sparse_decode", spec=pinned, cases=2, shrink=False).kind == "violation"

    def sink_flipped(q, kv, ind, tl, sink, spec):
        return emulator(q, kv, ind, tl, np.where(np.isinf(sink), sink, -sink).astype(np.float32), spec)

    def topk_length_plus_one(q, kv, ind, tl, sink, spec):
        ind = np.where(ind == 2**31 - 1, 0, ind).astype(np.int32)  # the slot it now reads must be an index
        return emulator(q, kv, ind, np.minimum(tl + 1, ind.shape[-1]).astype(np.int32), sink, spec)

    def reads_invalid_slots(q, kv, ind, tl, sink, spec):  # -1 read as token 0, as if valid (NaN kept)
        values = mla.sparse_kv_dequantize(kv, spec["layout"], spec["page_block_size"])
        out, lse = np_sparse_decode(q, values, np.where(ind == -1, 0, ind), 576 ** -0.5, tl, sink)
        with np.errstate(invalid="ignore"):
            return out.astype(BF16).astype(np.float32), lse.astype(np.float32)

    for bad in (sink_flipped, topk_length_plus_one):
        r = fp8lab.verify(bad, op="mla_sparse_decode", spec=small, cases=len(o.kinds), shrink=False)
        assert r.kind == "violation", (bad.__name__, r)
    r = fp8lab.verify(reads_invalid_slots, op="mla_sparse_decode", spec=small, cases=len(o.kinds), shrink=False)
    assert r.kind == "violation", r


def test_c_abi_kernel_is_checked_by_fp8lab_verify(tmp_path):
    """tests/plugins/sparse_decode_kernel.c, a plain-C formulation of FlashMLA's tests/ref.py, through
    golden/fp8lab_kernel.h's fp8lab_mla_sparse_decode_fn: the correct build passes within bound on the
    committed trace and generated cases; the planted sign-flipped sink is a violation."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler (cc) to build the test plug-in")
    root = Path(__file__).resolve().parents[2]
    libs = {}
    for name, flags in (("correct", []), ("planted_bug", ["-DPLANTED_BUG"])):
        libs[name] = tmp_path / f"libsparse_{name}.so"
        subprocess.run([cc, "-shared", "-fPIC", "-O2", "-ffp-contract=off", *flags, "-I", str(root / "golden"), "-o",
                        str(libs[name]), str(root / "tests" / "plugins" / "sparse_decode_kernel.c"), "-lm"], check=True)

    def verify(lib, *extra):
        return subprocess.run([sys.executable, "-m", "fp8lab", "verify", "--kernel", f"{lib}:fp8lab_mla_sparse_decode",
                               "--op", "mla_sparse_decode", "--cases", "7", "--spec",
                               '{"heads": 8, "topk": 64, "blocks": 2, "page_block_size": 32, "num_splits": 2}', *extra],
                              capture_output=True, text=True, cwd=root)

    r = verify(libs["correct"], "--accept", "within-bound")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "mla_sparse_decode_v32_small.safetensors" in r.stdout and "WITHIN-BOUND" in r.stdout
    r = verify(libs["planted_bug"])
    assert r.returncode == 1 and "VIOLATION" in r.stdout, r.stdout + r.stderr
