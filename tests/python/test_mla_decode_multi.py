"""fp8lab.mla.decode with s_q > 1 query tokens per sequence (FlashMLA's multi-token decode, used by
DeepSeek-V3's MTP speculative decoding), against a numpy float64 re-formulation of causal
attention and the 1-query decode."""
import ml_dtypes
import numpy as np
import pytest

from fp8lab import mla

SMALL = mla.MlaSpec(hidden=64, heads=4, q_lora=32, kv_lora=128, nope=16, rope=8, v=16)


def bf16(a):
    return np.asarray(a, np.float32).astype(ml_dtypes.bfloat16).astype(np.float32)


def inputs(spec, lens, s_q, seed, width=2.0):
    rng = np.random.default_rng(seed)
    lat = [bf16(rng.uniform(-width, width, (n, spec.kv_lora))) for n in lens]
    kpe = [bf16(rng.uniform(-width, width, (n, spec.rope))) for n in lens]
    q = rng.uniform(-1.5, 1.5, (len(lens), s_q, spec.heads, spec.kv_lora + spec.rope)).astype(np.float32)
    return lat, kpe, q


def numpy_causal_attention(q, lat, kpe, scale, causal=True):
    """Second formulation: float64 softmax attention of one sequence, q [s_q, H, D], written as
    FlashMLA's test reference does (scores masked by tril(diagonal = s_k - s_q)); queries with no
    key give out 0 and lse +inf. Returns out [s_q, H, kv_lora], lse [H, s_q]."""
    s_q, H, _ = q.shape
    L = lat.shape[0]
    k = np.concatenate([lat, kpe], axis=1).astype(np.float64)
    s = np.einsum("ihd,td->iht", q.astype(np.float64), k) * scale  # [s_q, H, L]
    if causal:
        allowed = np.tril(np.ones((s_q, L), bool), k=L - s_q)
        s = np.where(allowed[:, None, :], s, -np.inf)
    out = np.zeros((s_q, H, lat.shape[1]))
    lse = np.full((H, s_q), np.inf)
    for i in range(s_q):
        row = s[i]
        if not np.isfinite(row).any():
            continue
        m = row.max(axis=1, keepdims=True)
        e = np.exp(row - m)
        out[i] = (e / e.sum(axis=1, keepdims=True)) @ lat.astype(np.float64)
        lse[:, i] = m[:, 0] + np.log(e.sum(axis=1))
    return out, lse


