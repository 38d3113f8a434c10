"""fp8lab.dot: single tensor-core instructions from Python. The probes of REFERENCE.md, batching
over leading dimensions, thread-count independence, a replay of published hardware measurements
through the Python door, and argument checking (errors name the argument and the element)."""
import os
import pathlib

import numpy as np
import pytest

import fp8lab
from fp8lab import accum

F32 = np.float32


def bits(x):
    return np.asarray(x, dtype=F32).view(np.uint32)


def lanes(values, k=32):
    out = np.zeros(k, dtype=F32)
    out[: len(values)] = values
    return out


# REFERENCE.md "Tensor cores": (a lanes, b lanes, C bits, expected D bits), E4M3, FP32 D.
PROBES = [
    ([1, 2**-7], [1, 2**-7], 0, 0x3F800000),
    ([1, 2**-6], [1, 2**-7], 0, 0x3F800400),
    ([1, -(2**-7)], [1, 2**-7], 0, 0x3F800000),
    ([1, 1, 2**-6], [1, 1, 2**-7], 0, 0x40000000),
    ([], [], 0x3F800008, 0x3F800000),
    ([1], [1], 0x46800000, 0x46800000),  # C = 16384
    ([1, -1, 2**-6], [1, 1, 2**-7], 0, 0x39000000),  # 2^-13
]


@pytest.mark.parametrize("a,b,c_bits,d_bits", PROBES)
def test_reference_probes(a, b, c_bits, d_bits):
    c = np.array(c_bits, dtype=np.uint32).view(F32)
    d = fp8lab.dot(lanes(a), lanes(b), c, instruction="hopper_fp8", fmt="e4m3")
    assert d.shape == ()
    assert int(bits(d)) == d_bits


def test_batched_over_leading_dimensions_equals_one_call_per_row():
    rng = np.random.default_rng(4)
    # Random E4M3 values: decode random bit patterns, NaN (0x7F/0xFF) replaced by 0.
    pats = rng.integers(0, 256, size=(3, 5, 32), dtype=np.uint8)
    pats[(pats & 0x7F) == 0x7F] = 0
    a = fp8lab.decode(pats, "e4m3").astype(F32)
    b = fp8lab.decode(np.roll(pats, 1, axis=-1), "e4m3").astype(F32)
    c = rng.standard_normal((3, 5)).astype(F32)
    d = fp8lab.dot(a, b, c)
    assert d.shape == (3, 5) and d.dtype == F32
    for i in range(3):
        for j in range(5):
            assert bits(fp8lab.dot(a[i, j], b[i, j], c[i, j])) == bits(d[i, j])
    # c as a scalar broadcasts; None means 0.
    np.testing.assert_array_equal(bits(fp8lab.dot(a, b, 0.0)), bits(fp8lab.dot(a, b)))


def test_results_do_not_depend_on_the_thread_count():
    rng = np.random.default_rng(9)
    pats = rng.integers(0, 256, size=(5000, 32), dtype=np.uint8)
    pats[(pats & 0x7F) == 0x7F] = 0
    a = fp8lab.decode(pats, "e4m3").astype(F32)
    b = a[::-1].copy()
    c = rng.standard_normal(5000).astype(F32)
    before = fp8lab.num_threads()
    try:
        fp8lab.set_num_threads(1)
        one = fp8lab.dot(a, b, c)
        fp8lab.set_num_threads(4)
        four = fp8lab.dot(a, b, c)
    finally:
        fp8lab.set_num_threads(before)
    np.testing.assert_array_equal(bits(one), bits(four))


def measurements_dir():
    env = os.environ.get("FP8LAB_TC_MEASUREMENTS")
    if env:
        return pathlib.Path(env)
    return pathlib.Path(__file__).resolve().parents[2] / ".." / "shared" / "tc-measurements"


