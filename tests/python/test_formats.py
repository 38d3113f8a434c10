"""fp8lab.encode/decode against ml_dtypes (an independent implementation), every bit pattern of
the 8- and 16-bit formats, plus argument checking. Where ml_dtypes and CUDA disagree (NaN
payloads, E8M0 of zero and negatives, FP4 NaN) fp8lab follows CUDA: those cases are pinned here so
the documentation cannot drift."""
import ml_dtypes
import numpy as np
import pytest

import fp8lab
from fp8lab.formats import ML_DTYPES_NAMES, as_ml_dtypes, from_ml_dtypes

# Every row with an ml_dtypes counterpart (the table's `ml_dtypes` field): a new row is checked here
# without editing this file. fp32 (2^32 patterns) is the exhaustive_casts target's.
ML = {name: np.dtype(getattr(ml_dtypes, ml) if hasattr(ml_dtypes, ml) else ml)
      for name, ml in ML_DTYPES_NAMES.items() if name != "fp32"}
# Whether ml_dtypes' cast saturates (formats without Inf/NaN) or overflows to Inf/NaN (like CUDA
# NOSAT and PyTorch): the fp8lab overflow mode that matches it.
ML_OVERFLOW = {name: "inf_or_nan" if fp8lab.format_info(name)["has_nan"] else "saturate" for name in ML}
STORAGE = {1: np.uint8, 2: np.uint16}
# ml_dtypes warns when a cast overflows to Inf/NaN; those results are what is being compared.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def all_patterns(fmt):
    info = fp8lab.format_info(fmt)
    return np.arange(1 << info["total_bits"], dtype={8: np.uint8, 16: np.uint16}[info["storage_bits"]])


def test_every_row_with_an_ml_dtypes_type_is_checked():
    assert {"e4m3", "e5m2", "bf16", "fp16", "ue8m0", "e2m1"} <= set(ML)


@pytest.mark.parametrize("fmt", sorted(ML))
def test_decode_matches_ml_dtypes_for_every_pattern(fmt):
    bits = all_patterns(fmt)
    ours = fp8lab.decode(bits, fmt)
    theirs = bits.view(ML[fmt]).astype(np.float64)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    finite = ~np.isnan(ours)
    np.testing.assert_array_equal(ours[finite], theirs[finite])


def sample_inputs(fmt, rng):
    """Random float32 patterns, every value of fmt, midpoints and their float32 neighbours."""
    values = np.unique(np.abs(fp8lab.decode(all_patterns(fmt), fmt)))
    values = values[np.isfinite(values)]
    mids = (values[1:] + values[:-1]) / 2
    base = np.concatenate([values, mids]).astype(np.float32)
    near = np.concatenate([base, np.nextafter(base, np.float32(np.inf)), np.nextafter(base, np.float32(0))])
    raw = rng.integers(0, 2**32, size=1 << 20, dtype=np.uint64).astype(np.uint32).view(np.float32)
    return np.concatenate([near, -near, raw, np.float32([np.inf, -np.inf, 1e30, -1e30])])


@pytest.mark.parametrize("fmt", sorted(set(ML) - {"ue8m0"}))  # ue8m0: the test below
def test_encode_matches_ml_dtypes_on_every_non_nan_input(fmt):
    # ml_dtypes casts are non-saturating where the format has NaN (like CUDA NOSAT and PyTorch).
    overflow = ML_OVERFLOW[fmt]
    x = sample_inputs(fmt, np.random.default_rng(1))
    x = x[~np.isnan(x)]
    ours = fp8lab.encode(x, fmt, overflow=overflow)
    theirs = x.astype(ML[fmt]).view(STORAGE[ML[fmt].itemsize])
    theirs_nan = np.isnan(x.astype(ML[fmt]).astype(np.float32))
    ours_nan = np.isnan(fp8lab.decode(ours, fmt))
    np.testing.assert_array_equal(ours_nan, theirs_nan)
    mismatch = np.flatnonzero((ours != theirs) & ~ours_nan)
    assert mismatch.size == 0, f"{fmt}: first mismatch at x={x[mismatch[0]]!r}: ours {ours[mismatch[0]]:#x}, ml_dtypes {theirs[mismatch[0]]:#x}"


def test_encode_ue8m0_matches_ml_dtypes_on_positive_values():
    x = sample_inputs("ue8m0", np.random.default_rng(2))
    # float32 subnormals (below 2^-126) excluded: see test_ml_dtypes_e8m0_misrounds_float32_subnormals.
    x = x[(x > 0) & np.isfinite(x) & (x >= 2.0**-126) & (x <= 2.0**127)]
    ours = fp8lab.encode(x, "ue8m0", overflow="inf_or_nan")
    theirs = x.astype(ml_dtypes.float8_e8m0fnu).view(np.uint8)
    np.testing.assert_array_equal(ours, theirs)


