"""fp8lab.mla with spec wkv_b="fp8" (FP8 checkpoint weights as DeepSeek-V3 runs them) against
independent oracles: a numpy/ml_dtypes rewrite of DeepSeek-V3's act_quant and 128x128 weight
quantisation fed to fp8lab.gemm, a float64 numpy attention of the dequantised weights, and a
safetensors shard written here."""
import json

import ml_dtypes
import numpy as np
import pytest

from fp8lab import gemm as emulated_gemm
from fp8lab import mla, quant
from shard_writer import write_safetensors

SPEC = mla.MlaSpec(hidden=64, heads=2, q_lora=32, kv_lora=256, nope=32, rope=8, v=32, wkv_b="fp8")


def deepseek_quant(x, rows, cols=128):
    """DeepSeek-V3 inference/kernel.py act_quant_kernel, per rows x cols block, in float32:
    amax = max |x| (floored at 1e-4), s = amax / 448, y = x / s cast to E4M3 (nearest even).
    Returns (E4M3 bit patterns uint8, float32 scales [blocks_r, blocks_c])."""
    x = np.asarray(x, np.float32)
    R, C = x.shape
    gr, gc = -(-R // rows), -(-C // cols)
    pad = np.zeros((gr * rows, gc * cols), np.float32)
    pad[:R, :C] = np.abs(x)
    amax = np.maximum(pad.reshape(gr, rows, gc, cols).max(axis=(1, 3)), np.float32(1e-4))
    s = (amax / np.float32(448)).astype(np.float32)
    big = np.repeat(np.repeat(s, rows, 0), cols, 1)[:R, :C]
    y = (x / big).astype(np.float32).astype(ml_dtypes.float8_e4m3fn)
    return y.view(np.uint8), s


def e4m3_values(bits):
    return bits.view(ml_dtypes.float8_e4m3fn).astype(np.float64)


def dequant(bits, s, rows, cols=128):
    big = np.repeat(np.repeat(s.astype(np.float64), rows, 0), cols, 1)[:bits.shape[0], :bits.shape[1]]
    return e4m3_values(bits) * big


def numpy_attention(q_nope, q_pe, latent, k_pe, W, spec, scale):
    """Second formulation: float64 causal attention of the shared inputs with weights W [H*(nope+v), C]."""
    T, H = q_nope.shape[0], spec.heads
    W = W.reshape(H, spec.nope + spec.v, spec.kv_lora)
    lat = latent.astype(np.float64)
    out = np.zeros((T, H, spec.v))
    for h in range(H):
        k = lat @ W[h, :spec.nope].T                     # [T, nope]
        v = lat @ W[h, spec.nope:].T                     # [T, v]
        s = (q_nope[:, h].astype(np.float64) @ k.T + q_pe[:, h].astype(np.float64) @ k_pe.astype(np.float64).T) * scale
        s = np.where(np.tril(np.ones((T, T), bool)), s, -np.inf)
        e = np.exp(s - s.max(axis=1, keepdims=True))
        out[:, h] = (e / e.sum(axis=1, keepdims=True)) @ v
    return out


def test_spec_validation():
    assert json.loads(SPEC.to_json())["wkv_b"] == "fp8"
    assert mla.MlaSpec.from_json(SPEC.to_json()) == SPEC
    with pytest.raises(ValueError, match='MlaSpec.attn = "fp8": expected fp32 or bf16'):
        SPEC.replace(attn="fp8").to_json()
    with pytest.raises(ValueError, match='MlaSpec.decode_p = "fp8": expected fp32 or bf16'):
        SPEC.replace(decode_p="fp8").to_json()
    with pytest.raises(ValueError, match='MlaSpec.wkv_b = "bf16_tc": expected fp32, bf16 or fp8'):
        SPEC.replace(wkv_b="bf16_tc").to_json()


def test_naive_keys_equal_numpy_act_quant_and_gemm():
    w = mla.init_weights(SPEC, 4)
    rng = np.random.default_rng(1)
    latent = (rng.standard_normal((5, SPEC.kv_lora)) * rng.uniform(0.1, 3, (5, 1))).astype(np.float32)
    kv, bound = mla.wkv_b_naive(latent, w, SPEC)
    N = SPEC.heads * (SPEC.nope + SPEC.v)
    assert kv.shape == bound.shape == (5, SPEC.heads, SPEC.nope + SPEC.v)
    abits, ascale = deepseek_quant(latent, 1)
    wbits, wscale = deepseek_quant(w["wkv_b"], 128)
    qa = quant.from_parts(abits, ascale, "e4m3", (1, 128), "deepseek")
    qw = quant.from_parts(wbits, wscale, "e4m3", (128, 128), "deepseek")
    expected = emulated_gemm(qa, qw)  # promoted Hopper FP8, DeepGEMM combine, BF16 out: the defaults
    assert np.array_equal(kv.reshape(5, N), expected)
    # And within the certified bound of the exact products with the dequantised weights.
    W = dequant(wbits, wscale, 128)
    exact = latent.astype(np.float64) @ W.T
    slack = 1e-12 * (np.abs(latent.astype(np.float64)) @ np.abs(W).T)  # float64 matmul's own rounding
    err = np.abs(kv.reshape(5, N) - exact)
    assert (err <= bound.reshape(5, N) + slack).all()
    assert (err / bound.reshape(5, N)).max() > 0.2  # not vacuous


def test_wrong_scale_in_naive_linear_is_a_violation():
    w = mla.init_weights(SPEC, 9)
    rng = np.random.default_rng(3)
    latent = rng.standard_normal((3, SPEC.kv_lora)).astype(np.float32)
    wbits, wscale = deepseek_quant(w["wkv_b"], 128)
    right = dict(w, wkv_b_e4m3=e4m3_values(wbits).astype(np.float32), wkv_b_scale_inv=wscale)
    kv, bound = mla.wkv_b_naive(latent, right, SPEC)
    # "scale instead of scale_inv": the checkpoint read with the reciprocal multiplier.
    wrong = dict(right, wkv_b_scale_inv=(1 / wscale).astype(np.float32))
    kv_wrong, bound_wrong = mla.wkv_b_naive(latent, wrong, SPEC)
    exact = latent.astype(np.float64) @ dequant(wbits, wscale, 128).T
    N = SPEC.heads * (SPEC.nope + SPEC.v)
    assert (np.abs(kv.reshape(3, N) - exact) <= bound.reshape(3, N) * (1 + 1e-9)).all()
    outside = np.abs(kv_wrong.reshape(3, N) - exact) > bound_wrong.reshape(3, N)
    assert outside.mean() > 0.9


def test_compare_forms_fp8_wkvb_within_bound_and_exact_uses_dequantised_weights():
    w = mla.init_weights(SPEC, 42)
    rng = np.random.default_rng(7)
    x = rng.uniform(-1.7, 1.7, (8, SPEC.hidden)).astype(ml_dtypes.bfloat16).astype(np.float32)
    r = mla.compare_forms(x, w, SPEC, start_pos=10)
    assert r["verdict"]["kind"] != "violation", r["verdict"]
    assert (np.abs(r["naive"] - r["exact"]) <= r["bound_naive"]).all()
    assert (np.abs(r["absorbed"] - r["exact"]) <= r["bound_absorbed"]).all()
    assert r["max_observed_over_bound"] > 0.1
    # The exact reference is the attention of the dequantised E4M3 weights (numpy, float64).
    f = mla.forward(x, w, SPEC, "naive", start_pos=10)
    wbits, wscale = deepseek_quant(w["wkv_b"], 128)
    scale = mla.softmax_scale(SPEC)
    ref = numpy_attention(f["q_nope"], f["q_pe"], f["latent"], f["k_pe"], dequant(wbits, wscale, 128), SPEC, scale)
    assert np.allclose(r["exact"], ref, rtol=1e-9, atol=1e-12)
    plain = numpy_attention(f["q_nope"], f["q_pe"], f["latent"], f["k_pe"], w["wkv_b"].astype(np.float64), SPEC, scale)
    assert not np.allclose(r["exact"], plain, rtol=1e-4, atol=1e-6)
    diff = r["absorbed"].astype(np.float64) - r["naive"]
    print(f"[mla fp8 wkv_b] absorbed vs naive: normwise {np.linalg.norm(diff) / np.linalg.norm(r['exact']):.3g}, "
          f"max {np.abs(diff).max():.3g}, observed/bound {r['max_observed_over_bound']:.3f}")


def test_checkpoint_weights_bad_input():
    w = mla.init_weights(SPEC, 1)
    x = np.zeros((2, SPEC.hidden), np.float32)
    wbits, wscale = deepseek_quant(w["wkv_b"], 128)
    with pytest.raises(ValueError, match="wkv_b_scale_inv"):
        mla.compare_forms(x, dict(w, wkv_b_e4m3=e4m3_values(wbits).astype(np.float32)), SPEC)
    bad = e4m3_values(wbits).astype(np.float32)
    bad[0, 0] = 0.3  # not an E4M3 value
    with pytest.raises(ValueError, match="wkv_b_e4m3.*not an E4M3 value"):
        mla.compare_forms(x, dict(w, wkv_b_e4m3=bad, wkv_b_scale_inv=wscale), SPEC)
    with pytest.raises(ValueError, match="wkv_b_fp8"):
        mla.compare_forms(x, dict(w, wkv_b_e4m3=e4m3_values(wbits).astype(np.float32),
                                  wkv_b_scale_inv=np.full_like(wscale, -1.0)), SPEC)
    with pytest.raises(ValueError, match="latent"):
        mla.wkv_b_naive(np.zeros((2, 7), np.float32), w, SPEC)


def test_shard_fp8_wkv_b_used_as_stored(tmp_path):
    spec = mla.MlaSpec(hidden=128, heads=2, q_lora=0, kv_lora=128, nope=32, rope=16, v=32, wkv_b="fp8")
    w = mla.init_weights(spec, 21)
    rng = np.random.default_rng(5)
    pre = "model.layers.0.self_attn."
    # wkv_b in FP8 with multipliers amax/448 times a factor in [1, 2) (not what re-quantising the
    # dequantised weights would give), the rest in BF16.
    a = w["wkv_b"]
    amax = np.abs(a).max()
    sc = np.array([[amax / 448 * rng.uniform(1, 2)]], np.float32)
    q8 = (a / sc[0, 0]).astype(np.float32).astype(ml_dtypes.float8_e4m3fn)
    tensors = {pre + "kv_b_proj.weight": ("F8_E4M3", q8.view(np.uint8)),
               pre + "kv_b_proj.weight_scale_inv": ("F32", sc)}
    for key in ("wq", "wkv_a", "kv_norm", "wo"):
        tensors[pre + mla.HF_NAMES[key]] = ("BF16", w[key].astype(ml_dtypes.bfloat16).view(np.uint16))
    path = tmp_path / "model-00001-of-00001.safetensors"
    write_safetensors(path, tensors)
    loaded = mla.load_deepseek_shard(path, 0, spec, fp8_wkv_b=True)
    assert np.array_equal(loaded["wkv_b_e4m3"], q8.astype(np.float32))
    assert np.array_equal(loaded["wkv_b_scale_inv"], sc)
    assert "wkv_b_e4m3" not in mla.load_deepseek_shard(path, 0, spec)
    x = rng.uniform(-1.7, 1.7, (4, spec.hidden)).astype(ml_dtypes.bfloat16).astype(np.float32)
    r = mla.compare_forms(x, loaded, spec)
    assert r["verdict"]["kind"] != "violation", r["verdict"]
    f = mla.forward(x, loaded, spec, "absorbed")
    W = q8.astype(np.float64) * np.float64(sc[0, 0])
    ref = numpy_attention(f["q_nope"], f["q_pe"], f["latent"], f["k_pe"], W, spec, mla.softmax_scale(spec))
    assert np.allclose(r["exact"], ref, rtol=1e-9, atol=1e-12)
    # Without the stored elements the loader's float32 weights are re-quantised: other scales, other bits.
    plain = {k: v for k, v in loaded.items() if not k.startswith("wkv_b_")}
    assert not np.array_equal(mla.compare_forms(x, plain, spec)["naive"], r["naive"])
