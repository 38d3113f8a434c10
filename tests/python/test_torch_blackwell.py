"""The training lab's Blackwell recipes (DeepGEMM SM100 FP8, MXFP8 by TransformerEngine and torchao
RCEIL, NVIDIA's NVFP4): rows that name the emulator's GEMM rows, why the power-of-two recipes train bit-identically
on ordinary data and where they part, determinism with the same seed, and bad inputs. Each Linear's
three GEMMs against quantise + fp8lab.gemm: test_torch_linear.py (parametrised over every row)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fp8lab  # noqa: E402
import fp8lab.torch as ft  # noqa: E402
from fp8lab.torch.recipes import PASSES, resolve  # noqa: E402

BLACKWELL = {"deepgemm_sm100_fp8": "deepgemm_sm100_fp8", "mxfp8_te": "mxfp8_te",
             "mxfp8_torchao_rceil": "mxfp8_torchao_rceil"}


def _base(spec):
    g = spec["gemm_recipe"]
    return g if isinstance(g, str) else g["base"]


def test_rows_name_the_gemm_rows_and_wgrad_keeps_fp32():
    for name, gemm_row in BLACKWELL.items():
        row = ft.recipe(name)
        assert [_base(row["passes"][p]) for p in PASSES] == [gemm_row] * 3, name
        specs = resolve(row)
        assert specs["wgrad"]["gemm"]["out"] == "fp32" and specs["fprop"]["gemm"]["out"] == "bf16"
        assert specs["fprop"]["gemm"]["accumulate"] == "tensorcore"
        assert specs["fprop"]["gemm"]["instruction"] == "blackwell_tcgen05_mxf8f6f4_f32_e4m3"
    sm100 = resolve(ft.recipe("deepgemm_sm100_fp8"))
    # DeepGEMM's 1D1D Wgrad: 1x128 along tokens on both operands; the FP8 cache is the row's activation operand.
    assert sm100["wgrad"]["b"] == {"fmt": "e4m3", "tile": [1, 128], "rule": "deepgemm_ue8m0"}
    assert ft.recipe("deepgemm_sm100_fp8")["cache"] == {"from": "cached", "fmt": "e4m3", "tile": [1, 128],
                                                        "rule": "deepgemm_ue8m0"}
    mx = resolve(ft.recipe("mxfp8_te"))
    assert all(mx[p][s]["tile"] == [1, 32] and mx[p][s]["rule"] == "te_mxfp8" for p in mx for s in "ab")
    assert ft.recipe("mxfp8_te")["cache"] == {"from": "input"}


def _fprop(name, x, w):
    layer = ft.Fp8Linear(w.shape[1], w.shape[0], recipe=name)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w))
        return layer(torch.from_numpy(x)).numpy()


def test_power_of_two_blocks_agree_unless_an_element_falls_below_e4m3s_normal_range():
    """E4M3 bits of x / 2^e are x's bits with the exponent shifted, while x / 2^e stays normal: then
    1x128 UE8M0 tiles and 1x32 E8M0 blocks give the same products (why the report's curves coincide).
    A 32-block five decades below its 128-tile's amax underflows under the 1x128 scale only."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 128)).astype(np.float32)
    w = (rng.standard_normal((16, 128)) * 0.05).astype(np.float32)
    base = _fprop("deepgemm_sm100_fp8", x, w)
    for other in ("mxfp8_te", "mxfp8_torchao_rceil"):
        np.testing.assert_array_equal(_fprop(other, x, w), base)
    x[0, :32] *= 100.0
    x[0, 32:64] *= 1e-4
    x[0, 64:] = 0.0
    w[:, :32] = 0.0  # row 0's output is the small block's alone
    sm100, mx = _fprop("deepgemm_sm100_fp8", x, w), _fprop("mxfp8_te", x, w)
    assert np.all(sm100[0] == 0) and np.all(mx[0] != 0) and np.array_equal(sm100[1:], mx[1:])
    # Under the 1x128 scale (2^-2 here) elements 32..63 (~1e-4) sit below E4M3's subnormals: they vanish.
    q = fp8lab.quantize(x, (1, 128), "e4m3", "deepgemm_ue8m0")
    assert np.all(q.dequantize()[0, 32:64] == 0) and not np.all(
        fp8lab.quantize(x, (1, 32), "e4m3", "te_mxfp8").dequantize()[0, 32:64] == 0)


def test_same_seed_same_bits():
    kw = dict(model="tiny", steps=2, batch=2, seq=16, eval_every=2, eval_batches=1, gemm_sample_every=1,
              cache_dir=False, progress=False)
    a = ft.train(["mxfp8_te"], seeds=[4], **kw)["runs"][0]
    b = ft.train(["mxfp8_te"], seeds=[4], **kw)["runs"][0]
    for key in ("train_loss", "grad_norm", "val", "gemm_error"):
        assert a[key] == b[key], key
    assert len(a["train_loss"]) == 2 and not a["diverged"]


def test_bad_inputs_are_clear_errors():
    row = ft.recipe("deepgemm_sm100_fp8")
    row["name"] = "tile48"
    row["passes"]["fprop"] = {"gemm_recipe": {"base": "deepgemm_sm100_fp8", "a": {"tile": [1, 48]}}}
    with pytest.raises(ValueError, match=r"cannot tile fprop: operand a's tile \[1, 48\].*K = 96.*scale blocks of 32"):
        ft.Fp8Linear(96, 64, recipe=row)
    # Non-power-of-two scales cannot enter a UE8M0 block-scaled instruction: named with layer and pass.
    fp32_scales = ft.recipe("deepgemm_sm100_fp8")
    fp32_scales["name"] = "fp32_scales"
    fp32_scales["passes"]["fprop"] = {"gemm_recipe": {"base": "deepgemm_sm100_fp8", "a": {"rule": "deepgemm"}}}
    layer = ft.Fp8Linear(64, 32, recipe=fp32_scales, name="blk.wq")
    with pytest.raises(ValueError, match=r"blk\.wq: fprop under recipe 'fp32_scales': a: scale 0 .*UE8M0"):
        layer(torch.randn(4, 64))
    # Promotion does not exist on a block-scaled instruction.
    promoted = ft.recipe("deepgemm_sm100_fp8")
    promoted["name"] = "promoted"
    promoted["passes"]["fprop"] = {"gemm_recipe": {"base": "deepgemm_sm100_fp8", "gemm": {"accumulate": "promoted"}}}
    with pytest.raises(ValueError, match=r"fprop under recipe 'promoted': accumulate: .*accumulate='tensorcore'"):
        ft.Fp8Linear(128, 32, recipe=promoted)(torch.randn(2, 128))


def _steps_row():
    """MXFP8 with NVFP4's two extra steps (the steps are the recipe's, whatever the element format):
    stochastic rounding of the gradient in Dgrad and Wgrad, the RHT on Wgrad's operands."""
    row = ft.recipe("mxfp8_te")
    row["name"] = "mx_steps"
    row["passes"]["dgrad"] = {"gemm_recipe": "mxfp8_te", "stochastic_rounding": ["a"]}
    row["passes"]["wgrad"] = {"gemm_recipe": {"base": "mxfp8_te", "gemm": {"out": "fp32"}}, "rht16": True,
                              "stochastic_rounding": ["a"]}
    return row


def test_rht_and_stochastic_rounding_steps_are_bit_identical_to_their_definition_and_seeded():
    from test_torch_linear import _data, _expected, _layer, _run

    row = _steps_row()
    x, w, dy = _data(9, 40, 72, 40)  # Wgrad's K = 40 tokens: padded to 48 for the RHT
    got = _run(_layer(row, w), x, dy)
    for what, g, e in zip(("fprop", "dgrad", "wgrad"), got, _expected(row, x, w, dy)):
        np.testing.assert_array_equal(g.view(np.uint32), e.astype(np.float32).view(np.uint32), err_msg=what)
    layer = _layer(row, w)
    layer.seed_rounding(5)
    seeded = _run(layer, x, dy)
    for g, e in zip(seeded, _expected(row, x, w, dy, seed=5)):
        np.testing.assert_array_equal(g, e.astype(np.float32))
    assert np.array_equal(seeded[0], got[0]) and not np.array_equal(seeded[1], got[1])  # SR only on gradients
    plain = _expected(ft.recipe("mxfp8_te"), x, w, dy)
    assert not np.array_equal(got[2], plain[2]) and np.array_equal(got[0], plain[0])
    with pytest.raises(ValueError, match="seed: expected an int >= 0"):
        layer.seed_rounding(-1)


def test_bad_steps_are_clear_errors():
    for key, value, msg in (("stochastic_rounding", ["c"], r"passes.dgrad.stochastic_rounding: expected a list"),
                            ("stochastic_rounding", "a", r"passes.dgrad.stochastic_rounding: expected a list"),
                            ("rht16", "yes", r"passes.dgrad.rht16: expected True or False")):
        row = _steps_row()
        row["passes"]["dgrad"][key] = value
        with pytest.raises(ValueError, match=msg):
            ft.recipe(row)
    bf = ft.recipe("bf16")
    bf["passes"]["wgrad"]["stochastic_rounding"] = ["b"]
    with pytest.raises(ValueError, match=r"passes.wgrad.stochastic_rounding: operand 'b' is bf16, not a scaled format"):
        ft.recipe(bf)


def test_nvfp4_row_rounds_gradients_stochastically_and_transforms_wgrad():
    row = ft.recipe("nvfp4")
    specs = resolve(row)
    assert [_base(row["passes"][p]) for p in PASSES] == ["nvfp4_te"] * 3
    assert [specs[p].get("stochastic_rounding", []) for p in PASSES] == [[], ["a"], ["a"]]
    assert [bool(specs[p].get("rht16")) for p in PASSES] == [False, False, True]
    assert specs["fprop"]["a"] == {"fmt": "e2m1", "tile": [1, 16], "rule": "nvfp4"}
    assert specs["fprop"]["b"]["tile"] == [16, 16] and specs["wgrad"]["b"]["tile"] == [1, 16]
    assert specs["wgrad"]["gemm"]["out"] == "fp32" and row["cache"] == {"from": "input"}


def test_nvfp4_training_is_a_function_of_its_seed():
    kw = dict(model="tiny", steps=2, batch=2, seq=16, eval_every=2, eval_batches=1, gemm_sample_every=0,
              cache_dir=False, progress=False)
    a, b = (ft.train(["nvfp4"], seeds=[3], **kw)["runs"][0] for _ in range(2))
    assert a["train_loss"] == b["train_loss"] and a["grad_norm"] == b["grad_norm"] and a["val"] == b["val"]
    c = ft.train(["nvfp4"], seeds=[4], **kw)["runs"][0]
    assert c["train_loss"] != a["train_loss"] and not a["diverged"]
