"""DeepSeek-V3.2 lightning indexer (fp8lab.mla.index): a numpy + ml_dtypes re-formulation written
from the sources agrees bit for bit where the spec pins the arithmetic, and a float64 one within the
certified bound; mutations (no Hadamard scale, key scale twice) are caught; ties; bad input.

Sources the re-formulation is written from (not from emulator/mla/indexer.cpp):
- DeepSeek-V3.2-Exp inference/model.py Indexer.forward, rotate_activation (fast_hadamard_transform
  with scale=128**-0.5; its CUDA kernel for N=128: FP32 butterflies over index bits 0..6, then
  x * scale, then the BF16 store);
- inference/kernel.py act_quant_kernel(round_scale=True) (amax, max(amax, 1e-4),
  fast_round_scale(amax, 1/448) by exponent bits, clamp(x / s, -448, 448), E4M3 cast) and
  fp8_index_kernel (relu(acc) * q_s[h], sum over heads, * k_s);
- DeepGEMM sm90_fp8_mqa_logits.cuh (fmaxf(acc, 0) * w per head; per lane sum[k] += ... over heads
  8g + 2t (+1) (FMA: nvcc -fmad default); v = (sum0 + sum1) * scale_kv; two shfl_xor adds).
The tensor-core accumulators come from fp8lab.dot (accum's instruction model, itself checked
against MMA-Sim in test_accum.py) chained over the four k=32 chunks, and in one test from MMA-Sim's
WGMMA directly.
"""
from __future__ import annotations

import itertools
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest

import fp8lab
from fp8lab import mla

F32 = np.float32
BF16 = ml_dtypes.bfloat16
E4M3 = ml_dtypes.float8_e4m3fn
REDUCTIONS = ("v32_tilelang", "deepgemm_sm90", "per_head_scale")


def bf16(a) -> np.ndarray:
    return np.asarray(a, dtype=F32).astype(BF16).astype(F32)


