"""GEMM recipes as data (emulator/gemm/recipe.cpp): every row names its source, a recipe at a call
site gives exactly the bits of the same spec spelled out, and an edited row is a new recipe."""
import numpy as np
import pytest

import fp8lab

RNG = np.random.default_rng(17)
A = (RNG.standard_normal((5, 256)) * np.ldexp(1.0, RNG.integers(-3, 4, (5, 1)))).astype(np.float32)
B = RNG.standard_normal((6, 256)).astype(np.float32)


def same_q(x, y):
    return (np.array_equal(x.bits, y.bits) and np.array_equal(x.scale_values, y.scale_values)
            and x.fmt == y.fmt and x.tile == y.tile and x.rule == y.rule)


def test_table_rows_cite_sources_and_name_known_parts():
    rows = fp8lab.recipes()
    assert {"deepseek_v3_fp8_linear", "deepgemm_sm90", "te_blockwise"} <= set(rows)
    for name, row in rows.items():
        assert row["name"] == name and len(row["source"]) > 20
        for op in ("a", "b"):
            assert row[op]["rule"] in fp8lab.scale_rules()
            assert row[op]["format"] in fp8lab.formats()
        assert row["gemm"]["instruction"] in {t[k] for t in fp8lab.tensor_cores() for k in ("name", "alias")}
        assert fp8lab.recipe(row) == row  # a row reads back as itself


def test_deepseek_linear_row_is_the_papers_recipe():
    # Written from the paper (§3.3) and DeepSeek-V3 inference/kernel.py, not from the table.
    r = fp8lab.recipe("deepseek_v3_fp8_linear")
    assert (r["a"]["format"], r["a"]["tile"], r["a"]["rule"]) == ("e4m3", [1, 128], "deepseek")
    assert (r["b"]["format"], r["b"]["tile"], r["b"]["rule"]) == ("e4m3", [128, 128], "deepseek")
    assert r["gemm"] == {"accumulate": "promoted", "promote_every": 128, "combine": "deepgemm",
                         "instruction": "hopper_fp8", "out": "bf16"}


@pytest.mark.parametrize("name", ["deepseek_v3_fp8_linear", "deepgemm_sm90", "te_blockwise"])
def test_recipe_at_call_sites_equals_the_spelled_out_spec(name):
    r = fp8lab.recipe(name)
    qa = fp8lab.quantize(A, recipe=name, operand="a")
    qb = fp8lab.quantize(B, recipe=name, operand="b")
    assert same_q(qa, fp8lab.quantize(A, tile=tuple(r["a"]["tile"]), fmt=r["a"]["format"], rule=r["a"]["rule"]))
    assert same_q(qb, fp8lab.quantize(B, tile=tuple(r["b"]["tile"]), fmt=r["b"]["format"], rule=r["b"]["rule"]))
    d = fp8lab.gemm(qa, qb, recipe=name)
    assert np.array_equal(d, fp8lab.gemm(qa, qb, **r["gemm"]))
    assert np.array_equal(fp8lab.gemm_bound(qa, qb, recipe=name), fp8lab.gemm_bound(qa, qb, **r["gemm"]))


def test_defaults_are_the_default_recipe():
    assert same_q(fp8lab.quantize(A), fp8lab.quantize(A, recipe="deepseek_v3_fp8_linear", operand="a"))
    qa, qb = fp8lab.quantize(A), fp8lab.quantize(B, recipe="deepseek_v3_fp8_linear", operand="b")
    assert np.array_equal(fp8lab.gemm(qa, qb), fp8lab.gemm(qa, qb, recipe="deepseek_v3_fp8_linear"))


def test_copy_a_row_change_a_field_and_pass_it():
    row = fp8lab.recipe("deepgemm_sm90")
    row["gemm"]["combine"] = "triton"
    assert fp8lab.recipe(row)["name"] == "deepgemm_sm90+custom"  # no longer the named row
    qa = fp8lab.quantize(A, recipe=row, operand="a")
    qb = fp8lab.quantize(B, recipe=row, operand="b")
    assert np.array_equal(fp8lab.gemm(qa, qb, recipe=row), fp8lab.gemm(qa, qb, recipe="deepgemm_sm90", combine="triton"))
    # FP32 scales: the triton order differs from deepgemm's in some last bit on these inputs.
    assert not np.array_equal(fp8lab.gemm(qa, qb, recipe=row, out="fp32"),
                              fp8lab.gemm(qa, qb, recipe="deepgemm_sm90", out="fp32"))
    edited = fp8lab.recipe({"base": "deepgemm_sm90", "gemm": {"combine": "triton"}})
    assert edited["gemm"] == row["gemm"] and edited["a"] == row["a"]
    custom_rule = dict(fp8lab.scale_rule("deepgemm"), epsilon=1e-6, epsilon_hex=float(np.float32(1e-6)).hex())
    r2 = fp8lab.recipe({"base": "deepgemm_sm90", "a": {"rule": custom_rule}})
    assert r2["a"]["rule"]["epsilon"] == pytest.approx(1e-6)


@pytest.mark.parametrize("bad, msg", [
    ("deepseek", r"unknown GEMM recipe 'deepseek'; known recipes: deepseek_v3_fp8_linear, deepgemm_sm90"),
    ({"name": "x"}, r"missing key\(s\) a, b, gemm"),
    ({"base": "deepgemm_sm90", "gemm": {"promote_every": 96}}, r"GemmRecipe.a.tile = \[1,128\]: expected tile columns a multiple"),
    ({"base": "deepgemm_sm90", "gemm": {"promote_every": "128"}}, r'GemmRecipe.gemm.promote_every = "128": expected an integer'),
    ({"base": "deepgemm_sm90", "gemm": {"combine": "fast"}}, r"GemmRecipe.gemm.combine: unknown value 'fast'"),
    ({"base": "deepgemm_sm90", "a": {"format": "fp9"}}, r'GemmRecipe.a.format = "fp9"'),
    ({"base": "deepgemm_sm90", "a": {"rule": "mx"}}, r"GemmRecipe.a.tile = \[1,128\]: expected a tile of 32 elements"),
    ({"base": "deepgemm_sm90", "c": {}}, r"GemmRecipe: unknown key 'c'"),
])
def test_bad_recipes_name_the_field(bad, msg):
    with pytest.raises(ValueError, match=msg):
        fp8lab.recipe(bad)


def test_recipe_argument_errors():
    with pytest.raises(ValueError, match="operand: expected 'a'"):
        fp8lab.quantize(A, recipe="deepgemm_sm90", operand="c")
    with pytest.raises(TypeError, match="recipe: expected"):
        fp8lab.gemm(A, B, recipe=3)
