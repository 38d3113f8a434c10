"""fp8lab.mla against independent oracles: numpy float64 attention, a numpy/ml_dtypes rewrite of
FlashMLA's FP8 cache quantiser, hand-computed byte counts, and a safetensors shard written here."""
import json
import math

import ml_dtypes
import numpy as np
import pytest

from fp8lab import mla
from shard_writer import write_safetensors

SMALL = mla.MlaSpec(hidden=64, heads=4, q_lora=32, kv_lora=128, nope=16, rope=8, v=16)


def bf16(a):
    return np.asarray(a, np.float32).astype(ml_dtypes.bfloat16).astype(np.float32)


def random_cache_inputs(spec, lens, seed, width=2.0):
    rng = np.random.default_rng(seed)
    lat = [bf16(rng.uniform(-width, width, (n, spec.kv_lora))) for n in lens]
    kpe = [bf16(rng.uniform(-width, width, (n, spec.rope))) for n in lens]
    q = rng.uniform(-1.5, 1.5, (len(lens), spec.heads, spec.kv_lora + spec.rope)).astype(np.float32)
    return lat, kpe, q


def numpy_attention(q, lat, kpe, scale):
    """Second formulation: plain float64 softmax attention of one sequence, all heads at once."""
    k = np.concatenate([lat, kpe], axis=1).astype(np.float64)  # [L, 576]
    s = q.astype(np.float64) @ k.T * scale                      # [H, L]
    m = s.max(axis=1, keepdims=True)
    e = np.exp(s - m)
    out = (e / e.sum(axis=1, keepdims=True)) @ lat.astype(np.float64)
    return out, (m[:, 0] + np.log(e.sum(axis=1)))


def test_spec_round_trip_and_errors():
    s = SMALL.replace(cache="fp8", rope_layout="half_split", num_splits=3, softmax_scale="0.125")
    assert mla.MlaSpec.from_json(s.to_json()) == s
    assert json.loads(s.to_json())["cache"] == "fp8"
    with pytest.raises(ValueError, match="heads"):
        SMALL.replace(heads=0).to_json()
    with pytest.raises(ValueError, match="cache"):
        SMALL.replace(cache="fp4").to_json()
    with pytest.raises(TypeError, match="spec"):
        mla.kv_bytes_per_token(42)
    with pytest.raises(ValueError, match="attn"):
        SMALL.replace(attn="fp8").to_json()
    assert mla.MlaSpec.from_json(SMALL.replace(wq_a="fp8").to_json()).wq_a == "fp8"


def test_kv_bytes_per_token_deepseek():
    b = mla.kv_bytes_per_token(mla.MlaSpec())
    # MHA: 128 heads x (192-wide K + 128-wide V) x 2 bytes; MLA: 576 x 2; FlashMLA FP8: 512 + 16 + 128.
    assert b == {"mha_bf16": 128 * 320 * 2, "mla_bf16": 1152, "mla_fp8": 656}
    print(f"\n[mla] KV bytes/token/layer: MHA {b['mha_bf16']}, MLA BF16 {b['mla_bf16']} "
          f"({b['mha_bf16'] / b['mla_bf16']:.1f}x less), MLA FP8 {b['mla_fp8']} ({b['mha_bf16'] / b['mla_fp8']:.1f}x less)")


def test_softmax_scales():
    assert mla.softmax_scale(mla.MlaSpec()) == np.float32((0.1 * math.log(40) + 1) ** 2 / math.sqrt(192))
    assert mla.softmax_scale(mla.MlaSpec(), "flashmla") == np.float32(1 / 24)


def test_init_weights_deterministic_and_realistic():
    w1, w2 = mla.init_weights(SMALL, 3), mla.init_weights(SMALL, 3)
    assert all(np.array_equal(w1[k], w2[k]) for k in w1)
    assert not np.array_equal(w1["wq_a"], mla.init_weights(SMALL, 4)["wq_a"])
    assert w1["wkv_b"].shape == (4 * 32, 128)
    assert np.array_equal(w1["wo"], bf16(w1["wo"]))  # BF16 values, like a checkpoint
    assert abs(w1["wkv_a"].std() * math.sqrt(SMALL.hidden) - 1) < 0.1  # std fan_in^-1/2


