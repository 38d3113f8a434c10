"""MLA attn_ops="deepseek_reference" against a numpy + ml_dtypes replay of the op sequence of
deepseek-ai/DeepSeek-V3 inference/model.py MLA.forward (both attn_impl branches) in its default
dtype BF16, and against torch CPU running that sequence.

The replay is written from the reference, op by op (comments quote it); inside each FP32
accumulation it uses fp8lab's stated order (emulator/mla/numerics.hpp: 16 lanes, then a balanced
tree; P.V and the softmax sum in key order) and a correctly rounded FP32 exp, because those are
what the reference leaves to torch's build (forward.hpp step 2r). Torch CPU's own order and exp
are compared as counts, and its output is checked against fp8lab's certified bound."""
import math

import ml_dtypes
import numpy as np
import pytest

from fp8lab import mla

SPEC = mla.MlaSpec(hidden=96, heads=4, q_lora=48, kv_lora=128, nope=32, rope=16, v=32,
                   attn="bf16", attn_ops="deepseek_reference")
TOKENS = 24


def bf16(a):
    return np.asarray(a, np.float32).astype(ml_dtypes.bfloat16).astype(np.float32)


def dot16(a, b):
    """FP32 dot over the last axis in numerics.hpp's order: lane j sums the products i = j mod 16
    in increasing i (each product rounded to FP32), then ((0+1)+(2+3))+... ."""
    a, b = np.broadcast_arrays(np.asarray(a, np.float32), np.asarray(b, np.float32))
    n = a.shape[-1]
    lanes = np.zeros(a.shape[:-1] + (16,), np.float32)
    for i0 in range(0, n, 16):
        w = min(16, n - i0)
        lanes[..., :w] = lanes[..., :w] + a[..., i0:i0 + w] * b[..., i0:i0 + w]
    width = 16
    while width > 1:
        width //= 2
        lanes = lanes[..., 0:2 * width:2] + lanes[..., 1:2 * width:2]
    return lanes[..., 0]


def softmax_f32(scores):
    """`.softmax(dim=-1, dtype=torch.float32)` of BF16 scores: max, exp (correctly rounded: the
    float64 exp of an FP32 argument rounded to FP32), the sum in key order, a division."""
    s = scores.astype(np.float32)
    m = s.max(axis=-1, keepdims=True)
    e = np.exp((s - m).astype(np.float64)).astype(np.float32)
    total = np.zeros(s.shape[:-1] + (1,), np.float32)
    for j in range(s.shape[-1]):
        total = total + e[..., j:j + 1]
    return e / total


def seq_sum(p, v):
    """sum_j p_j v_j in FP32, key order (the einsum over t): p [..., t], v [t, ..., d]."""
    acc = np.zeros(p.shape[:-1] + (v.shape[-1],), np.float32)
    for j in range(p.shape[-1]):
        acc = acc + p[..., j:j + 1] * v[j]
    return acc


def deepseek_scale(spec):
    # MLA.__init__: self.softmax_scale = self.qk_head_dim ** -0.5, times mscale^2 under YaRN.
    scale = (spec.nope + spec.rope) ** -0.5
    if spec.yarn.max_seq_len > spec.yarn.original_seq_len:
        mscale = 0.1 * spec.yarn.mscale * math.log(spec.yarn.factor) + 1.0
        scale = scale * mscale * mscale
    return np.float32(scale)  # torch's BF16 * Python float multiplies in FP32 (opmath)


def causal_mask(t):
    # Transformer.forward: torch.full((seqlen, seqlen), float("-inf")).triu_(1)
    return np.triu(np.full((t, t), -np.inf, np.float32), 1)


