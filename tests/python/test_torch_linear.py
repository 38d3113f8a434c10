"""fp8lab.torch.Fp8Linear: each of the three GEMMs bit-identical to quantising its operands by the
recipe row and calling fp8lab.gemm (ragged shapes included); the DeepSeek quantiser re-formulated in
numpy + ml_dtypes from DeepSeek-V3's act_quant as an independent oracle (which catches a wrong scale
convention); the fp32 recipe against torch's nn.Linear in float64; thread-count independence."""
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ml_dtypes = pytest.importorskip("ml_dtypes")

import fp8lab  # noqa: E402
import fp8lab.torch as ft  # noqa: E402
from fp8lab.torch.linear import _scale_block  # noqa: E402
from fp8lab.torch.recipes import resolve  # noqa: E402

EMULATED = [r for r in ft.recipes() if ft.recipe(r)["kind"] == "emulated"]
# Ragged on purpose: no dimension a multiple of 128 except where a full tile is wanted too.
T, IN, OUT = 200, 264, 136


def _operand(x, spec):
    if spec["fmt"] == "bf16":
        return (fp8lab.encode(x, "bf16").astype(np.uint32) << 16).view(np.float32)
    if spec["fmt"] == "fp32":
        return x
    return fp8lab.quantize(x, tuple(spec["tile"]), spec["fmt"], spec["rule"])


def _rht(x):
    """TE's RHT along K: pad K with zeros to a multiple of 16, then fp8lab.rht16."""
    k = -(-x.shape[1] // 16) * 16
    return fp8lab.rht16(np.pad(x, ((0, 0), (0, k - x.shape[1]))).astype(np.float32))


def _gemm(a, b, spec, rng=None):
    """A pass that names a GEMM recipe row: quantise each operand by the row and multiply by the
    row (fp8lab's own recipe= entry points); an explicit pass: by its operand specs and keywords.
    Steps (recipes.PASS_STEPS): the RHT on both operands first; stochastically rounded operands
    take 8-bit words from rng, A's before B's."""
    if spec.get("rht16"):
        a, b = _rht(a), _rht(b)
    sr = spec.get("stochastic_rounding", [])
    kw = {s: {"rbits": rng.integers(0, 256, size=x.shape, dtype=np.uint32)} if s in sr else {}
          for s, x in (("a", a), ("b", b))}
    if "gemm_recipe" in spec:
        g = spec["gemm_recipe"]
        return fp8lab.gemm(fp8lab.quantize(a, recipe=g, operand="a", **kw["a"]),
                           fp8lab.quantize(b, recipe=g, operand="b", **kw["b"]), recipe=g)
    assert not sr  # the explicit passes here (bf16) round to nearest
    return fp8lab.gemm(_operand(a, spec["a"]), _operand(b, spec["b"]), **spec["gemm"])


def _expected(row, x, w, dy, role="", name="Fp8Linear", seed=0):
    """The three passes written out from the recipe row (the documented definitions); random bits
    from PCG64 seeded with (seed, crc32 of the layer's name), Dgrad's before Wgrad's."""
    p = row["passes"]
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    y = _gemm(x, w, p["fprop"])
    dx = _gemm(dy, np.ascontiguousarray(w.T), p["dgrad"], rng)
    cache = row["cache_attn_out"] if role == "attn_out" and "cache_attn_out" in row else row["cache"]
    xc = x
    if cache["from"] == "cached":
        xc = fp8lab.quantize(x, tuple(cache["tile"]), cache["fmt"], cache["rule"]).dequantize().astype(np.float32)
    dw = _gemm(np.ascontiguousarray(dy.T), np.ascontiguousarray(xc.T), p["wgrad"], rng)
    return y, dx, dw


def _data(seed=0, t=T, i=IN, o=OUT):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((t, i)).astype(np.float32)
    x[3, :] *= 50  # an outlier token: fine-grained tiles and per-tensor scales part ways here
    w = (rng.standard_normal((o, i)) * 0.05).astype(np.float32)
    dy = (rng.standard_normal((t, o)) * 1e-3).astype(np.float32)
    return x, w, dy


def _run(layer, x, dy):
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    y = layer(xt)
    y.backward(torch.from_numpy(dy))
    return y.detach().numpy(), xt.grad.numpy(), layer.weight.grad.numpy()


def _layer(row, w, role=""):
    layer = ft.Fp8Linear(w.shape[1], w.shape[0], recipe=row, role=role)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w))
    return layer