@pytest.mark.parametrize("arch,fmt,instruction,k_data,c_zero", [
    ("H100", "E4M3", "hopper_fp8", 32, True),
    ("Ada", "E5M2", "ada_fp8_e5m2", 32, False),
    ("A100", "bf16", "ampere_bf16", 8, False),
    ("B200", "E4M3", "blackwell_mma_fp8", 32, False),
])
def test_replay_of_hardware_measurements_through_python(arch, fmt, instruction, k_data, c_zero):
    d = measurements_dir() / arch / fmt
    if not (d / f"d_{arch}_fp32.txt").exists():
        pytest.skip(f"tensor-core measurements not found under {d}; set FP8LAB_TC_MEASUREMENTS")
    n = 500
    words = lambda name: np.array([int(w, 16) for w in (d / name).read_text().split()[: n * k_data]], dtype=np.uint32)
    lines = lambda name: np.array([int(w, 2) for w in (d / name).read_text().split()[:n]], dtype=np.uint32)
    k = next(t["k"] for t in accum.tensor_cores() if instruction in (t["name"], t["alias"]))
    a = np.zeros((n, k), dtype=F32)
    b = np.zeros((n, k), dtype=F32)
    a[:, :k_data] = words(f"a_{arch}_{fmt}.txt").view(F32).reshape(n, k_data)
    b[:, :k_data] = words(f"b_{arch}_{fmt}.txt").view(F32).reshape(n, k_data)
    c = np.zeros(n, dtype=F32) if c_zero else lines(f"c_{arch}_fp32.txt").view(F32)
    got = bits(fp8lab.dot(a, b, c, instruction=instruction))
    want = lines(f"d_{arch}_fp32.txt")
    np.testing.assert_array_equal(got, want)


def test_block_scaled_preset_takes_scale_exponents():
    a = lanes([1.5, -0.125])
    b = lanes([3.0, 2**-9])
    plain = fp8lab.dot(a, b, instruction="blackwell_fp8")
    scaled = fp8lab.dot(a, b, instruction="blackwell_mxfp8", scale_a=np.array([3]), scale_b=np.array([-5]))
    assert float(scaled) == float(plain) / 4
    with pytest.raises(ValueError, match="scale_a"):
        fp8lab.dot(a, b, instruction="blackwell_mxfp8")
    with pytest.raises(ValueError, match="scale_a.*takes no block scales"):
        fp8lab.dot(a, b, scale_a=np.array([0]), scale_b=np.array([0]))
    with pytest.raises(ValueError, match=r"scale_b: element \[0\] = 200"):
        fp8lab.dot(a, b, instruction="blackwell_mxfp8", scale_a=np.array([0]), scale_b=np.array([200]))


def test_accepts_float64_integer_and_ml_dtypes_inputs():
    import ml_dtypes

    a32 = lanes([1.5, -0.25, 448.0])
    b32 = lanes([2.0, 3.0, -0.0625])
    want = bits(fp8lab.dot(a32, b32))
    assert bits(fp8lab.dot(a32.astype(np.float64), b32.astype(np.float64))) == want
    assert bits(fp8lab.dot(a32.astype(ml_dtypes.float8_e4m3fn), b32.astype(ml_dtypes.float8_e4m3fn))) == want
    ones = np.ones(32, dtype=np.int64)
    assert float(fp8lab.dot(ones, ones)) == 32.0


def test_fp16_accumulator_preset_takes_fp16_c():
    a = lanes([1.0, 2**-6])
    b = lanes([1.0, 2**-5])
    assert float(fp8lab.dot(a, b, 0.5, instruction="ada_fp8_f16")) == 1.5  # 1.5 + 2^-11: tie -> even
    with pytest.raises(ValueError, match=r"c: element \[\] = 0\.100000001\d* is not an fp16 value"):
        fp8lab.dot(a, b, np.float32(0.1), instruction="ada_fp8_f16")


def test_presets_are_listed_with_sources():
    presets = accum.tensor_cores()
    names = {p["name"] for p in presets}
    assert "hopper_wgmma_m64nNk32_f32_e4m3" in names
    for p in presets:
        assert p["source"], p["name"]
        assert p["evidence"] in ("replayed", "contradicted", "unmeasured")
    assert set(accum.tensor_core_names()) >= {"hopper_fp8", "hopper_fp8_e5m2", "hopper_bf16", "hopper_fp16",
                                               "ada_fp8", "ampere_bf16", "ampere_fp16", "blackwell_fp8"}
    by_name = {p["name"]: p for p in presets}
    nvfp4 = by_name["blackwell_tcgen05_mxf4nvf4_block16_f32_e2m1_ue4m3"]
    assert (nvfp4["form"], nvfp4["scale_format"], nvfp4["scale_block"], nvfp4["scale_group"]) == \
        ("scaled_groups", "ue4m3", 16, 16)
    assert by_name["blackwell_tcgen05_mxf8f6f4_f32_e3m2"]["input_format"] == "e3m2fn"
    assert by_name["cdna3_mfma_f32_16x16x32_fp8"]["input_format"] == "e4m3fnuz"
    assert by_name["cdna3_mfma_f32_16x16x32_bf8"]["second_frac_bits"] == 31