def replay(r, w, spec, form, reference=True):
    """The attention before wo ([T, heads, v]) from the shared inputs r (q_nope, q_pe, latent,
    k_pe) as inference/model.py computes it. reference=False drops the einsum's own rounding of
    the scores (fp8lab's "fused" sequence), the mutation the test must tell apart."""
    T, H = r["latent"].shape[0], spec.heads
    scale = deepseek_scale(spec)
    wkv_b = bf16(w["wkv_b"]).reshape(H, spec.nope + spec.v, spec.kv_lora)
    R = bf16 if reference else (lambda a: a)
    if form == "naive":
        # kv = self.wkv_b(self.kv_norm(kv)): a BF16 linear, FP32 accumulation, rounded to BF16.
        kv = bf16(dot16(r["latent"][:, None, None, :], wkv_b[None]))  # [T, H, nope+v]
        k_nope, v = kv[..., :spec.nope], kv[..., spec.nope:]
        k = np.concatenate([k_nope, np.broadcast_to(r["k_pe"][:, None, :], (T, H, spec.rope))], -1)
        q = np.concatenate([r["q_nope"], r["q_pe"]], -1)
        # scores = torch.einsum("bshd,bthd->bsht", q, k_cache) * self.softmax_scale
        qk = R(dot16(q[:, :, None, :], np.transpose(k, (1, 0, 2))[None]))  # [s, h, t]
        scores = bf16(qk * scale)
    else:
        # q_nope = torch.einsum("bshd,hdc->bshc", q_nope, wkv_b[:, :self.qk_nope_head_dim])
        w_uk = np.transpose(wkv_b[:, :spec.nope, :], (0, 2, 1))  # [h, c, d]
        q_abs = bf16(dot16(r["q_nope"][:, :, None, :], w_uk[None]))  # [s, h, c]
        c, kpe = r["latent"], r["k_pe"]
        # (einsum("bshc,btc->bsht", q_nope, kv_cache) + einsum("bshr,btr->bsht", q_pe, pe_cache)) * scale
        sn = R(dot16(q_abs[:, :, None, :], c[None, None]))
        sp = R(dot16(r["q_pe"][:, :, None, :], kpe[None, None]))
        scores = bf16(R(sn + sp) * scale) if reference else bf16(dot16(
            np.concatenate([q_abs, r["q_pe"]], -1)[:, :, None, :],
            np.concatenate([c, kpe], -1)[None, None]) * scale)
    # scores += mask.unsqueeze(1): BF16 + (0 or -inf)
    scores = bf16(scores + causal_mask(T)[:, None, :])
    # scores = scores.softmax(dim=-1, dtype=torch.float32).type_as(x)
    p = bf16(softmax_f32(scores))
    if form == "naive":
        # x = torch.einsum("bsht,bthd->bshd", scores, self.v_cache)
        return bf16(np.stack([seq_sum(p[:, h, :], v[:, h, :]) for h in range(H)], 1))
    # x = torch.einsum("bsht,btc->bshc", scores, self.kv_cache)
    o_lat = bf16(seq_sum(p, r["latent"]))  # [s, h, c]
    # x = torch.einsum("bshc,hdc->bshd", x, wkv_b[:, -self.v_head_dim:])
    w_uv = wkv_b[:, spec.nope:, :]  # [h, d, c]
    return bf16(dot16(o_lat[:, :, None, :], w_uv[None]))


def torch_reference(r, w, spec, form):
    """The same op sequence in torch CPU BF16, as model.py writes it (no fp8lab order pinned)."""
    torch = pytest.importorskip("torch")
    b = torch.bfloat16
    T, H = r["latent"].shape[0], spec.heads
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, np.float32)).to(b)[None]  # noqa: E731
    scale = (spec.nope + spec.rope) ** -0.5
    mscale = 0.1 * spec.yarn.mscale * math.log(spec.yarn.factor) + 1.0
    scale = scale * mscale * mscale
    wkv_b = t(w["wkv_b"])[0].view(H, -1, spec.kv_lora)
    q_nope, q_pe = t(r["q_nope"]), t(r["q_pe"])
    kv_cache, pe_cache = t(r["latent"]), t(r["k_pe"])
    mask = torch.full((T, T), float("-inf")).triu_(1).to(b)
    if form == "naive":
        kv = torch.nn.functional.linear(kv_cache, t(w["wkv_b"])[0]).view(1, T, H, -1)
        k_nope, v = torch.split(kv, [spec.nope, spec.v], dim=-1)
        k = torch.cat([k_nope, pe_cache.unsqueeze(2).expand(-1, -1, H, -1)], dim=-1)
        q = torch.cat([q_nope, q_pe], dim=-1)
        scores = torch.einsum("bshd,bthd->bsht", q, k) * scale
    else:
        q_abs = torch.einsum("bshd,hdc->bshc", q_nope, wkv_b[:, :spec.nope])
        scores = (torch.einsum("bshc,btc->bsht", q_abs, kv_cache) +
                  torch.einsum("bshr,btr->bsht", q_pe, pe_cache)) * scale
    scores += mask.unsqueeze(1)
    scores = scores.softmax(dim=-1, dtype=torch.float32).type_as(q_nope)
    if form == "naive":
        x = torch.einsum("bsht,bthd->bshd", scores, v)
    else:
        x = torch.einsum("bsht,btc->bshc", scores, kv_cache)
        x = torch.einsum("bshc,hdc->bshd", x, wkv_b[:, -spec.v:])
    return x[0].float().numpy()