@pytest.mark.parametrize("name", EMULATED)
def test_three_gemms_bit_identical_to_quantize_and_gemm(name):
    row = ft.recipe(name)
    # The BF16 tensor-core model runs instruction by instruction and the block-scaled (tcgen05) ones cost
    # more than the Hopper FP8 kernel: keep them small, still ragged (K = 136 = 4 x 32 + 8; Wgrad's K = 40).
    block_scaled = any(_scale_block(p["gemm"].get("instruction")) for p in resolve(row).values())
    small = name == "bf16" or block_scaled
    x, w, dy = _data(1, *((40, 136, 72) if small else (T, IN, OUT)))
    got = _run(_layer(row, w), x, dy)
    want = _expected(row, x, w, dy)
    for what, g, e in zip(("fprop", "dgrad", "wgrad"), got, want):
        assert g.dtype == np.float32 and g.shape == e.shape
        np.testing.assert_array_equal(g.view(np.uint32), e.astype(np.float32).view(np.uint32), err_msg=f"{name} {what}")


def test_attn_out_layer_caches_e5m6_with_power_of_two_scales():
    row = ft.recipe("deepseek_fp8")
    assert row["cache_attn_out"]["fmt"] == "e5m6"
    x, w, dy = _data(2)
    got = _run(_layer(row, w, role="attn_out"), x, dy)
    want = _expected(row, x, w, dy, role="attn_out")
    plain = _expected(row, x, w, dy)
    np.testing.assert_array_equal(got[2], want[2].astype(np.float32))
    assert not np.array_equal(want[2], plain[2])  # the E5M6 cache really changes Wgrad's operand


def test_ue8m0_cache_retile_equals_fp8lab_retile():
    """Power-of-two scales: the cached 1x128 copy re-tiled to 128x1 (the wgrad operand, built by
    dequantise + quantise of the transpose) has the bits of fp8lab.retile, a second formulation."""
    row = ft.recipe("deepseek_fp8_ue8m0")
    x, _, _ = _data(3)
    c = row["cache"]
    q = fp8lab.quantize(x, tuple(c["tile"]), c["fmt"], c["rule"])
    ours = fp8lab.quantize(np.ascontiguousarray(q.dequantize().astype(np.float32).T), (1, 128), "e4m3", "deepseek_ue8m0")
    theirs = fp8lab.retile(q, (128, 1))
    np.testing.assert_array_equal(ours.bits, theirs.bits.T)
    np.testing.assert_array_equal(ours.scale_values, theirs.scale_values.T)