def test_block_scaled_scales_as_values_and_their_errors():
    a = np.zeros(64, F32)
    a[0] = 6.0
    b = np.zeros(64, F32)
    b[0] = 1.5
    s = np.float32([448.0, 1.0, 1.0, 1.0])
    assert float(fp8lab.dot(a, b, instruction="blackwell_nvfp4", scale_a=s, scale_b=np.float32([2, 1, 1, 1]))) == 9 * 896
    with pytest.raises(ValueError, match=r"scale_a: element \[0\] = 0\.3.* not exactly representable in ue4m3"):
        fp8lab.dot(a, b, instruction="blackwell_nvfp4", scale_a=np.float32([0.3, 1, 1, 1]), scale_b=s)
    with pytest.raises(TypeError, match="scale_a: instruction 'blackwell_nvfp4' takes ue4m3 scale values"):
        fp8lab.dot(a, b, instruction="blackwell_nvfp4", scale_a=np.int32([0, 0, 0, 0]), scale_b=s)
    with pytest.raises(ValueError, match=r"scale_b: expected shape \(4,\)"):
        fp8lab.dot(a, b, instruction="blackwell_nvfp4", scale_a=s, scale_b=s[:2])
    assert np.isnan(fp8lab.dot(a, b, instruction="blackwell_nvfp4", scale_a=np.float32([np.nan, 1, 1, 1]), scale_b=s))
    # gemm_bound certifies the two-level CDNA3 form too (test_recipes_nvfp4.py checks it against gemm_exact).
    ones = np.ones((2, 32), F32)
    assert (fp8lab.gemm(ones, ones, instruction="mi300_fp8", out="fp32") == 32).all()
    assert (fp8lab.gemm_bound(ones, ones, instruction="mi300_fp8", out="fp32") < 32 * 2.0 ** -20).all()


_PRESET_KEYS = ["accumulator", "alias", "alignment_frac_bits", "b_input_format", "b_input_min_exponent", "block", "c_after_products", "evidence", "exact_sum",
                "form", "input_format", "input_mantissa_bits", "input_min_exponent", "k", "name", "output_precision",
                "output_rounding", "scale_block", "scale_format", "scale_group", "second_frac_bits", "source",
                "zero_term_exponent"]


def test_each_preset_row_is_listed_through_its_declared_schema():
    """tensor_cores() writes every row through accum's tensor_core_schema(): every member of the row,
    keys sorted. Values checked here are the cited sources' (REFERENCE.md "Tensor cores"; MMA-Sim;
    Khattak & Mikaitis H100TC.m: fma 32, neab -10 so F = 23 - 10 = 13, 14-bit truncated output;
    OCP OFP8: E4M3 min normal 2^-6, 3 mantissa bits), not read off the table."""
    presets = accum.tensor_cores()
    for p in presets:
        assert list(p) == _PRESET_KEYS, p["name"]
    assert len({p["name"] for p in presets}) == len(presets)
    aliases = [p["alias"] for p in presets if p["alias"]]
    assert len(set(aliases)) == len(aliases)
    by = {p["alias"] or p["name"]: p for p in presets}
    hop = by["hopper_fp8"]
    assert {k: hop[k] for k in _PRESET_KEYS if k not in ("source", "name", "alias")} == {
        "accumulator": "fp32", "alignment_frac_bits": 13, "b_input_format": "e4m3", "b_input_min_exponent": -6,
        "block": 32, "c_after_products": False,
        "evidence": "replayed", "exact_sum": False, "input_format": "e4m3", "input_mantissa_bits": 3,
        "input_min_exponent": -6, "k": 32, "output_precision": 14, "output_rounding": "toward_zero",
        "scale_block": 0, "form": "fused", "scale_format": "", "scale_group": 0, "second_frac_bits": 0,
        "zero_term_exponent": None}
    assert hop["name"] == "hopper_wgmma_m64nNk32_f32_e4m3" and "2511.10909" in hop["source"]
    # An exact-sum row has no alignment width; an FP16-accumulator row rounds to nearest even at 11
    # bits; the MX row carries one scale per 32 elements (OCP MX v1.0).
    assert by["blackwell_mma_fp8"]["alignment_frac_bits"] is None and by["blackwell_mma_fp8"]["c_after_products"]
    f16 = by["ada_fp8_f16"]
    assert (f16["accumulator"], f16["output_rounding"], f16["output_precision"]) == ("fp16", "nearest_even", 11)
    assert by["blackwell_mxfp8"]["scale_block"] == 32 and by["blackwell_mxfp8"]["evidence"] == "unmeasured"
    # A mixed-kind row names B's format and minimum exponent (OCP MX v1.0: E2M1 min normal 2^0).
    mixed = by["blackwell_tcgen05_mxf8f6f4_f32_e4m3_e2m1"]
    assert (mixed["input_format"], mixed["b_input_format"], mixed["b_input_min_exponent"]) == ("e4m3", "e2m1", 0)