def test_forward_forms_agree_within_bound():
    w = mla.init_weights(SMALL, 1)
    x = bf16(np.random.default_rng(0).uniform(-1.7, 1.7, (9, SMALL.hidden)))
    r = mla.compare_forms(x, w, SMALL, start_pos=17)
    assert r["verdict"]["kind"] in ("bit-identical", "within-bound"), r["summary"]
    assert 0 < r["max_observed_over_bound"] <= 1
    a, n = mla.forward(x, w, SMALL, "absorbed", 17), mla.forward(x, w, SMALL, "naive", 17)
    assert np.array_equal(a["attn"], r["absorbed"]) and np.array_equal(n["attn"], r["naive"])
    assert np.array_equal(a["latent"], n["latent"])
    print(f"\n[mla] absorbed vs naive (BF16 projections, FP32 einsums): max |diff| {r['max_abs_difference']:.3g} "
          f"= {r['max_rel_difference']:.3g} of max |attn|; observed/bound {r['max_observed_over_bound']:.3f}")


def test_forward_rejects_bad_input():
    w = mla.init_weights(SMALL, 1)
    with pytest.raises(ValueError, match="form"):
        mla.forward(np.zeros((2, 64), np.float32), w, SMALL, form="fast")
    with pytest.raises(ValueError, match="x"):
        mla.forward(np.zeros((2, 63), np.float32), w, SMALL)
    with pytest.raises(ValueError, match="start_pos"):
        mla.forward(np.zeros((2, 64), np.float32), w, SMALL, start_pos=-1)
    bad = dict(w)
    bad["wo"] = bad["wo"][:-1]
    with pytest.raises(ValueError, match="wo"):
        mla.forward(np.zeros((2, 64), np.float32), bad, SMALL)
    nan = np.zeros((2, 64), np.float32)
    nan[1, 3] = np.nan
    with pytest.raises(ValueError, match="x"):
        mla.forward(nan, w, SMALL)


@pytest.mark.parametrize("cache", ["bf16", "fp8"])
@pytest.mark.parametrize("splits", [1, 3])
def test_decode_against_numpy_attention(cache, splits):
    spec = SMALL.replace(cache=cache, num_splits=splits)
    lens = [5, 0, 130, 64]
    lat, kpe, q = random_cache_inputs(spec, lens, 7)
    c, table, seqlens = mla.build_cache(lat, kpe, spec)
    out, lse = mla.decode(q, c, table, seqlens, spec)
    ref = mla.decode_reference(q, c, table, seqlens, spec)
    scale = float(mla.softmax_scale(spec))
    for b, n in enumerate(lens):
        if n == 0:
            assert np.all(out[b] == 0) and np.all(np.isposinf(lse[b]))
            continue
        # The oracle sees the values the cache holds (for FP8: the dequantised ones).
        la = lat[b] if cache == "bf16" else ref_dequantised(c, table[b], n, spec)
        o, l = numpy_attention(q[b], la, kpe[b], scale)
        np.testing.assert_allclose(ref["out"][b], o, rtol=1e-12, atol=1e-13)
        assert np.all(np.abs(out[b] - o) <= ref["out_bound"][b])
        assert np.all(np.abs(lse[b] - l) <= ref["lse_bound"][b])
    v = mla.compare(out, lse, q, c, table, seqlens, spec)
    assert v["ok"], v["out_summary"]
    tight = mla.compare(out, lse, q, c, table, seqlens, spec, scope="emulator")
    assert tight["ok"] and tight["max_lse_ratio"] >= v["max_lse_ratio"]
    with pytest.raises(ValueError, match="scope"):
        mla.compare(out, lse, q, c, table, seqlens, spec, scope="loose")


