"""MlaSpec is read and written by its declared schema (emulator/mla/mla_spec.cpp, common/schema.hpp)
like the other specs: strict JSON kinds, unknown keys refused (the nested ``yarn`` object too), every
error in the one vocabulary ``MlaSpec.<field> = <value>: expected ...``, canonical JSON, and the
Python dataclass built from the schema rather than re-declared."""
import dataclasses
import json

import pytest

from fp8lab import _core, mla

# DeepSeek-V3's published dimensions (REFERENCE.md "MLA"; inference/configs/config_671B.json and
# inference/model.py ModelArgs), written here from the source, not read from the code under test.
DEEPSEEK_V3 = {"hidden": 7168, "heads": 128, "q_lora": 1536, "kv_lora": 512, "nope": 128, "rope": 64, "v": 128,
               "rms_eps": 1e-6}
DEEPSEEK_V3_YARN = {"rope_theta": 10000.0, "factor": 40.0, "original_seq_len": 4096, "max_seq_len": 16384,
                    "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0}


def normalize(spec):
    return json.loads(_core.mla_spec_json(spec))


def test_defaults_are_deepseek_v3_and_come_from_the_schema():
    d = normalize({})
    assert {k: d[k] for k in DEEPSEEK_V3} == DEEPSEEK_V3
    assert d["yarn"] == DEEPSEEK_V3_YARN
    fields = _core.spec_fields("mla")
    # The dataclass is the schema: same keys, same order, same defaults.
    assert [f.name for f in dataclasses.fields(mla.MlaSpec)] == [f["key"] for f in fields]
    assert {f["key"]: f["default"] for f in fields} == d
    assert [f.name for f in dataclasses.fields(mla.Yarn)] == [f["key"] for f in _core.spec_fields("mla.yarn")]
    assert dataclasses.asdict(mla.MlaSpec()) == d
    kinds = {f["key"]: f["kind"] for f in fields}
    assert kinds["yarn"] == "object" and kinds["heads"] == "int" and kinds["rms_eps"] == "number"
    assert {f["key"]: f["choices"] for f in fields}["cache"] == ["bf16", "fp8"]


def test_canonical_json_sorted_and_round_trips():
    text = mla.MlaSpec(heads=8, hidden=256, cache="fp8", softmax_scale="0.125").to_json()
    obj = json.loads(text)
    assert list(obj) == sorted(obj) and list(obj["yarn"]) == sorted(obj["yarn"])
    assert " " not in text and text.index('"attn"') < text.index('"yarn"')
    assert '"rope_theta":10000.0' in text and '"factor":40.0' in text  # floats stay floats
    # Any key order, any subset; the same canonical text back.
    shuffled = json.dumps(dict(reversed(list(obj.items()))))
    assert _core.mla_spec_json(shuffled) == text
    assert mla.MlaSpec.from_json(text) == mla.MlaSpec(heads=8, hidden=256, cache="fp8", softmax_scale="0.125")
    # A partial yarn object keeps the other yarn defaults.
    assert normalize({"yarn": {"factor": 8.0}})["yarn"] == {**DEEPSEEK_V3_YARN, "factor": 8.0}


@pytest.mark.parametrize("spec, message", [
    ({"heads": "8"}, 'MlaSpec.heads = "8": expected an integer in [1, 1048576]'),
    ({"heads": 8.0}, "MlaSpec.heads = 8.0: expected an integer in [1, 1048576]"),
    ({"heads": True}, "MlaSpec.heads = true: expected an integer"),
    ({"heads": 0}, "MlaSpec.heads = 0: expected an integer in [1, 1048576]"),
    ({"q_lora": -1}, "MlaSpec.q_lora = -1: expected an integer in [0, 1048576]"),
    ({"rms_eps": "1e-6"}, 'MlaSpec.rms_eps = "1e-6": expected a number'),
    ({"rms_eps": 0.0}, "MlaSpec.rms_eps = 0.0: expected a finite value > 0"),
    ({"cache": 1}, "MlaSpec.cache = 1: expected a string"),
    ({"cache": "fp4"}, "MlaSpec.cache: unknown value 'fp4'; expected one of bf16, fp8"),
    ({"attn": "fp64"}, "MlaSpec.attn: unknown value 'fp64'; expected one of fp32, bf16, fp8, bf16_tc"),
    ({"softmax_scale": None}, "MlaSpec.softmax_scale = null: expected a string"),
    ({"colour": 1}, "MlaSpec: unknown key 'colour'; valid keys: attn, attn_ops, cache"),
    ({"yarn": 3}, "MlaSpec.yarn = 3: expected a JSON object"),
    ({"yarn": {"scale": 1.0}}, "MlaSpec.yarn: unknown key 'scale'; valid keys: beta_fast"),
    ({"yarn": {"factor": "40"}}, 'MlaSpec.yarn.factor = "40": expected a number'),
    ({"yarn": {"factor": 0.5}}, "MlaSpec.yarn.factor = 0.5: expected a finite value >= 1"),
    ({"yarn": {"max_seq_len": 16384.0}}, "MlaSpec.yarn.max_seq_len = 16384.0: expected an integer"),
    ({"yarn": {"rope_theta": 1.0}}, "MlaSpec.yarn.rope_theta = 1.0: expected a finite value > 1"),
])
def test_wrong_kinds_ranges_and_keys_name_the_field(spec, message):
    with pytest.raises(ValueError) as e:
        normalize(spec)
    assert str(e.value).startswith(message), str(e.value)


@pytest.mark.parametrize("spec, message", [
    ({"rope": 7}, "MlaSpec.rope = 7: expected an even integer"),
    ({"cache": "fp8", "kv_lora": 96}, "MlaSpec.kv_lora = 96: expected a multiple of 128 with cache fp8"),
    ({"softmax_scale": "big"}, 'MlaSpec.softmax_scale = "big": expected "deepseek", "flashmla" or a positive'),
    ({"softmax_scale": "-1"}, 'MlaSpec.softmax_scale = "-1": expected'),
    ({"attn": "bf16_tc"}, 'MlaSpec.attn = "bf16_tc": expected fp32 or bf16'),
    ({"attn_ops": "deepseek_reference"}, 'MlaSpec.attn = "fp32": expected bf16 under attn_ops deepseek_reference'),
    ({"attn": "bf16", "attn_ops": "deepseek_reference", "wkv_a": "fp32"},
     'MlaSpec.wkv_a = "fp32": expected bf16, bf16_tc or fp8 under attn_ops deepseek_reference'),
])
def test_cross_field_rules_use_the_same_vocabulary(spec, message):
    with pytest.raises(ValueError) as e:
        normalize(spec)
    assert str(e.value).startswith(message), str(e.value)


def test_malformed_text_names_the_spec():
    for text in ('{"heads": 8', '{"heads": 8} x', '{"heads": 8, "heads": 9}'):
        with pytest.raises(ValueError, match=r"^MlaSpec: "):
            _core.mla_spec_json(text)
    with pytest.raises(TypeError, match="spec: expected an MlaSpec"):
        mla.kv_bytes_per_token(42)


def test_python_constructor_goes_through_the_same_reader():
    with pytest.raises(ValueError, match=r"^MlaSpec.heads = 0: expected"):
        mla.MlaSpec(heads=0).to_json()
    with pytest.raises(ValueError, match=r"^MlaSpec.yarn.beta_fast = -1.0: expected a finite value > 0"):
        mla.MlaSpec(yarn=mla.Yarn(beta_fast=-1.0)).to_json()
    # A dict spec, yarn as a dict, reaches the same reader and the same values.
    assert mla.kv_bytes_per_token({"kv_lora": 512, "yarn": {"factor": 8.0}}) == mla.kv_bytes_per_token(mla.MlaSpec())
    # softmax_scale as a number is written as its text, as documented.
    assert json.loads(mla.MlaSpec(softmax_scale=0.125).to_json())["softmax_scale"] == "0.125"