def test_ml_dtypes_e8m0_misrounds_float32_subnormals():
    # 8.4291e-39 lies between 2^-127 (5.88e-39) and 2^-126 (1.18e-38), nearer the former (the
    # midpoint is 1.5 * 2^-127 = 8.82e-39): nearest-even gives 0x00. ml_dtypes 0.6 says 0x01.
    x = np.uint32([6015207]).view(np.float32)
    assert 2.0**-127 < float(x[0]) < 1.5 * 2.0**-127
    assert fp8lab.encode(x, "ue8m0")[0] == 0x00


def test_documented_divergences_from_ml_dtypes():
    nan = np.float32([np.nan, -np.nan])
    # NaN: one canonical pattern (sign clear, all other bits set), as CUDA; ml_dtypes keeps sign/payload.
    assert list(fp8lab.encode(nan, "e4m3")) == [0x7F, 0x7F]
    assert list(nan.astype(ml_dtypes.float8_e4m3fn).view(np.uint8)) == [0x7F, 0xFF]
    assert list(fp8lab.encode(nan, "bf16")) == [0x7FFF, 0x7FFF]
    # E8M0 has no zero: CUDA (and fp8lab) give the smallest value 2^-127 for 0 and take |x| for
    # negatives; ml_dtypes gives NaN for both.
    assert list(fp8lab.encode(np.float32([0.0, -2.0]), "ue8m0")) == [0x00, 0x80]
    assert list(np.float32([0.0, -2.0]).astype(ml_dtypes.float8_e8m0fnu).view(np.uint8)) == [0xFF, 0xFF]
    # FP4 and FP6 have no NaN: CUDA maps NaN to +max; ml_dtypes to a zero.
    assert list(fp8lab.encode(nan, "e2m1")) == [0x7, 0x7]
    assert list(fp8lab.encode(nan, "e2m3fn")) == [0x1F, 0x1F]
    assert np.float32([np.nan]).astype(ml_dtypes.float6_e2m3fn).astype(np.float32)[0] == 0


def test_saturate_is_cuda_satfinite():
    x = np.float32([1e9, -1e9, np.inf, -np.inf, 449.0, 464.0, 465.0])
    assert list(fp8lab.encode(x, "e4m3")) == [0x7E, 0xFE, 0x7E, 0xFE, 0x7E, 0x7E, 0x7E]
    assert list(fp8lab.encode(x, "e4m3", overflow="inf_or_nan")) == [0x7F, 0xFF, 0x7F, 0xFF, 0x7E, 0x7E, 0x7F]


def test_float64_input_is_rounded_once():
    x = np.float64([1 + 2.0**-8 + 2.0**-40])  # a float32 step first would make it a tie, then 1.0
    assert fp8lab.encode(x, "bf16")[0] == 0x3F81
    assert fp8lab.encode(x.astype(np.float32), "bf16")[0] == 0x3F80


def test_stochastic_rounding_is_reproducible_and_thread_count_free():
    x = np.random.default_rng(3).standard_normal(1 << 18).astype(np.float32)
    a = fp8lab.encode(x, "e4m3", rounding="stochastic", seed=11)
    fp8lab.set_num_threads(1)
    try:
        b = fp8lab.encode(x, "e4m3", rounding="stochastic", seed=11)
    finally:
        fp8lab.set_num_threads(0)
    np.testing.assert_array_equal(a, b)
    c = fp8lab.encode(x, "e4m3", rounding="stochastic", seed=12)
    assert np.count_nonzero(a != c) > 1000  # another seed, other draws
    down = fp8lab.encode(x, "e4m3", rounding="down")
    up = fp8lab.encode(x, "e4m3", rounding="up")
    assert np.all((a == down) | (a == up))


def test_shapes_are_kept_and_empty_arrays_work():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    assert fp8lab.encode(x, "e4m3").shape == (2, 3, 4)
    assert fp8lab.encode(np.float32(3.0), "e4m3").shape == ()
    assert fp8lab.encode(np.zeros((0, 5), np.float32), "bf16").shape == (0, 5)
    assert fp8lab.decode(np.zeros((0,), np.uint8), "e4m3").shape == (0,)
    strided = np.arange(20, dtype=np.float32)[::2]
    np.testing.assert_array_equal(fp8lab.encode(strided, "e4m3"), fp8lab.encode(strided.copy(), "e4m3"))


def test_storage_dtypes():
    x = np.float32([1.0])
    assert fp8lab.encode(x, "e4m3").dtype == np.uint8
    assert fp8lab.encode(x, "e2m1").dtype == np.uint8
    assert fp8lab.encode(x, "e5m6").dtype == np.uint16
    assert fp8lab.encode(x, "fp32").dtype == np.uint32
    assert fp8lab.encode(x, "e8m23").dtype == np.uint32