def case(m=2, H=8, n=40, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    q = bf16(rng.standard_normal((m, H, 128)) * scale)
    k = rng.standard_normal((n, 128))
    k = bf16((k - k.mean(1, keepdims=True)) / k.std(1, keepdims=True))  # k_norm-like keys
    w = bf16(rng.standard_normal((m, H)))
    return q, k, w


# --- the re-formulation ---------------------------------------------------------------------------


def np_rotate(x, scaled=True):
    """fast_hadamard_transform for N = 128 on BF16 rows: FP32 butterflies, x * fl32(128**-0.5), BF16."""
    v = np.asarray(x, dtype=F32).reshape(-1, 128).copy()
    s = 1
    while s < 128:
        u = v.reshape(v.shape[0], 128 // (2 * s), 2, s)
        a, b = u[:, :, 0, :].copy(), u[:, :, 1, :].copy()
        u[:, :, 0, :], u[:, :, 1, :] = a + b, a - b
        v = u.reshape(-1, 128)
        s *= 2
    if scaled:
        v = v * F32(128 ** -0.5)
    return bf16(v)


def np_act_quant(x):
    """kernel.py act_quant_kernel(round_scale=True) on rows of 128: (E4M3 values, FP32 scales)."""
    x = np.asarray(x, dtype=F32)
    amax = np.maximum(np.abs(x).max(axis=1), F32(1e-4))
    t = (amax * F32(1 / 448.0)).astype(F32)
    bits = t.view(np.uint32)
    e = ((bits >> 23) & 0xFF).astype(np.int64) - 127 + ((bits & 0x7FFFFF) != 0)
    s = ((e + 127) << 23).astype(np.uint32).view(F32)
    y = np.clip(x / s[:, None], F32(-448), F32(448)).astype(E4M3).astype(F32)
    return y, s


def np_operands(q, k, w, scaled=True):
    m, H, _ = q.shape
    qe, qs = np_act_quant(np_rotate(q, scaled))
    ke, ks = np_act_quant(np_rotate(k, scaled))
    wf = bf16(w * F32(H ** -0.5))                               # weights_proj(x) * n_heads ** -0.5 (BF16)
    wf = (wf * qs.reshape(m, H)).astype(F32) * F32(128 ** -0.5)  # * q_scale * softmax_scale (FP32)
    return qe.reshape(m, H, 128), ke, ks, wf.astype(F32)


def acc_fp8lab(qe, ke):
    """(m, H, n) chained hopper_fp8 instructions over the four 32-element chunks, C starting at 0."""
    m, H, _ = qe.shape
    n = ke.shape[0]
    a = np.broadcast_to(qe[:, :, None, :], (m, H, n, 128))
    b = np.broadcast_to(ke[None, None, :, :], (m, H, n, 128))
    c = np.zeros((m, H, n), dtype=F32)
    for t in range(4):
        c = fp8lab.dot(np.ascontiguousarray(a[..., 32 * t:32 * t + 32]), np.ascontiguousarray(b[..., 32 * t:32 * t + 32]),
                       c, instruction="hopper_fp8")
    return c


def fma32(x, y, z):
    """Correctly rounded float32 fma, elementwise: x*y is exact in float64; where x*y + z is exact in
    float64 too (TwoSum error 0) one rounding to float32 is right, elsewhere Fractions decide."""
    x, y, z = (np.asarray(v, dtype=np.float64) for v in (x, y, z))
    p = x * y
    s = p + z
    bb = s - p
    err = (p - (s - bb)) + (z - bb)
    out = s.astype(F32)
    for i in zip(*np.nonzero(err != 0)):
        exact = Fraction(float(p[i])) + Fraction(float(z[i]))
        lo = np.float32(float(exact))
        cand = [lo, np.nextafter(lo, F32(np.inf)), np.nextafter(lo, F32(-np.inf))]
        best = min(cand, key=lambda c: (abs(Fraction(float(c)) - exact), int(np.asarray(c).view(np.uint32)) & 1))
        out[i] = best
    return out


def np_reduce(acc, wf, ks, reduction):
    """(m, n) logits from acc (m, H, n), folded weights (m, H), key scales (n,)."""
    m, H, n = acc.shape
    relu = lambda x: np.maximum(x, F32(0))  # noqa: E731
    if reduction == "deepgemm_sm90":
        v = []
        for t in range(4):
            sums = []
            for p in range(2):
                h0 = 2 * t + p
                s = (relu(acc[:, h0, :]) * wf[:, h0, None]).astype(F32)
                for g in range(1, H // 8):
                    h = 8 * g + h0
                    s = fma32(relu(acc[:, h, :]), np.broadcast_to(wf[:, h, None], (m, n)), s)
                sums.append(s)
            v.append(((sums[0] + sums[1]) * ks[None, :]).astype(F32))
        return ((v[0] + v[1]) + (v[2] + v[3])).astype(F32)
    per_head = reduction == "per_head_scale"
    total = None
    for h in range(H):
        x = (acc[:, h, :] * ks[None, :]).astype(F32) if per_head else acc[:, h, :]
        t = (relu(x) * wf[:, h, None]).astype(F32)
        total = t if total is None else (total + t).astype(F32)
    return total if per_head else (total * ks[None, :]).astype(F32)


def np_mask(logits, starts, ends):
    out = np.array(logits, dtype=F32)
    cols = np.arange(out.shape[1])
    out[~((cols[None, :] >= starts[:, None]) & (cols[None, :] < ends[:, None]))] = -np.inf
    return out


def np_topk(logits, topk, starts, ends):
    m, n = logits.shape
    out = np.full((m, topk), -1, dtype=np.int32)
    for i in range(m):
        ids = np.arange(starts[i], ends[i])
        order = ids[np.lexsort((ids, -logits[i, ids].astype(np.float64)))]
        take = order[:topk]
        out[i, :len(take)] = take
    return out


def np_exact_quantised(qe, ke, ks, wf):
    dots = np.einsum("mhd,nd->mhn", qe.astype(np.float64), ke.astype(np.float64))  # exact: <= 42 bits
    return ks[None, :].astype(np.float64) * np.einsum("mh,mhn->mn", wf.astype(np.float64), np.maximum(dots, 0))


def np_exact_unquantised(q, k, w):
    m, H, _ = q.shape
    had = np.array([[(-1) ** bin(i & j).count("1") for j in range(128)] for i in range(128)], dtype=np.float64)
    qr = q.astype(np.float64) @ had.T / np.sqrt(128)
    kr = k.astype(np.float64) @ had.T / np.sqrt(128)
    dots = np.einsum("mhd,nd->mhn", qr, kr)
    return np.einsum("mh,mhn->mn", w.astype(np.float64) / np.sqrt(H) / np.sqrt(128), np.maximum(dots, 0))


# --- agreement ---------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bit_exact_against_the_numpy_reformulation(reduction):
    q, k, w = case(m=3, H=16, n=48, seed=1)
    starts, ends = np.array([0, 5, 0], np.int32), np.array([48, 30, 7], np.int32)
    spec = {"reduction": reduction, "topk": 10}
    r = mla.index(q, k, w, starts=starts, ends=ends, spec=spec)
    qe, ke, ks, wf = np_operands(q, k, w)
    np.testing.assert_array_equal(r["q_rot"], np_rotate(q).reshape(q.shape))
    np.testing.assert_array_equal(r["q_e4m3"].view(E4M3).astype(F32), qe)
    np.testing.assert_array_equal(r["k_scale"], ks)
    np.testing.assert_array_equal(r["weights_folded"], wf)
    want = np_mask(np_reduce(acc_fp8lab(qe, ke), wf, ks, reduction), starts, ends)
    np.testing.assert_array_equal(r["logits"].view(np.uint32), want.view(np.uint32))
    np.testing.assert_array_equal(r["indices"], np_topk(want, 10, starts, ends))


def test_accumulators_agree_with_mmasim_wgmma():
    """The logits from MMA-Sim's Hopper WGMMA m64n8k32 (E4M3, chained over 4 chunks) accumulators."""
    pytest.importorskip("torch")
    sim_module = pytest.importorskip("mmasim.nv_ptx.sim")
    import torch

    q, k, w = case(m=2, H=8, n=16, seed=2)
    qe, ke, ks, wf = np_operands(q, k, w)
    sim = sim_module.WGMMA("Hopper", "m64n8k32.f32.e4m3.e4m3")
    A = np.zeros((64, 128), F32)
    A[:16] = qe.reshape(16, 128)
    acc = np.zeros((16, 16), F32)
    for j0 in range(0, 16, 8):
        c = torch.zeros(64, 8)
        for t in range(4):
            a = torch.from_numpy(A[:, 32 * t:32 * t + 32].copy()).to(torch.float8_e4m3fn)
            b = torch.from_numpy(ke[j0:j0 + 8, 32 * t:32 * t + 32].T.copy()).to(torch.float8_e4m3fn)
            c = sim(a, b, c).float()
        acc[:, j0:j0 + 8] = c.numpy()[:16]
    for reduction in ("v32_tilelang", "deepgemm_sm90"):
        got = mla.index(q, k, w, spec={"reduction": reduction, "topk": 4})["logits"]
        want = np_reduce(acc.reshape(2, 8, 16), wf, ks, reduction)
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32), err_msg=reduction)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_float64_reformulation_within_the_certified_bound(reduction):
    q, k, w = case(m=2, H=16, n=40, seed=3, scale=3.0)
    spec = {"reduction": reduction, "topk": 8}
    got = mla.index(q, k, w, spec=spec)["logits"].astype(np.float64)
    qe, ke, ks, wf = np_operands(q, k, w)
    exact = np_exact_quantised(qe, ke, ks, wf)
    bound = mla.index_bound(q, k, w, spec=spec)
    slack = np.abs(exact) * 2.0 ** -40  # float64 evaluation of the reference itself
    assert (np.abs(got - exact) <= bound + slack).all()
    assert (bound < np.abs(exact) * 0.05 + 1e-30).mean() > 0.9  # the bound is not vacuous
    np.testing.assert_allclose(mla.index_exact(q, k, w, spec=spec, inputs="quantised"), exact, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(mla.index_exact(q, k, w, spec=spec, inputs="unquantised"),
                               np_exact_unquantised(q, k, w), rtol=1e-9, atol=1e-12)


def test_thread_count_does_not_change_bits():
    q, k, w = case(m=2, H=8, n=5000, seed=4)
    before = fp8lab.num_threads()
    try:
        fp8lab.set_num_threads(1)
        one = mla.index(q, k, w, spec={"topk": 64, "reduction": "deepgemm_sm90"})
        fp8lab.set_num_threads(3)
        three = mla.index(q, k, w, spec={"topk": 64, "reduction": "deepgemm_sm90"})
    finally:
        fp8lab.set_num_threads(before)
    np.testing.assert_array_equal(one["logits"].view(np.uint32), three["logits"].view(np.uint32))
    np.testing.assert_array_equal(one["indices"], three["indices"])


# --- mutations ---------------------------------------------------------------------------------


def _violations(kernel_logits, q, k, w, spec):
    """Elements where a kernel's logits leave the emulator's certified interval around the exact
    quantised indexer, and whether its selection fails the verdict."""
    qe, ke, ks, wf = np_operands(q, k, w)
    exact = np_exact_quantised(qe, ke, ks, wf)
    bound = mla.index_bound(q, k, w, spec=spec)
    outside = np.abs(kernel_logits.astype(np.float64) - exact) > bound + np.abs(exact) * 2.0 ** -40
    return int(outside.sum())


@pytest.mark.parametrize("reduction", ("v32_tilelang", "deepgemm_sm90"))
def test_mutation_missing_hadamard_scale_is_caught(reduction):
    q, k, w = case(m=2, H=8, n=40, seed=5)
    spec = {"reduction": reduction, "topk": 8}
    qe, ke, ks, wf = np_operands(q, k, w, scaled=False)   # rotate_activation without 128**-0.5
    mutant = np_reduce(acc_fp8lab(qe, ke), wf, ks, reduction)
    good = mla.index(q, k, w, spec=spec)["logits"]
    assert (mutant.view(np.uint32) != good.view(np.uint32)).mean() > 0.5  # the bit-exact check fails
    assert _violations(mutant, q, k, w, spec) > 0.5 * mutant.size          # and the bound check does


@pytest.mark.parametrize("reduction", ("v32_tilelang", "deepgemm_sm90"))
def test_mutation_key_scale_applied_twice_is_caught(reduction):
    q, k, w = case(m=2, H=8, n=200, seed=6)
    spec = {"reduction": reduction, "topk": 16}
    qe, ke, ks, wf = np_operands(q, k, w)
    assert len(np.unique(ks)) > 1  # otherwise a second scale would not reorder tokens
    mutant = (np_reduce(acc_fp8lab(qe, ke), wf, ks, reduction) * ks[None, :]).astype(F32)
    assert _violations(mutant, q, k, w, spec) > 0.5 * mutant.size
    v = mla.selection_verdict(np_topk(mutant, 16, np.zeros(2, int), np.full(2, 200)), q, k, w, spec=spec)
    assert not v.ok and v.message.startswith(f"query {v.query}: token ")


# --- selections and ties -----------------------------------------------------------------------


def brute_changes(a, b, K):
    """min |A \\ B| over every admissible selection A of a and B of b (tiny rows only)."""
    def admissible(x):
        t = np.sort(x)[::-1][K - 1]
        return [set(c) for c in itertools.combinations(range(len(x)), K)
                if all(x[j] >= t for j in c) and all(j in c for j in range(len(x)) if x[j] > t)]
    return min(len(A - B) for A in admissible(a) for B in admissible(b))


def test_tie_aware_change_count_matches_brute_force():
    rng = np.random.default_rng(7)
    for _ in range(300):
        n = int(rng.integers(1, 9))
        K = int(rng.integers(1, n + 1))
        a = rng.integers(0, 4, n).astype(np.float64)  # few values: many exact ties
        b = rng.integers(0, 4, n).astype(np.float64)
        got = mla.selection_changes(a[None], b[None], K)
        assert got["changed"][0] == brute_changes(a, b, K), (a, b, K)
        assert got["ties_a"][0] == int((a == np.sort(a)[::-1][K - 1]).sum())


def test_exact_ties_in_the_indexer():
    """Identical keys give exactly equal logits: the emulator breaks ties to the lower token, and
    the verdict accepts any choice among tokens tied at the k-th logit, and nothing else."""
    q, k, w = case(m=1, H=8, n=8, seed=8)
    keys = np.repeat(k, 8, axis=0)  # tokens 8g .. 8g+7 are copies of key g
    r = mla.index(q, keys, w, spec={"topk": 12})
    lg = r["logits"][0]
    assert len(np.unique(lg)) <= 8
    t = np.sort(lg)[::-1][11]
    above, at = np.flatnonzero(lg > t), np.flatnonzero(lg == t)
    assert len(above) < 12 < len(above) + len(at)  # the boundary cuts a group of ties
    sel = r["indices"][0]
    np.testing.assert_array_equal(np.sort(sel), np.sort(np.concatenate([above, at[:12 - len(above)]])))
    other = np.concatenate([above, at[::-1][:12 - len(above)]])[::-1].astype(np.int32)  # other ties, other order
    assert mla.selection_verdict(other[None], q, keys, w, spec={"topk": 12}).ok
    assert mla.selection_changes(lg[None], lg[None], 12)["changed"][0] == 0
    below = np.flatnonzero(lg < t)[0]
    bad = other.copy()
    bad[0] = below
    v = mla.selection_verdict(bad[None], q, keys, w, spec={"topk": 12})
    assert not v.ok and f"token {below} " in v.message and "below" in v.message


def test_verdict_messages_name_the_first_offending_query():
    q, k, w = case(m=3, H=8, n=30, seed=9)
    starts, ends = np.array([0, 0, 10], np.int32), np.array([30, 3, 30], np.int32)
    r = mla.index(q, k, w, starts=starts, ends=ends, spec={"topk": 5})
    ok = r["indices"][:, ::-1].copy()  # any order within the set, padding anywhere
    assert mla.check_selection(ok, r["logits"], 5, starts=starts, ends=ends) == ""
    bad = ok.copy()
    bad[2, 1] = 3  # outside query 2's tokens [10, 30)
    assert mla.check_selection(bad, r["logits"], 5, starts=starts, ends=ends).startswith(
        "query 2: position 1 holds index 3, outside the query's tokens [10, 30)")
    bad = ok.copy()
    bad[1, np.flatnonzero(bad[1] == -1)[0]] = bad[1, np.flatnonzero(bad[1] != -1)[0]]
    assert mla.check_selection(bad, r["logits"], 5, starts=starts, ends=ends).startswith("query 1: token ")
    assert "selected twice" in mla.check_selection(bad, r["logits"], 5, starts=starts, ends=ends)
    bad = ok.copy()
    bad[0, 0] = -1
    assert mla.check_selection(bad, r["logits"], 5, starts=starts, ends=ends).startswith("query 0: 4 tokens selected")


def test_topk_stability_reports_changes_against_exact():
    q, k, w = case(m=2, H=8, n=600, seed=10)
    s = mla.topk_stability(q, k, w, spec={"topk": 64})
    assert s["reference"] == "unquantised" and s["total_selected"] == 128
    assert s["changed"].tolist() == mla.selection_changes(s["fp8"]["logits"], s["exact"], 64)["changed"].tolist()
    assert 0 < s["total_changed"] < 128  # FP8 moves some boundary tokens, not the selection
    sq = mla.topk_stability(q, k, w, spec={"topk": 64}, reference="quantised")
    assert sq["total_changed"] <= s["total_changed"]


# --- bad input -----------------------------------------------------------------------------------


def test_bad_input_is_a_clear_error():
    q, k, w = case(m=2, H=8, n=20, seed=11)
    with pytest.raises(ValueError, match=r"topk: 21 is larger than the context \(20 tokens\)"):
        mla.index(q, k, w, topk=21)
    with pytest.raises(TypeError, match="q: expected float32 .* got dtype float64"):
        mla.index(q.astype(np.float64), k, w, topk=4)
    with pytest.raises(TypeError, match="weights: expected float32"):
        mla.index(q, k, w.astype(np.int32), topk=4)
    with pytest.raises(ValueError, match=r"k: expected shape \(tokens, 128\)"):
        mla.index(q, k[:, :64], w, topk=4)
    with pytest.raises(ValueError, match=r"weights: expected shape \(2, 8\)"):
        mla.index(q, k, w[:, :4], topk=4)
    with pytest.raises(ValueError, match=r"q: expected shape \(queries, 16, 128\)"):
        mla.index(q, k, w, spec={"heads": 16, "topk": 4})
    for bad, what in ((np.nan, "nan"), (np.inf, "inf")):
        k2 = k.copy()
        k2[3, 5] = bad
        with pytest.raises(ValueError, match=rf"k: element \(3, 5\) is {what}"):
            mla.index(q, k2, w, topk=4)
    q2 = q.copy()
    q2[1, 2, 3] = 0.1
    with pytest.raises(ValueError, match=r"q: element \(1, 2, 3\) = .* is not a BF16 value"):
        mla.index(q2, k, w, topk=4)
    with pytest.raises(ValueError, match=r"q/k/weights: the FP32 logit of query 0, token \d+ is NaN .* too large"):
        mla.index(q, k, bf16(w * 1e37), topk=4)  # +inf + -inf among the heads
    with pytest.raises(ValueError, match=r"starts/ends: query 1 has range \[5, 21\)"):
        mla.index(q, k, w, topk=4, starts=np.array([0, 5]), ends=np.array([20, 21]))
    with pytest.raises(ValueError, match=r"ends: expected shape \(2,\)"):
        mla.index(q, k, w, topk=4, ends=np.array([20]))
    with pytest.raises(ValueError, match="IndexerSpec.reduction: unknown value 'fast'"):
        mla.index(q, k, w, spec={"reduction": "fast", "topk": 4})
    with pytest.raises(ValueError, match="IndexerSpec.heads = 12: expected a multiple of 8"):
        mla.index(case(H=12)[0], k, case(H=12)[2], spec={"reduction": "deepgemm_sm90", "topk": 4})
    with pytest.raises(ValueError, match="IndexerSpec.instruction"):
        mla.index(q, k, w, spec={"instruction": "hopper_bf16", "topk": 4})
    with pytest.raises(ValueError, match="IndexerSpec: unknown key 'top_k'|top_k"):
        mla.index(q, k, w, spec={"top_k": 4})
    with pytest.raises(ValueError, match="topk"):
        mla.check_selection(np.zeros((2, 4), np.int32), np.zeros((2, 20)), 0)
    with pytest.raises(ValueError, match=r"indices: expected shape \(2, 4\)"):
        mla.check_selection(np.zeros((2, 3), np.int32), np.zeros((2, 20)), 4)
    with pytest.raises(ValueError, match="logits: NaN at query 0, token 2"):
        mla.check_selection(np.zeros((1, 1), np.int32), np.array([[0.0, 1.0, np.nan]]), 1)


def test_spec_round_trips_and_defaults_are_v32():
    s = mla.indexer_spec()
    assert s == {"heads": 64, "instruction": "hopper_fp8", "reduction": "v32_tilelang",
                 "scale_rule": "deepseek_v32_ue8m0", "topk": 2048}
    assert mla.indexer_spec({"reduction": "deepgemm_sm90"})["reduction"] == "deepgemm_sm90"
    with pytest.raises(ValueError, match=r"IndexerSpec.topk = 0: expected an integer in \[1,"):
        mla.indexer_spec({"topk": 0})
    with pytest.raises(ValueError, match="IndexerSpec.topk"):
        mla.indexer_spec({"topk": "8"})


def test_indexer_fields_are_listed_with_the_other_specs():
    from fp8lab import _core
    fields = _core.spec_fields("indexer")
    defaults = {f["key"]: f["default"] for f in fields}
    assert defaults == mla.indexer_spec()
    assert "v32_tilelang" in next(f for f in fields if f["key"] == "reduction")["choices"]
    with pytest.raises(ValueError, match="expected one of .*indexer"):
        _core.spec_fields("indexr")