@pytest.fixture(scope="module")
def run():
    w = mla.init_weights(SPEC, 5)
    x = np.random.default_rng(3).normal(0, 1, (TOKENS, SPEC.hidden)).astype(np.float32)
    out = {f: mla.forward(x, w, SPEC, form=f) for f in ("naive", "absorbed")}
    fused = {f: mla.forward(x, w, SPEC.replace(attn_ops="fused"), form=f) for f in ("naive", "absorbed")}
    return x, w, out, fused


def test_scale_is_the_references():
    assert deepseek_scale(SPEC) == np.float32(mla.softmax_scale(SPEC))


@pytest.mark.parametrize("form", ["naive", "absorbed"])
def test_bit_exact_against_replay(run, form):
    _, w, out, fused = run
    r = out[form]
    # The shared inputs are BF16 (the reference's tensors are).
    for k in ("q_nope", "q_pe", "latent", "k_pe"):
        assert np.array_equal(r[k], bf16(r[k])), k
    got = r["attn"]
    want = replay(r, w, SPEC, form)
    assert got.shape == want.shape == (TOKENS, SPEC.heads, SPEC.v)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), \
        f"{np.sum(got != want)} of {got.size} differ from the replay"
    # The mutation: without the einsum's own BF16 rounding of the scores, the replay is fp8lab's
    # fused sequence instead (bit for bit), which differs from the reference's.
    single = replay(r, w, SPEC, form, reference=False)
    assert np.array_equal(fused[form]["attn"], single)
    ndiff = int(np.sum(single != want))
    assert ndiff > 0
    print(f"\n[mla-ref] {form}: deepseek_reference = replay in all {got.size} elements; "
          f"the fused sequence differs in {ndiff}")


@pytest.mark.parametrize("form", ["naive", "absorbed"])
def test_bound_and_torch(run, form):
    x, w, out, fused = run
    cf = mla.compare_forms(x, w, SPEC)
    assert cf["verdict"]["kind"] in ("bit-identical", "within-bound"), cf["summary"]
    exact = cf["exact"]
    got, bound = cf[form], cf[f"bound_{form}"]
    assert np.array_equal(got, out[form]["attn"])
    err = np.abs(got.astype(np.float64) - exact)
    assert np.all(err <= bound)
    fb = mla.compare_forms(x, w, SPEC.replace(attn_ops="fused"))[f"bound_{form}"]
    assert np.all(bound >= fb) and np.any(bound > fb)  # the extra roundings add to the bound
    tr = torch_reference(out[form], w, SPEC, form)
    ref_diff = int(np.sum(tr != got))
    fused_diff = int(np.sum(tr != fused[form]["attn"]))
    # torch's FP32 accumulation order and exp are its own (forward.hpp step 2r): its bits may
    # differ where they cross a BF16 rounding boundary, but it stays inside fp8lab's bound of the
    # exact attention, and the reference mode reproduces it far better than the fused sequence.
    assert np.all(np.abs(tr.astype(np.float64) - exact) <= bound)
    assert ref_diff * 4 <= fused_diff
    print(f"\n[mla-ref] {form}: torch CPU vs deepseek_reference {ref_diff} of {got.size} differ, "
          f"vs fused {fused_diff}; max |err|/bound {np.max(err / bound):.3g}")


def test_fp8_wkv_b_within_bound():
    # FP8 checkpoint weights (naive: the FP8 linear, absorbed: the dequantised weights) under the
    # reference's score sequence: both forms stay within their certified bounds.
    spec = SPEC.replace(wkv_b="fp8")
    w = mla.init_weights(spec, 2)
    x = np.random.default_rng(4).normal(0, 1, (8, spec.hidden)).astype(np.float32)
    cf = mla.compare_forms(x, w, spec, start_pos=5)
    assert cf["verdict"]["kind"] == "within-bound", cf["summary"]
    for form in ("naive", "absorbed"):
        assert np.all(np.abs(cf[form].astype(np.float64) - cf["exact"]) <= cf[f"bound_{form}"])


def test_bad_specs():
    with pytest.raises(ValueError, match="attn"):
        SPEC.replace(attn="fp32").to_json()
    with pytest.raises(ValueError, match="wq_b"):
        SPEC.replace(wq_b="fp32").to_json()
    with pytest.raises(ValueError, match="attn_ops"):
        SPEC.replace(attn_ops="deepseek").to_json()
    assert mla.MlaSpec.from_json(SPEC.to_json()) == SPEC