# --- argument checking -------------------------------------------------------------------------

def test_value_not_representable_names_the_first_bad_element():
    a = np.ones((2, 32), dtype=F32)
    a[1, 7] = 0.3  # not an E4M3 value
    a[1, 9] = 0.3
    with pytest.raises(ValueError, match=r"a: element \[1, 7\] = 0\.30000001192092896 is not exactly representable in e4m3"):
        fp8lab.dot(a, np.ones((2, 32), dtype=F32))
    b = np.ones(32, dtype=F32)
    b[3] = 500.0  # beyond E4M3's 448: must not saturate into "representable"
    with pytest.raises(ValueError, match=r"b: element \[3\] = 500\.0"):
        fp8lab.dot(np.ones(32, dtype=F32), b)
    with pytest.raises(ValueError, match=r"b: element \[0\] = inf"):
        fp8lab.dot(np.ones(32, dtype=F32), np.full(32, np.inf, dtype=F32))


def test_bulk_checks_name_the_first_offender_of_either_kind():
    # float64 inputs fail two ways (not a float32, or not an E4M3 value); the checks run in bulk and
    # in parallel chunks of 65536 elements, and the error names the first offender whichever kind.
    a = np.ones((5000, 32), dtype=np.float64)
    a[3000, 1] = 1.0 + 2.0**-40  # not a float32
    a[4000, 2] = 0.3              # not an E4M3 value, later
    with pytest.raises(ValueError, match=r"a: element \[3000, 1\] = 1\.0000000000009095 is not exactly representable"):
        fp8lab.dot(a, np.ones((5000, 32)))
    a[2500, 31] = 17.0            # not an E4M3 value (16 and 18 are), earlier
    with pytest.raises(ValueError, match=r"a: element \[2500, 31\] = 17\.0 is not exactly representable"):
        fp8lab.dot(a, np.ones((5000, 32)))
    b = np.ones((5000, 32), dtype=F32)
    b[4999, 31] = -np.inf         # the very last element: E4M3 has no infinity
    with pytest.raises(ValueError, match=r"b: element \[4999, 31\] = -inf"):
        fp8lab.dot(np.ones((5000, 32), dtype=F32), b)
    # E5M2 has infinities and NaN: both are operands of its instruction.
    b[4999, 31] = np.nan
    b[0, 0] = np.inf
    d = fp8lab.dot(np.ones((5000, 32), dtype=F32), b, instruction="hopper_fp8_e5m2")
    assert np.isnan(d[4999]) and d[0] == np.inf and np.all(d[1:4999] == 32.0)


def test_shape_errors():
    with pytest.raises(ValueError, match=r"a: the last dimension must be the instruction's k = 32"):
        fp8lab.dot(np.ones(16, dtype=F32), np.ones(16, dtype=F32))
    with pytest.raises(ValueError, match=r"b: shape \(2, 32\) differs from a's \(32,\)"):
        fp8lab.dot(np.ones(32, dtype=F32), np.ones((2, 32), dtype=F32))
    with pytest.raises(ValueError, match=r"c: expected shape \(2,\)"):
        fp8lab.dot(np.ones((2, 32), dtype=F32), np.ones((2, 32), dtype=F32), np.zeros(3, dtype=F32))