def ref_dequantised(c, table_row, n, spec):
    """FP8 cache rows -> latent values, written independently with ml_dtypes (FlashMLA layout)."""
    rows = []
    for t in range(n):
        row = c[table_row[t // spec.page], t % spec.page, 0]
        e = row[:spec.kv_lora].view(ml_dtypes.float8_e4m3fn).astype(np.float32)
        sc = row[spec.kv_lora:spec.kv_lora + 4 * (spec.kv_lora // 128)].view("<f4")
        rows.append(e * np.repeat(sc, 128))
    return np.array(rows, np.float32)


def flashmla_quantize(lat_bf16, kpe_bf16):
    """FlashMLA tests/quant.py (V32 layout) rewritten in numpy + ml_dtypes for one token."""
    nt = lat_bf16.shape[0] // 128
    out = np.zeros(lat_bf16.shape[0] + 4 * nt + 2 * kpe_bf16.shape[0], np.uint8)
    for i in range(nt):
        x = lat_bf16[i * 128:(i + 1) * 128]
        s = np.float32(np.abs(x).max()) / np.float32(448.0)
        s = np.float32(2.0) ** np.ceil(np.log2(np.maximum(s, np.float32(1e-4))))
        out[i * 128:(i + 1) * 128] = (x / s).astype(ml_dtypes.float8_e4m3fn).view(np.uint8)
        out[lat_bf16.shape[0] + 4 * i:lat_bf16.shape[0] + 4 * i + 4] = np.frombuffer(np.float32(s).tobytes(), np.uint8)
    out[lat_bf16.shape[0] + 4 * nt:] = kpe_bf16.astype(ml_dtypes.bfloat16).view(np.uint8)
    return out


def test_fp8_cache_bytes_match_flashmla_quantiser():
    spec = mla.MlaSpec(hidden=64, heads=2, q_lora=0, kv_lora=512, nope=16, rope=64, v=16, cache="fp8")
    rng = np.random.default_rng(5)
    lat = bf16(rng.standard_normal((70, 512)) * np.repeat(rng.uniform(0.01, 30, (70, 4)), 128, axis=1))
    lat[3, :128] = 0  # an all-zero tile: the 1e-4 clamp
    kpe = bf16(rng.standard_normal((70, 64)))
    c, table, _ = mla.build_cache([lat], [kpe], spec)
    assert c.shape == (2, 64, 1, 656) and c.dtype == np.uint8
    for t in range(70):
        expect = flashmla_quantize(lat[t], kpe[t])
        assert np.array_equal(c[table[0, t // 64], t % 64, 0], expect), f"token {t}"


def test_report_numbers_and_cli(capsys):
    from fp8lab import cli

    n = mla.report_numbers(tokens=128, heads=4, hidden=256)
    assert n["kv_bytes_per_token"]["mla_fp8"] == 656
    assert n["absorbed_vs_naive"]["verdict"] != "violation"
    # FP8 checkpoint wkv_b: still within its bound, and further apart than BF16's (2^-4 vs 2^-9 steps).
    f8 = n["absorbed_vs_naive_fp8_wkv_b"]
    assert f8["verdict"] != "violation" and 0 < f8["max_observed_over_bound"] <= 1
    assert f8["max_rel_difference"] > 2 * n["absorbed_vs_naive"]["max_rel_difference"]
    assert 0 < n["fp8_vs_bf16_cache"]["normwise_rel_error"] < 0.1
    assert cli.main(["mla-numbers", "--tokens", "64", "--heads", "2", "--hidden", "128"]) == 0
    assert "MLA FP8 656" in capsys.readouterr().out
    assert cli.main(["mla-numbers", "--tokens", "0"]) == 2


def test_fp8_vs_bf16_cache_error_on_realistic_inputs():
    """The report's number: attention output of the FP8 cache vs the BF16 cache, DeepSeek-V3 cache
    dims, latents and queries from the emulated projections (reduced hidden size and heads)."""
    spec = mla.MlaSpec(hidden=256, heads=8)
    w = mla.init_weights(spec, 11)
    x = bf16(np.random.default_rng(1).uniform(-1.7, 1.7, (192, spec.hidden)))
    r = mla.forward(x, w, spec, "absorbed")
    q = r["q_absorbed"][-1:]
    outs = {}
    for cache in ("bf16", "fp8"):
        s = spec.replace(cache=cache)
        c, table, lens = mla.build_cache([r["latent"]], [r["k_pe"]], s)
        outs[cache] = mla.decode(q, c, table, lens, s)
    o8, o16 = outs["fp8"][0].astype(np.float64), outs["bf16"][0].astype(np.float64)
    rel = np.linalg.norm(o8 - o16) / np.linalg.norm(o16)
    maxrel = np.abs(o8 - o16).max() / np.abs(o16).max()
    lse_diff = np.abs(outs["fp8"][1] - outs["bf16"][1]).max()
    print(f"\n[mla] FP8 vs BF16 latent cache (192 tokens, 8 heads): attention output normwise rel. error "
          f"{rel:.3g}, max abs / max |out| {maxrel:.3g}, max |lse diff| {lse_diff:.3g}")
    assert 1e-4 < rel < 0.1  # E4M3 has 3 mantissa bits: a few percent at most, never zero


def test_block_table_permutation_and_nan_slots():
    spec = SMALL.replace(num_splits=2)
    lat, kpe, q = random_cache_inputs(spec, [70, 3], 9)
    c, table, lens = mla.build_cache(lat, kpe, spec)
    out, lse = mla.decode(q, c, table, lens, spec)
    order = np.array([2, 0, 1], np.int32)
    c2, table2, _ = mla.build_cache(lat, kpe, spec, block_order=order)
    assert not np.array_equal(table, table2)
    o2, l2 = mla.decode(q, c2, table2, lens, spec)
    assert np.array_equal(out.view(np.uint32), o2.view(np.uint32)) and np.array_equal(lse.view(np.uint32), l2.view(np.uint32))
    dirty = c.copy()
    dirty[table[0, 1], 70 - 64:] = 0xFFFF  # NaN past sequence 0's length
    dirty[table[1, 0], 3:] = 0x7FC0
    o3, l3 = mla.decode(q, dirty, table, lens, spec)
    assert np.array_equal(out.view(np.uint32), o3.view(np.uint32)) and np.array_equal(lse.view(np.uint32), l3.view(np.uint32))


def test_wrong_softmax_scale_is_a_violation():
    spec = SMALL
    lat, kpe, q = random_cache_inputs(spec, [40], 4)
    q = q * 3
    c, table, lens = mla.build_cache(lat, kpe, spec)
    out, lse = mla.decode(q, c, table, lens, spec.replace(softmax_scale="flashmla"))
    v = mla.compare(out, lse, q, c, table, lens, spec)
    assert not v["ok"] and v["lse"]["kind"] == "violation"
    assert "violation" in v["lse_summary"]


def test_decode_rejects_bad_input():
    lat, kpe, q = random_cache_inputs(SMALL, [10], 1)
    c, table, lens = mla.build_cache(lat, kpe, SMALL)
    with pytest.raises(ValueError, match="q"):
        mla.decode(q[:, :2], c, table, lens, SMALL)
    with pytest.raises(TypeError, match="cache"):
        mla.decode(q, c.astype(np.int32), table, lens, SMALL)
    with pytest.raises(TypeError, match="cache"):
        mla.decode(q, c, table, lens, SMALL.replace(cache="fp8"))
    with pytest.raises(ValueError, match="block_table"):
        mla.decode(q, c, np.array([[5]], np.int32), lens, SMALL)
    with pytest.raises(ValueError, match="seqlens"):
        mla.decode(q, c, table, np.array([65], np.int32), SMALL)
    with pytest.raises(TypeError, match="seqlens"):
        mla.decode(q, c, table, np.array([1.0]), SMALL)
    with pytest.raises(ValueError, match="k_pe"):
        mla.build_cache(lat, [kpe[0][:-1]], SMALL)


@pytest.mark.parametrize("naming", ["hf", "converted"])
def test_load_deepseek_shard(tmp_path, naming):
    spec = mla.MlaSpec(hidden=256, heads=2, q_lora=128, kv_lora=128, nope=32, rope=16, v=32)
    w = mla.init_weights(spec, 21)
    rng = np.random.default_rng(2)
    tensors, expected = {}, {}
    pre = "model.layers.3.self_attn." if naming == "hf" else "layers.3.attn."
    for key, hf in mla.HF_NAMES.items():
        if key not in w:
            continue
        if naming == "converted":  # inference/convert.py: wq_a.weight, its scale wq_a.scale
            hf = key + ".weight"
        a = w[key]
        if a.ndim == 2:  # FP8 with one float32 multiplier per 128x128 block, as the checkpoint
            gr, gc = -(-a.shape[0] // 128), -(-a.shape[1] // 128)
            # DeepSeek's weight quantiser: block amax / 448 (times a random factor in [1, 2) so the
            # multipliers are not all powers of two).
            pad = np.zeros((gr * 128, gc * 128), np.float32)
            pad[:a.shape[0], :a.shape[1]] = np.abs(a)
            amax = pad.reshape(gr, 128, gc, 128).max(axis=(1, 3))
            sc = (amax / 448 * rng.uniform(1, 2, (gr, gc))).astype(np.float32)
            big = np.repeat(np.repeat(sc, 128, 0), 128, 1)[:a.shape[0], :a.shape[1]]
            q8 = (a / big).astype(ml_dtypes.float8_e4m3fn)
            tensors[pre + hf] = ("F8_E4M3", q8.view(np.uint8))
            tensors[pre + (key + ".scale" if naming == "converted" else hf + "_scale_inv")] = ("F32", sc)
            expected[key] = q8.astype(np.float32) * big
        else:
            tensors[pre + hf] = ("BF16", a.astype(ml_dtypes.bfloat16).view(np.uint16))
            expected[key] = a
    tensors[pre.replace("self_attn.", "").replace("attn.", "") + "mlp.gate.weight"] = ("BF16", np.zeros((2, 2), np.uint16))
    path = tmp_path / "model-00001-of-00001.safetensors"
    write_safetensors(path, tensors)
    loaded = mla.load_deepseek_shard(path, 3, spec)
    assert sorted(loaded) == sorted(expected)
    for k in expected:
        assert np.array_equal(loaded[k], expected[k].astype(np.float32)), k
    x = bf16(rng.uniform(-1.7, 1.7, (4, spec.hidden)))
    r = mla.compare_forms(x, loaded, spec)
    assert r["verdict"]["kind"] != "violation"
    with pytest.raises(ValueError, match="not found"):
        mla.load_deepseek_shard(path, 4, spec)
    with pytest.raises(ValueError, match="shape"):
        mla.load_deepseek_shard(path, 3, spec.replace(hidden=128))


@pytest.mark.parametrize("cache", ["bf16", "fp8"])
def test_decode_deepseek_dims_within_bound_and_wrong_scale_caught(cache):
    """Full DeepSeek-V3 cache dims (128 heads, 512 + 64): decode within its certified bound, and the
    same output judged against a spec with FlashMLA's default scale is a violation."""
    spec = mla.MlaSpec(num_splits=3, cache=cache)
    rng = np.random.default_rng(0)
    lens = [300, 0, 70]
    lat = [rng.standard_normal((n, 512)).astype(np.float32) for n in lens]
    kpe = [rng.standard_normal((n, 64)).astype(np.float32) for n in lens]
    q = (rng.standard_normal((3, 1, 128, 576)) * 0.3).astype(np.float32)  # FlashMLA's [b, s_q, h, d]
    c, table, seqlens = mla.build_cache(lat, kpe, spec)
    out, lse = mla.decode(q, c, table, seqlens, spec)
    assert out.shape == (3, 1, 128, 512) and lse.shape == (3, 128, 1)
    out3, lse3 = out[:, 0], lse[:, :, 0]
    v = mla.compare(out3, lse3, q[:, 0], c, table, seqlens, spec)
    assert v["ok"], v["out_summary"]
    assert 0.1 < v["max_out_ratio"] <= 1
    wrong = mla.compare(out3, lse3, q[:, 0], c, table, seqlens, spec.replace(softmax_scale="flashmla"))
    assert not wrong["ok"] and "violation" in wrong["lse_summary"]


def test_chunked_prefill_is_bit_identical():
    w = mla.init_weights(SMALL, 2)
    x = bf16(np.random.default_rng(3).uniform(-1.7, 1.7, (10, SMALL.hidden)))
    whole = mla.forward(x, w, SMALL, "naive", start_pos=5)
    head = mla.forward(x[:7], w, SMALL, "naive", start_pos=5)
    tail = mla.forward(x[7:], w, SMALL, "naive", start_pos=12, prefix=head)
    assert np.array_equal(tail["out"].view(np.uint32), whole["out"][7:].view(np.uint32))
    r = mla.compare_forms(x[7:], w, SMALL, start_pos=12, prefix=head)
    assert r["verdict"]["kind"] != "violation"
    with pytest.raises(TypeError, match="prefix"):
        mla.forward(x, w, SMALL, prefix=[1, 2])
    with pytest.raises(ValueError, match="prefix_k_pe"):
        mla.forward(x, w, SMALL, prefix={"latent": head["latent"], "k_pe": head["k_pe"][:-1]})