def test_bad_arguments_raise_clear_errors():
    x = np.float32([1.0])
    with pytest.raises(ValueError, match=r"fmt: unknown format 'fp8'.*e4m3"):
        fp8lab.encode(x, "fp8")
    with pytest.raises(ValueError, match="rounding: unknown mode 'nearest'"):
        fp8lab.encode(x, "e4m3", rounding="nearest")
    with pytest.raises(ValueError, match="overflow: unknown mode"):
        fp8lab.encode(x, "e4m3", overflow="clamp")
    with pytest.raises(TypeError, match="x: expected dtype float32 or float64, got int64"):
        fp8lab.encode(np.int64([1]), "e4m3")
    with pytest.raises(TypeError, match="bits: format e4m3 is stored as uint8, got dtype uint16"):
        fp8lab.decode(np.uint16([1]), "e4m3")
    with pytest.raises(ValueError, match="bits: element 1 = 16 does not fit the 4-bit format e2m1"):
        fp8lab.decode(np.uint8([1, 16]), "e2m1")
    with pytest.raises(ValueError, match="fmt: 'e12m3'"):
        fp8lab.format_info("e12m3")
    with pytest.raises(ValueError, match="n: -1 is negative"):
        fp8lab.set_num_threads(-1)


@pytest.mark.parametrize("fmt, e, m, bias", [("e3m2fn", 3, 2, 3), ("e2m3fn", 2, 3, 1), ("e2m1", 2, 1, 1)])
def test_ocp_mx_elements_decode_as_the_spec_formula(fmt, e, m, bias):
    # OCP MX v1.0 FP6/FP4 (no Inf/NaN): exponent field 0 is (-1)^S 2^(1-bias) 0.M, else
    # (-1)^S 2^(E-bias) 1.M. Every pattern, zero tolerance, signed zeros included.
    bits = np.arange(1 << (1 + e + m))
    S, E, M = bits >> (e + m), (bits >> m) & ((1 << e) - 1), bits & ((1 << m) - 1)
    mag = np.where(E == 0, np.ldexp(M / 2**m, 1 - bias), np.ldexp(1 + M / 2**m, E - bias))
    want = np.where(S == 1, -mag, mag)
    got = fp8lab.decode(bits.astype(np.uint8), fmt)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
    info = fp8lab.format_info(fmt)
    assert (info["max_finite"], info["has_nan"], info["has_inf"]) == (want.max(), False, False)
    # Saturating whatever the overflow mode; NaN gives +max as CUDA's __nv_cvt_float_to_fp6/fp4.
    top = (1 << (e + m)) - 1
    for overflow in ("saturate", "inf_or_nan"):
        assert list(fp8lab.encode(np.float32([1e30, -np.inf, np.nan]), fmt, overflow=overflow)) == \
            [top, top | (1 << (e + m)), top]


def test_ue4m3_is_e4m3_without_its_sign():
    # PTX .ue4m3 (the NVFP4 scale): the 7 low bits of an OCP E4M3 byte, read by ml_dtypes.
    bits = np.arange(128, dtype=np.uint8)
    want = bits.view(ml_dtypes.float8_e4m3fn).astype(np.float64)
    got = fp8lab.decode(bits, "ue4m3")
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(got[~np.isnan(got)], want[~np.isnan(want)])
    x = np.float32([448.0, 500.0, 0.3, 2.0**-10, np.nan])
    assert list(fp8lab.encode(x, "ue4m3")) == [0x7E, 0x7E, 0x2A, 0x00, 0x7F]
    assert list(fp8lab.encode(x[:4], "ue4m3")) == list(fp8lab.encode(x[:4], "e4m3"))
    with pytest.raises(ValueError, match="does not fit the 7-bit format ue4m3"):
        fp8lab.decode(np.uint8([0x80]), "ue4m3")


def test_bare_fp6_names_are_ambiguous_not_silently_changed():
    for short in ("e3m2", "e2m3"):
        with pytest.raises(ValueError, match=rf"fmt: '{short}' is ambiguous.*{short}fn.*'{short}_ieee'"):
            fp8lab.encode(np.float32([1.0]), short)
    assert fp8lab.format_info("e3m2_ieee")["max_finite"] == 14.0  # what "e3m2" used to mean
    assert fp8lab.format_info("float6_e3m2fn")["name"] == "e3m2fn"