def test_accumulator_must_be_float32():
    with pytest.raises(ValueError, match=r"c: element \[\] = 0\.1 is not a float32 value"):
        fp8lab.dot(np.ones(32, dtype=F32), np.ones(32, dtype=F32), np.float64(0.1))


def test_instruction_and_format_errors():
    with pytest.raises(ValueError, match=r"instruction: unknown tensor-core preset 'volta'.*hopper_fp8"):
        fp8lab.dot(np.ones(32, dtype=F32), np.ones(32, dtype=F32), instruction="volta")
    with pytest.raises(ValueError, match=r"fmt: instruction 'hopper_fp8' multiplies e4m3 values, not e5m2; "
                                         r"for e5m2 inputs use instruction='hopper_fp8_e5m2'"):
        fp8lab.dot(np.ones(32, dtype=F32), np.ones(32, dtype=F32), fmt="e5m2")
    with pytest.raises(TypeError, match="instruction"):
        fp8lab.dot(np.ones(32, dtype=F32), np.ones(32, dtype=F32), instruction=3)
    with pytest.raises(TypeError, match="a: expected a float32 or float64 array"):
        fp8lab.dot(np.array(["x"] * 32), np.ones(32, dtype=F32))


# --- cross-check against MMA-Sim (PyPI mmasim; needs torch, not installed in .venv) ------------

MMASIM_CASES = [
    # fp8lab preset, MMA-Sim class, architecture, instruction qualifier, torch dtype, m, k.
    # fp8lab's hopper_fp8 is the wgmma (the H100 measurements were taken with wgmma; mmasim
    # 2.1.1 offers no mma.sync FP8 on Hopper), so it is compared with WGMMA. MMA-Sim's Blackwell mma.sync FP8 (25 bits, truncated)
    # is the published model the B200 measurements contradict (test_accum_replay.cpp), so it is
    # not expected to agree with blackwell_mma_fp8 and is left out.
    ("hopper_fp8", "WGMMA", "Hopper", "m64n8k32.f32.e4m3.e4m3", "float8_e4m3fn", 64, 32),
    ("hopper_fp8_e5m2", "WGMMA", "Hopper", "m64n8k32.f32.e5m2.e5m2", "float8_e5m2", 64, 32),
    ("hopper_bf16", "WGMMA", "Hopper", "m64n8k16.f32.bf16.bf16", "bfloat16", 64, 16),
    ("hopper_fp16", "WGMMA", "Hopper", "m64n8k16.f32.f16.f16", "float16", 64, 16),
    ("ada_fp8", "MMA", "Ada Lovelace", "m16n8k32.f32.e4m3.e4m3.f32", "float8_e4m3fn", 16, 32),
    ("ada_fp8_e5m2", "MMA", "Ada Lovelace", "m16n8k32.f32.e5m2.e5m2.f32", "float8_e5m2", 16, 32),
    ("ampere_bf16", "MMA", "Ampere", "m16n8k16.f32.bf16.bf16.f32", "bfloat16", 16, 16),
    ("ampere_fp16", "MMA", "Ampere", "m16n8k16.f32.f16.f16.f32", "float16", 16, 16),
    ("ada_fp8_f16", "MMA", "Ada Lovelace", "m16n8k32.f16.e4m3.e4m3.f16", "float8_e4m3fn", 16, 32),
    ("ada_fp8_e5m2_f16", "MMA", "Ada Lovelace", "m16n8k32.f16.e5m2.e5m2.f16", "float8_e5m2", 16, 32),
    ("blackwell_fp8", "TCGen05MMA", "Blackwell", "m64n8k32.kind::f8f6f4.f32.e4m3.e4m3", "float8_e4m3fn", 64, 32),
    ("blackwell_fp8_e5m2", "TCGen05MMA", "Blackwell", "m64n8k32.kind::f8f6f4.f32.e5m2.e5m2", "float8_e5m2", 64, 32),
    ("blackwell_bf16", "TCGen05MMA", "Blackwell", "m64n8k16.kind::f16.f32.bf16.bf16", "bfloat16", 64, 16),
    ("blackwell_fp16", "TCGen05MMA", "Blackwell", "m64n8k16.kind::f16.f32.f16.f16", "float16", 64, 16),
]