# --- an independent oracle: DeepSeek-V3 act_quant (inference/kernel.py) in numpy + ml_dtypes ------
def _act_quant(x, tile):
    """s = max(amax, 1e-4) / 448 in float32, q = cast_e4m3(x / s) per tile (ragged tiles over their
    valid elements). Returns (values as float32 e4m3 values, scales per tile)."""
    tr, tc = tile
    r, c = x.shape
    tr = tr or r
    tc = tc or c
    q = np.empty_like(x)
    s_all = np.empty(((r + tr - 1) // tr, (c + tc - 1) // tc), np.float32)
    for bi, i in enumerate(range(0, r, tr)):
        for bj, j in enumerate(range(0, c, tc)):
            blk = x[i:i + tr, j:j + tc]
            amax = np.maximum(np.max(np.abs(blk)), np.float32(1e-4))
            s = np.float32(amax / np.float32(448.0))
            q[i:i + tr, j:j + tc] = (blk / s).astype(ml_dtypes.float8_e4m3fn).astype(np.float32)
            s_all[bi, bj] = s
    return q, s_all


def _oracle_fprop(x, w):
    qa, sa = _act_quant(x, (1, 128))
    qb, sb = _act_quant(w, (128, 128))
    a = fp8lab.from_parts(fp8lab.encode(qa, "e4m3"), sa, "e4m3", (1, 128), "deepseek")
    b = fp8lab.from_parts(fp8lab.encode(qb, "e4m3"), sb, "e4m3", (128, 128), "deepseek")
    return fp8lab.gemm(a, b, accumulate="promoted", promote_every=128, combine="deepgemm", out="bf16")


def test_fprop_matches_numpy_act_quant_oracle_and_catches_a_wrong_scale_convention():
    x, w, dy = _data(4)
    oracle = _oracle_fprop(x, w).astype(np.float32)
    y, _, _ = _run(_layer(ft.recipe("deepseek_fp8"), w), x, dy)
    np.testing.assert_array_equal(y, oracle)
    # A test recipe whose weights take power-of-two scales (a UE8M0 rule where the row promises
    # DeepSeek-V3's FP32 scales): the oracle sees different bits.
    wrong = ft.recipe("deepseek_fp8")
    wrong["name"] = "wrong_weight_rule"
    wrong["passes"]["fprop"] = {"gemm_recipe": {"base": "deepseek_v3_fp8_linear", "b": {"rule": "deepseek_ue8m0"}}}
    y_wrong, _, _ = _run(_layer(wrong, w), x, dy)
    assert not np.array_equal(y_wrong, oracle)
    # A floor of the wrong size (amax floored at 100 instead of 1e-4, as in the act_quant history's
    # "clamped the wrong way"). E4M3 is floating point, so the normwise error against the exact
    # product barely moves (tested below): only a bit-level oracle sees such a bug.
    bad = ft.recipe("deepseek_fp8")
    bad["name"] = "floor_too_high"
    rule = fp8lab.scale_rule("deepseek")
    rule.update(name="bad", epsilon=100.0)
    rule.pop("epsilon_hex")
    bad["passes"]["fprop"] = {"gemm_recipe": {"base": "deepseek_v3_fp8_linear", "b": {"rule": rule}}}
    exact = x.astype(np.float64) @ w.astype(np.float64).T
    rel = lambda d: np.linalg.norm(d - exact) / np.linalg.norm(exact)  # noqa: E731
    y_bad, _, _ = _run(_layer(bad, w), x, dy)
    assert not np.array_equal(y_bad, oracle)
    assert rel(y) < 0.1 and rel(y_bad) < 0.1


def test_training_rows_take_formats_tiles_and_rules_from_the_emulator_table():
    """#17: the training table restates no format, tile, rule or GEMM spec of the emulator's GEMM
    recipe table: every FP8 pass names a row of it, and the FP8 activation caches are the named
    row's activation operand (the attention-output cache: the UE8M0 row's, in the paper's E5M6)."""
    import inspect

    from fp8lab.torch import recipes as R

    src = inspect.getsource(R)
    for literal in ('"e4m3"', '"hopper_fp8"', '"deepgemm"', '"deepseek"', "promote_every="):
        assert literal not in src, literal
    names = set(fp8lab.recipes())
    for name in EMULATED:
        row = ft.recipe(name)
        for p in ("fprop", "dgrad", "wgrad"):
            spec = row["passes"][p]
            if "gemm_recipe" not in spec:  # only the BF16 row, which is not a block-scaled GEMM
                assert spec["a"] == spec["b"] == {"fmt": "bf16"}, (name, p)
                continue
            g = spec["gemm_recipe"]
            assert (g if isinstance(g, str) else g["base"]) in names, (name, p)

    def cached(recipe, **edits):
        a = fp8lab.recipe(recipe)["a"]
        return {"from": "cached", "fmt": a["format"], "tile": list(a["tile"]), "rule": a["rule"], **edits}

    assert ft.recipe("deepseek_fp8")["cache"] == cached("deepseek_v3_fp8_linear")
    assert ft.recipe("deepseek_fp8")["cache_attn_out"] == cached("deepseek_v31_fp8_ue8m0", fmt="e5m6")
    assert ft.recipe("deepseek_fp8_ue8m0")["cache"] == cached("deepseek_v31_fp8_ue8m0")
    assert ft.recipe("deepseek_fp8_no_promotion")["cache"] == cached("deepseek_v3_fp8_no_promotion")
    # What those rows hold, from DeepSeek-V3 inference act_quant (1x128 E4M3, rule "deepseek").
    assert cached("deepseek_v3_fp8_linear") == {"from": "cached", "fmt": "e4m3", "tile": [1, 128], "rule": "deepseek"}


def test_fp32_recipe_agrees_with_nn_linear_in_float64_to_rounding():
    x, w, dy = _data(5)
    y, dx, dw = _run(_layer(ft.recipe("fp32"), w), x, dy)
    ref = torch.nn.Linear(IN, OUT, bias=False).double()
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(w).double())
    x64 = torch.from_numpy(x).double().requires_grad_(True)
    y64 = ref(x64)
    y64.backward(torch.from_numpy(dy).double())
    u = 2.0 ** -24
    for got, want, a, b, k in ((y, y64.detach().numpy(), np.abs(x), np.abs(w).T, IN),
                               (dx, x64.grad.numpy(), np.abs(dy), np.abs(w), OUT),
                               (dw, ref.weight.grad.numpy(), np.abs(dy).T, np.abs(x), T)):
        bound = 1.01 * k * u * (a.astype(np.float64) @ b.astype(np.float64))  # |fl(sum) - sum| <= k u sum|ab|
        assert np.all(np.abs(got - want) <= bound)


def test_bias_and_leading_dims():
    x, w, dy = _data(6, 24, 136, 40)
    lin = torch.nn.Linear(136, 40, bias=True)
    layer = ft.Fp8Linear.from_linear(lin, "deepseek_fp8")
    y = layer(torch.from_numpy(x).view(2, 12, 136))
    assert y.shape == (2, 12, 40)
    plain = _expected(ft.recipe("deepseek_fp8"), x, lin.weight.detach().numpy(), dy)[0]
    np.testing.assert_array_equal(y.detach().view(24, 40).numpy(), (plain.astype(np.float32) + lin.bias.detach().numpy()))


def test_emulated_gemms_do_not_depend_on_fp8lab_thread_count():
    x, w, dy = _data(7)
    row = ft.recipe("deepseek_fp8")
    before = fp8lab.num_threads()
    try:
        fp8lab.set_num_threads(1)
        one = _run(_layer(row, w), x, dy)
        fp8lab.set_num_threads(2)
        two = _run(_layer(row, w), x, dy)
    finally:
        fp8lab.set_num_threads(before)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


def test_empty_batch_gives_empty_output_and_zero_weight_gradient():
    x, w, dy = _data(8)
    got = _run(_layer(ft.recipe("deepseek_fp8"), w), x[:0], dy[:0])
    assert got[0].shape == (0, OUT) and got[1].shape == (0, IN)
    assert np.all(got[2] == 0)


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match=r"unknown recipe 'fp9'.*deepseek_fp8.*tensorwise_fp8"):
        ft.Fp8Linear(128, 128, recipe="fp9")
    row = ft.recipe("deepseek_fp8")
    row["passes"]["fprop"] = {"a": {"fmt": "e4m3", "tile": [1, 96], "rule": "deepseek"},
                              "b": {"fmt": "e4m3", "tile": [128, 128], "rule": "deepseek"},
                              "gemm": {"accumulate": "promoted", "promote_every": 128, "out": "bf16"}}
    row["name"] = "tile96"
    with pytest.raises(ValueError, match=r"cannot tile fprop.*\[1, 96\].*K = 256.*128"):
        ft.Fp8Linear(256, 128, recipe=row)
    ft.Fp8Linear(96, 128, recipe=row)  # K = 96 fits in one tile: fine
    tw = ft.recipe("deepseek_fp8_no_promotion")
    tw["passes"]["dgrad"] = {"gemm_recipe": {"base": "deepseek_v3_fp8_no_promotion", "a": {"tile": [1, 128]}}}
    with pytest.raises(ValueError, match=r"cannot tile dgrad.*tensorcore"):
        ft.Fp8Linear(128, 256, recipe=tw)
    layer = ft.Fp8Linear(136, 72)
    x = torch.zeros(4, 136)
    x[2, 7] = float("nan")
    with pytest.raises(ft.NonFiniteError, match=r"fprop input x holds nan at \[2, 7\]"):
        layer(x)
    with pytest.raises(ValueError, match="last dimension is 100"):
        layer(torch.zeros(4, 100))
    # A GEMM row the emulator's table refuses: named with the pass.
    bad = ft.recipe("deepseek_fp8")
    bad["passes"]["wgrad"] = {"gemm_recipe": "no_such_gemm_row"}
    with pytest.raises(ValueError, match=r"passes.wgrad.gemm_recipe: .*no_such_gemm_row.*deepseek_v3_fp8_linear"):
        ft.Fp8Linear(128, 128, recipe=bad)
    with pytest.raises(ValueError, match="kind must be"):
        ft.recipe({"name": "x", "kind": "fp7", "passes": {}})
