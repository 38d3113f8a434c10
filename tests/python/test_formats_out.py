"""encode/decode into caller arrays (``out=``) and decode's ``dtype=``: the same bits as the
allocating calls and as ml_dtypes (an independent implementation), and clear errors naming
``out`` / ``dtype`` for every kind of unusable destination."""
import ml_dtypes
import numpy as np
import pytest

import fp8lab
from fp8lab.formats import ML_DTYPES_NAMES

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
BYTE_FORMATS = [f for f in fp8lab.formats() if fp8lab.format_info(f)["storage_bits"] == 8]


def test_encode_out_is_filled_and_returned_with_the_same_bits():
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((37, 129)) * 100).astype(np.float32)
    for fmt in ("e4m3", "e5m2", "e2m1", "bf16"):
        want = fp8lab.encode(x, fmt)
        out = np.full(x.shape, 0xAB, dtype=want.dtype)
        got = fp8lab.encode(x, fmt, out=out)
        assert got is out
        np.testing.assert_array_equal(out, want)
    # float64 input and another rounding go through out= too
    out = np.empty(x.shape, np.uint8)
    np.testing.assert_array_equal(fp8lab.encode(x.astype(np.float64), "e4m3", rounding="up", out=out),
                                  fp8lab.encode(x.astype(np.float64), "e4m3", rounding="up"))


def test_encode_out_may_be_the_ml_dtypes_array_and_matches_ml_dtypes():
    x = (np.random.default_rng(4).standard_normal(100000) * 64).astype(np.float32)  # within e4m3's range
    out = np.empty(x.shape, ml_dtypes.float8_e4m3fn)
    assert fp8lab.encode(x, "e4m3", out=out) is out
    np.testing.assert_array_equal(out.view(np.uint8), x.astype(ml_dtypes.float8_e4m3fn).view(np.uint8))


def test_encode_out_errors_name_out():
    x = np.ones((4, 8), np.float32)
    cases = [
        ([0] * 32, TypeError, "out: expected a numpy array"),
        (np.empty((4, 8), np.uint16), TypeError, "out: expected dtype uint8 or float8_e4m3fn, got uint16"),
        (np.empty((4, 8), ml_dtypes.float8_e5m2), TypeError, "out: expected dtype"),
        (np.empty((8, 4), np.uint8), ValueError, r"out: expected shape \(4, 8\), got \(8, 4\)"),
        (np.empty((4, 16), np.uint8)[:, ::2], ValueError, "out: must be C-contiguous"),
    ]
    ro = np.empty((4, 8), np.uint8)
    ro.flags.writeable = False
    cases.append((ro, ValueError, "out: is read-only"))
    for out, err, msg in cases:
        with pytest.raises(err, match=msg):
            fp8lab.encode(x, "e4m3", out=out)
    # out over x's own bytes: refused, x untouched
    buf = np.ones(64, np.float32)
    with pytest.raises(ValueError, match="out: shares memory with x"):
        fp8lab.encode(buf[:16], "e4m3", out=buf.view(np.uint8)[:16])
    assert (buf == 1).all()


@pytest.mark.parametrize("fmt", BYTE_FORMATS)
def test_decode_float32_and_float64_agree_with_the_exact_decoder_on_every_pattern(fmt):
    n = 1 << fp8lab.format_info(fmt)["total_bits"]
    bits = np.arange(n, dtype=np.uint8)
    f64 = fp8lab.decode(bits, fmt)
    f32 = fp8lab.decode(bits, fmt, dtype=np.float32)
    assert f64.dtype == np.float64 and f32.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(f32), np.isnan(f64))
    np.testing.assert_array_equal(f32.astype(np.float64), f64)  # float32 holds every value exactly
    for dtype, want in ((np.float32, f32), (np.float64, f64)):
        out = np.empty(n, dtype)
        assert fp8lab.decode(bits, fmt, out=out) is out
        np.testing.assert_array_equal(out.view(np.uint32 if dtype == np.float32 else np.uint64),
                                      want.view(np.uint32 if dtype == np.float32 else np.uint64))
    if fmt in ML_DTYPES_NAMES:  # an independent decoder
        ml = np.dtype(getattr(ml_dtypes, ML_DTYPES_NAMES[fmt]))
        theirs = bits.view(ml).astype(np.float32)
        np.testing.assert_array_equal(np.isnan(theirs), np.isnan(f32))
        np.testing.assert_array_equal(theirs[~np.isnan(theirs)], f32[~np.isnan(f32)])


def test_decode_big_arrays_take_the_same_path_in_every_chunk():
    bits = np.random.default_rng(5).integers(0, 256, size=(3, 400001), dtype=np.uint8)
    want = fp8lab.decode(bits, "e5m2")
    got = fp8lab.decode(bits, "e5m2", dtype="float32")
    assert got.shape == bits.shape
    np.testing.assert_array_equal(got.astype(np.float64), want)


def test_decode_dtype_and_out_errors():
    bits = np.zeros((2, 3), np.uint8)
    with pytest.raises(TypeError, match="dtype: expected float32 or float64, got float16"):
        fp8lab.decode(bits, "e4m3", dtype=np.float16)
    with pytest.raises(TypeError, match="dtype: expected float32 or float64"):
        fp8lab.decode(bits, "e4m3", dtype="not a dtype")
    with pytest.raises(TypeError, match="out: expected dtype float64, got float32"):
        fp8lab.decode(bits, "e4m3", dtype=np.float64, out=np.empty((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"out: expected shape \(2, 3\)"):
        fp8lab.decode(bits, "e4m3", out=np.empty(6, np.float32))
    with pytest.raises(ValueError, match="out: must be C-contiguous"):
        fp8lab.decode(bits, "e4m3", out=np.empty((2, 6), np.float32)[:, ::2])
    with pytest.raises(ValueError, match="dtype: float32 cannot hold every value of e9m20 exactly"):
        fp8lab.decode(np.zeros(3, np.uint32), "e9m20", dtype=np.float32)  # exponents beyond float32's
    with pytest.raises(ValueError, match="bits: element 4 = 17 does not fit the 4-bit format e2m1"):
        fp8lab.decode(np.array([1, 2, 3, 4, 17], np.uint8), "e2m1", dtype=np.float32)