def _mmasim_sim_module():
    """MMA-Sim's simulator module (mmasim.nv_ptx.sim in the versions read for this test)."""
    pytest.importorskip("torch", reason="torch is not installed (mmasim needs it); mmasim cross-check skipped")
    pytest.importorskip("mmasim", reason="mmasim (PyPI, MMA-Sim) is not installed; cross-check skipped")
    import importlib

    try:
        return importlib.import_module("mmasim.nv_ptx.sim")
    except ImportError as exc:
        pytest.skip(f"this mmasim version has no mmasim.nv_ptx.sim ({exc}); cross-check skipped")


@pytest.mark.parametrize("preset,cls,arch,qualifier,dtype_name,m,k", MMASIM_CASES)
def test_agrees_with_mmasim(preset, cls, arch, qualifier, dtype_name, m, k):
    sim_module = _mmasim_sim_module()
    import torch

    try:
        sim = getattr(sim_module, cls)(arch, qualifier)
    except Exception as exc:  # a class or qualifier this mmasim version does not model
        pytest.skip(f"mmasim has no {cls}({arch!r}, {qualifier!r}): {exc}")
    rng = np.random.default_rng(sum(map(ord, preset)))
    torch.manual_seed(int(rng.integers(1 << 30)))
    tdtype = getattr(torch, dtype_name)
    info = next(t for t in accum.tensor_cores() if preset in (t["name"], t["alias"]))
    fmt = info["input_format"]
    n = 8
    trials = max(1, 384 // (m * n))  # a few hundred instruction-level dot products per preset
    for _ in range(trials):
        A = (torch.randn(m, k) * float(2.0 ** rng.integers(-4, 5))).to(tdtype)
        B = torch.randn(k, n).to(tdtype)
        C = torch.randn(m, n, dtype=torch.float16 if info["accumulator"] == "fp16" else torch.float32)
        D = sim(A, B, C).float().numpy()
        a = A.float().numpy()
        b = B.float().numpy().T.copy()
        ours = fp8lab.dot(np.repeat(a[:, None, :], n, axis=1), np.repeat(b[None, :, :], m, axis=0),
                          C.float().numpy(), instruction=preset, fmt=fmt)
        np.testing.assert_array_equal(bits(ours), bits(D), err_msg=f"{preset} vs mmasim {cls} {arch} {qualifier}")


# Edge cases the random cross-check rarely reaches, against the same MMA-Sim simulators.
EDGE_CASES = [
    # (preset, MMA-Sim class, arch, qualifier, torch dtype, m, k, a lanes, b lanes, c)
    ("hopper_bf16", "WGMMA", "Hopper", "m64n8k16.f32.bf16.bf16", "bfloat16", 64, 16,
     [-(2.0 ** -100)], [2.0 ** -60], 0.0),                      # negative underflow -> +0
    ("hopper_bf16", "WGMMA", "Hopper", "m64n8k16.f32.bf16.bf16", "bfloat16", 64, 16,
     [1.0, -1.0], [1.0, 1.0], -0.0),                            # exact cancellation, C = -0
    ("hopper_bf16", "WGMMA", "Hopper", "m64n8k16.f32.bf16.bf16", "bfloat16", 64, 16,
     [1.5 * 2.0 ** -75], [2.0 ** -74], 0.0),                    # FP32 subnormal, truncated
    ("hopper_fp8", "WGMMA", "Hopper", "m64n8k32.f32.e4m3.e4m3", "float8_e4m3fn", 64, 32,
     [1.0, -(2.0 ** -7)], [1.0, 2.0 ** -7], 0.0),               # magnitude truncation probe
    ("hopper_fp8", "WGMMA", "Hopper", "m64n8k32.f32.e4m3.e4m3", "float8_e4m3fn", 64, 32,
     [0.0], [0.0], float(np.array(0x3F800008, dtype=np.uint32).view(np.float32))),  # C truncated
    ("hopper_fp8", "WGMMA", "Hopper", "m64n8k32.f32.e4m3.e4m3", "float8_e4m3fn", 64, 32,
     [2.0 ** -9], [2.0 ** -9], 2.0 ** -30),                     # subnormal input clamp
    ("hopper_fp8", "WGMMA", "Hopper", "m64n8k32.f32.e4m3.e4m3", "float8_e4m3fn", 64, 32,
     [1.0], [1.0], float("inf")),                               # infinite C
]


@pytest.mark.parametrize("preset,cls,arch,qualifier,dtype_name,m,k,a_l,b_l,c", EDGE_CASES)
def test_edge_cases_agree_with_mmasim(preset, cls, arch, qualifier, dtype_name, m, k, a_l, b_l, c):
    sim_module = _mmasim_sim_module()
    import torch

    try:
        sim = getattr(sim_module, cls)(arch, qualifier)
    except Exception as exc:
        pytest.skip(f"mmasim has no {cls}({arch!r}, {qualifier!r}): {exc}")
    a = lanes(a_l, k)
    b = lanes(b_l, k)
    n = 8
    A = torch.from_numpy(np.tile(a, (m, 1))).to(getattr(torch, dtype_name))
    B = torch.from_numpy(np.tile(b[:, None], (1, n))).to(getattr(torch, dtype_name))
    C = torch.full((m, n), c, dtype=torch.float32)
    theirs = bits(sim(A, B, C).float().numpy()[0, 0])
    ours = bits(fp8lab.dot(a, b, np.float32(c), instruction=preset))
    assert int(ours) == int(theirs), f"fp8lab {int(ours):#010x}, mmasim {int(theirs):#010x}"


@pytest.mark.parametrize("preset,a_type,dtype_name", [
    ("blackwell_mxfp8", "e4m3", "float8_e4m3fn"),
    ("blackwell_mxfp8_e5m2", "e5m2", "float8_e5m2"),
])
def test_block_scaled_agrees_with_mmasim(preset, a_type, dtype_name):
    """tcgen05.mma kind::mxf8f6f4 (one UE8M0 scale per 32 elements) against MMA-Sim's
    TCGen05MMABlockScale: 128 x 8 dot products with random scale exponents per row of A and per
    column of B."""
    sim_module = _mmasim_sim_module()
    import torch

    qualifier = f"m128n8k32.kind::mxf8f6f4.block32.f32.{a_type}.{a_type}.ue8m0"
    try:
        sim = sim_module.TCGen05MMABlockScale("Blackwell", qualifier)
    except Exception as exc:
        pytest.skip(f"mmasim has no TCGen05MMABlockScale('Blackwell', {qualifier!r}): {exc}")
    rng = np.random.default_rng(5)
    torch.manual_seed(5)
    m, n, k = 128, 8, 32
    A = torch.randn(m, k).to(getattr(torch, dtype_name))
    B = torch.randn(k, n).to(getattr(torch, dtype_name))
    C = torch.randn(m, n, dtype=torch.float32)
    sa = rng.integers(-6, 7, size=(m, 1)).astype(np.int32)
    sb = rng.integers(-6, 7, size=(1, n)).astype(np.int32)
    alpha = torch.from_numpy(np.ldexp(1.0, sa).astype(np.float32)).to(torch.float8_e8m0fnu)
    beta = torch.from_numpy(np.ldexp(1.0, sb).astype(np.float32)).to(torch.float8_e8m0fnu)
    D = sim(A, B, C, alpha, beta).float().numpy()
    a = np.repeat(A.float().numpy()[:, None, :], n, axis=1)
    b = np.repeat(B.float().numpy().T[None, :, :], m, axis=0)
    ours = fp8lab.dot(a, b, C.numpy(), instruction=preset,
                      scale_a=np.repeat(sa[:, None, :], n, axis=1), scale_b=np.repeat(sb.T[None, :, :], m, axis=0))
    np.testing.assert_array_equal(bits(ours), bits(D))


def test_cli_lists_the_presets(capsys):
    from fp8lab.cli import main

    assert main(["tensor-cores"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    assert rows["hopper_wgmma_m64nNk32_f32_e4m3"][1:5] == ["hopper_fp8", "e4m3", "32", "32"]
    assert rows["blackwell_mma_m16n8k32_f32_e4m3"][5] == "-"  # exact sum: no alignment bits
    assert main(["tensor-cores", "--json"]) == 0
    import json

    presets = json.loads(capsys.readouterr().out)
    assert any(p["alias"] == "ada_fp8_f16" and p["accumulator"] == "fp16" for p in presets)