@pytest.mark.parametrize("splits", [1, 3])
@pytest.mark.parametrize("causal", [True, False])
def test_two_queries_against_numpy_float64(splits, causal):
    spec = SMALL.replace(num_splits=splits)
    lens = [1, 0, 2, 130, 64]
    lat, kpe, q = inputs(spec, lens, 2, 3)
    c, table, seqlens = mla.build_cache(lat, kpe, spec)
    out, lse = mla.decode(q, c, table, seqlens, spec, causal=causal)
    assert out.shape == (5, 2, spec.heads, spec.kv_lora) and out.dtype == np.float32
    assert lse.shape == (5, spec.heads, 2) and lse.dtype == np.float32
    ref = mla.decode_reference(q, c, table, seqlens, spec, causal=causal)
    assert ref["out"].shape == out.shape and ref["lse_bound"].shape == lse.shape
    scale = float(mla.softmax_scale(spec))
    worst = 0.0
    for b in range(len(lens)):
        o, l = numpy_causal_attention(q[b], lat[b], kpe[b], scale, causal)
        np.testing.assert_allclose(ref["out"][b], o, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(ref["lse"][b], l, rtol=1e-12, atol=1e-13)
        assert np.array_equal(np.isposinf(lse[b]), np.isposinf(l))
        fin = np.isfinite(l)
        err = np.abs(out[b] - o)
        assert np.all(err <= ref["out_bound"][b])
        assert np.all(np.abs(lse[b][fin] - l[fin]) <= ref["lse_bound"][b][fin])
        pos = ref["out_bound"][b] > 0
        worst = max(worst, float((err[pos] / ref["out_bound"][b][pos]).max(initial=0)))
    # Sequence 0 (one key) with causal: query 0 sees nothing; sequence 1 is empty.
    assert np.all(np.isposinf(lse[1])) and np.all(out[1] == 0)
    assert np.all(np.isposinf(lse[0][:, 0])) == causal and np.all(out[0, 0] == 0) == causal
    v = mla.compare(out, lse, q, c, table, seqlens, spec, causal=causal)
    assert v["ok"], v["out_summary"]
    assert 0.05 < v["max_out_ratio"] <= 1
    print(f"\n[mla] s_q=2 decode (causal={causal}, splits={splits}) vs numpy float64: max observed/bound {worst:.3f}")


def test_three_d_q_and_s_q_1_unchanged():
    spec = SMALL.replace(num_splits=2)
    lat, kpe, q = inputs(spec, [70, 3], 1, 4)
    c, table, seqlens = mla.build_cache(lat, kpe, spec)
    o3, l3 = mla.decode(q[:, 0], c, table, seqlens, spec)
    o4, l4 = mla.decode(q, c, table, seqlens, spec)
    assert o3.shape == (2, spec.heads, spec.kv_lora) and l3.shape == (2, spec.heads)
    assert o4.shape == (2, 1, spec.heads, spec.kv_lora) and l4.shape == (2, spec.heads, 1)
    assert np.array_equal(o3.view(np.uint32), o4[:, 0].view(np.uint32))
    assert np.array_equal(l3.view(np.uint32), l4[:, :, 0].view(np.uint32))
    # causal is irrelevant for one query (FlashMLA switches it off for s_q = 1)
    o5, l5 = mla.decode(q, c, table, seqlens, spec, causal=False)
    assert np.array_equal(o5.view(np.uint32), o4.view(np.uint32))
    # The reference and compare keep their 1-query shapes for 4-D q with s_q = 1 (as before).
    for qq in (q[:, 0], q):
        r = mla.decode_reference(qq, c, table, seqlens, spec)
        assert r["out"].shape == (2, spec.heads, spec.kv_lora) and r["lse"].shape == (2, spec.heads)
        assert mla.compare(o3, l3, qq, c, table, seqlens, spec)["ok"]
        assert mla.compare(o4, l4, qq, c, table, seqlens, spec)["ok"]


@pytest.mark.parametrize("splits", [1, 2])
def test_causal_query_is_one_query_decode_of_its_prefix(splits):
    """With num_splits = 1 (and with 2 where the prefix's plan is the full length's), query i is
    bit-identical to the 1-query decode of the first L - s_q + 1 + i tokens."""
    spec = SMALL.replace(num_splits=splits, page=16)
    s_q = 4
    lens = [40, 4]
    lat, kpe, q = inputs(spec, lens, s_q, 5)
    c, table, seqlens = mla.build_cache(lat, kpe, spec)
    out, lse = mla.decode(q, c, table, seqlens, spec)
    for b, L in enumerate(lens):
        for i in range(s_q):
            V = L - s_q + 1 + i
            # 40 tokens: 3 blocks, 2 per split; V = 37..40 also has 3 blocks -> same plan.
            c1, t1, l1 = mla.build_cache([lat[b][:V]], [kpe[b][:V]], spec)
            o1, s1 = mla.decode(q[b:b + 1, i], c1, t1, l1, spec)
            assert np.array_equal(out[b, i].view(np.uint32), o1[0].view(np.uint32)), (b, i)
            assert np.array_equal(lse[b, :, i].view(np.uint32), s1[0].view(np.uint32)), (b, i)


def test_non_causal_query_is_one_query_decode_of_its_row():
    spec = SMALL.replace(num_splits=3)
    lat, kpe, q = inputs(spec, [2, 100], 3, 6)
    c, table, seqlens = mla.build_cache(lat, kpe, spec)
    out, lse = mla.decode(q, c, table, seqlens, spec, causal=False)
    for i in range(3):
        o1, l1 = mla.decode(q[:, i], c, table, seqlens, spec)
        assert np.array_equal(out[:, i].view(np.uint32), o1.view(np.uint32))
        assert np.array_equal(lse[:, :, i].view(np.uint32), l1.view(np.uint32))
    # The causal verdict catches the non-causal result.
    assert not mla.compare(out, lse, q, c, table, seqlens, spec)["ok"]


def test_nan_past_visible_keys_never_reaches_output():
    """NaN written into the cache rows query 0 does not see leaves query 0 bit-identical."""
    spec = SMALL.replace(num_splits=2)
    s_q = 3
    lat, kpe, q = inputs(spec, [80], s_q, 7)
    c, table, seqlens = mla.build_cache(lat, kpe, spec)
    out, lse = mla.decode(q, c, table, seqlens, spec)
    dirty = c.copy()  # [blocks, page, 1, 576] BF16 bit patterns
    # Physical rows of logical tokens 78, 79 (query 0 sees 0..77) and every slot past 80.
    for t in range(78, table.shape[1] * spec.page):
        dirty[table[0, t // spec.page], t % spec.page] = 0xFFFF  # NaN
    o2, l2 = mla.decode(q, dirty, table, seqlens, spec)
    assert np.array_equal(o2[:, 0].view(np.uint32), out[:, 0].view(np.uint32))
    assert np.array_equal(l2[:, :, 0].view(np.uint32), lse[:, :, 0].view(np.uint32))
    assert np.isnan(o2[:, 2]).any()  # query 2 sees them: the NaN is real


@pytest.mark.parametrize("cache", ["bf16", "fp8"])
def test_deepseek_dims_mtp_within_bound_and_wrong_scale_caught(cache):
    """DeepSeek-V3 dims (128 heads, 512 + 64), s_q = 2 (one MTP draft): within the certified bound;
    the same output judged with FlashMLA's default 576^-0.5 scale is a violation."""
    spec = mla.MlaSpec(num_splits=3, cache=cache)
    lat, kpe, q = inputs(spec, [200, 1, 70], 2, 8, width=1.0)
    q *= 0.3
    c, table, seqlens = mla.build_cache(lat, kpe, spec)
    out, lse = mla.decode(q, c, table, seqlens, spec)
    v = mla.compare(out, lse, q, c, table, seqlens, spec)
    assert v["ok"], v["out_summary"]
    wrong = mla.compare(out, lse, q, c, table, seqlens, spec.replace(softmax_scale="flashmla"))
    assert not wrong["ok"] and "violation" in wrong["lse_summary"]
    print(f"\n[mla] DeepSeek dims s_q=2 cache={cache}: out observed/bound {v['max_out_ratio']:.3f}")


def test_errors_name_the_argument():
    spec = SMALL
    lat, kpe, q = inputs(spec, [10], 2, 9)
    c, table, seqlens = mla.build_cache(lat, kpe, spec)
    with pytest.raises(ValueError, match="s_q"):
        mla.decode(q[:, :0], c, table, seqlens, spec)
    with pytest.raises(ValueError, match="q: expected shape"):
        mla.decode(q[0], c, table, seqlens, spec)  # rank 3 with the wrong dims
    with pytest.raises(ValueError, match="q: expected shape"):
        mla.decode(q[..., :-1], c, table, seqlens, spec)
    with pytest.raises(ValueError, match="q: expected shape"):
        mla.decode(q[None], c, table, seqlens, spec)  # rank 5
    with pytest.raises(ValueError, match="q: expected shape"):
        mla.decode(q[:, :, :2], c, table, seqlens, spec)  # wrong head count
    with pytest.raises(TypeError, match="q"):
        mla.decode(q.astype(np.int32), c, table, seqlens, spec)
    for bad in (1, None, "yes"):
        with pytest.raises(TypeError, match="causal"):
            mla.decode(q, c, table, seqlens, spec, causal=bad)
        with pytest.raises(TypeError, match="causal"):
            mla.decode_reference(q, c, table, seqlens, spec, causal=bad)
        with pytest.raises(TypeError, match="causal"):
            mla.compare(np.zeros((1, 2, 4, 128), np.float32), np.zeros((1, 4, 2), np.float32), q, c, table,
                        seqlens, spec, causal=bad)
    out, lse = mla.decode(q, c, table, seqlens, spec, causal=np.bool_(True))
    with pytest.raises(ValueError, match="lse"):
        mla.compare(out, lse.transpose(0, 2, 1).copy(), q, c, table, seqlens, spec)  # [b, s_q, h] is not FlashMLA's
    with pytest.raises(ValueError, match="out"):
        mla.compare(out[:, :1], lse, q, c, table, seqlens, spec)
    qn = q.copy()
    qn[0, 1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="q"):
        mla.decode(qn, c, table, seqlens, spec)