def test_format_info_and_names():
    assert fp8lab.formats() == ["fp32", "bf16", "fp16", "e5m6", "e4m3", "e5m2", "e4m3fnuz", "e5m2fnuz", "e3m2fn",
                                "e2m3fn", "e2m1", "ue4m3", "ue8m0"]
    info = fp8lab.format_info("e4m3")
    assert (info["max_finite"], info["min_positive"], info["nan_bits"], info["has_inf"]) == (448.0, 2.0**-9, 0x7F, False)
    assert fp8lab.format_info("e5m6")["max_finite"] == 65024.0
    assert fp8lab.format_info("e3m4")["bias"] == 3


def test_rows_carry_their_schema_and_sources():
    rows = fp8lab.formats(detail=True)
    assert [r["name"] for r in rows] == fp8lab.formats()
    for r in rows:
        assert r["source"], f"{r['name']} cites no source"
        assert set(r) == {"name", "exponent_bits", "mantissa_bits", "bias", "is_signed", "non_finite",
                          "nan_encoding", "zero_exponent", "ml_dtypes", "source"}
        info = fp8lab.format_info(r["name"])
        assert {k: info[k] for k in r} == r
    e4m3 = fp8lab.format_info("e4m3")
    assert (e4m3["non_finite"], e4m3["nan_encoding"], e4m3["ml_dtypes"]) == ("nan_only", "all_ones", "float8_e4m3fn")
    assert fp8lab.format_info("float8_e4m3fn")["name"] == "e4m3"  # ml_dtypes names are aliases
    assert fp8lab.format_info("e3m4_ieee")["has_inf"] and fp8lab.format_info("e4m3_ieee")["max_finite"] == 240.0
    with pytest.raises(TypeError, match="detail: expected True or False"):
        fp8lab.formats(detail="yes")


@pytest.mark.parametrize("ocp, fnuz", [("e4m3", "e4m3fnuz"), ("e5m2", "e5m2fnuz")])
def test_ocp_to_fnuz_is_vllms_rule(ocp, fnuz):
    # vLLM normalize_e4m3fn_to_e4m3fnuz, restated with ml_dtypes: reinterpret the bits, set the
    # OCP -0 (0x80, the FNUZ NaN) to 0, double the scale. Every pattern, dequantised values equal.
    bits = np.arange(256, dtype=np.uint8)
    scale = np.float32(0.375)
    ocp_values = bits.view(ML[ocp]).astype(np.float64) * scale
    finite = np.isfinite(ocp_values)
    want = np.where(bits == 0x80, 0, bits).astype(np.uint8)
    got, got_scale = fp8lab.ocp_to_fnuz(bits, scale, ocp)
    assert got_scale == np.float32(0.75) and got.dtype == np.uint8
    np.testing.assert_array_equal(got[finite], want[finite])
    np.testing.assert_array_equal(got[~finite], 0x80)  # OCP NaN/Inf: the FNUZ NaN (vLLM would keep the bits)
    np.testing.assert_array_equal(got[finite].view(ML[fnuz]).astype(np.float64) * got_scale, ocp_values[finite])
    back, back_scale = fp8lab.fnuz_to_ocp(got, got_scale, fnuz)
    assert back_scale == scale
    np.testing.assert_array_equal(back[finite], np.where(bits == 0x80, 0, bits)[finite])
    with pytest.raises(ValueError, match="has no OCP/FNUZ twin"):
        fp8lab.ocp_to_fnuz(bits, scale, "bf16")
    with pytest.raises(ValueError, match="fmt: 'e4m3fnuz' is not an OCP format"):
        fp8lab.ocp_to_fnuz(bits, scale, "e4m3fnuz")
    with pytest.raises(TypeError, match="bits: expected dtype uint8"):
        fp8lab.ocp_to_fnuz(bits.astype(np.uint16), scale, ocp)


def test_ml_dtypes_interop_round_trip():
    x = np.float32([0.5, -3.0, 448.0])
    bits = fp8lab.encode(x, "e4m3")
    view = as_ml_dtypes(bits, "e4m3")
    assert view.dtype == ml_dtypes.float8_e4m3fn
    np.testing.assert_array_equal(view.astype(np.float32), x)
    back, fmt = from_ml_dtypes(view)
    assert fmt == "e4m3" and back.dtype == np.uint8
    np.testing.assert_array_equal(back, bits)
    with pytest.raises(TypeError, match="values: dtype int8"):
        from_ml_dtypes(np.int8([1]))
    for fmt in ("e3m2fn", "e2m3fn", "e4m3fnuz", "e5m2fnuz", "e2m1"):  # the new rows interoperate too
        bits = fp8lab.encode(x, fmt)
        view = as_ml_dtypes(bits, fmt)
        assert view.dtype == np.dtype(getattr(ml_dtypes, ML_DTYPES_NAMES[fmt]))
        np.testing.assert_array_equal(view.astype(np.float64), fp8lab.decode(bits, fmt))
        assert from_ml_dtypes(view)[1] == fmt
