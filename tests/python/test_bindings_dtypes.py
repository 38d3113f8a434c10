"""The bindings compare dtypes as numpy does (same kind, size and byte order), not by descriptor
identity: an array whose dtype equals the wanted one (a descriptor with metadata, one made by
``newbyteorder('=')``, ``'<f4'`` spelled out, ``np.intc`` for int32) is accepted and gives the same
result as the plain dtype. Inputs in the other byte order (``'>f4'``) hold the same values and are
read through a native copy; an ``out=`` array, written in place, must be native and is refused
with an error naming ``out``. Different types (int64 for int32, float64 bits) stay refused."""
import sys

import numpy as np
import pytest

import fp8lab
from fp8lab import _core

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
SWAPPED = ">" if sys.byteorder == "little" else "<"


def equal_dtypes(base):
    """Arrays' dtypes equal to ``base`` but distinct descriptor objects, and the native spelling."""
    d = np.dtype(base)
    return [d.newbyteorder("="), np.dtype(d.str, metadata={"from": "h5py"}), d.newbyteorder("S").newbyteorder("S"),
            np.dtype("=" + d.char)]


def as_dtype(x, dt):
    """x's values in an array of dtype dt (any byte order)."""
    return x.astype(dt)


@pytest.fixture
def floats():
    rng = np.random.default_rng(11)
    return (rng.standard_normal((5, 48)) * 30).astype(np.float32)


def test_the_equal_dtypes_are_other_objects():
    # What the old `dtype().is(...)` check refused: each equals float32 but is another object.
    for dt in equal_dtypes(np.float32)[:3]:
        assert dt == np.float32 and dt is not np.dtype(np.float32)
    assert np.dtype(np.longlong) == np.int64 and np.dtype(np.longlong) is not np.dtype(np.int64)


def test_encode_and_decode_accept_equal_dtypes(floats):
    want = fp8lab.encode(floats, "e4m3")
    for dt in equal_dtypes(np.float32):
        np.testing.assert_array_equal(fp8lab.encode(as_dtype(floats, dt), "e4m3"), want)
        np.testing.assert_array_equal(_core.encode(as_dtype(floats, dt), "e4m3"), want)
    values = fp8lab.decode(want, "e4m3")
    for dt in equal_dtypes(np.uint8):
        np.testing.assert_array_equal(fp8lab.decode(want.astype(dt), "e4m3"), values)
    bf = fp8lab.encode(floats, "bf16")
    for dt in equal_dtypes(np.uint16):
        np.testing.assert_array_equal(fp8lab.decode(bf.astype(dt), "bf16"), fp8lab.decode(bf, "bf16"))


def test_encode_and_decode_read_swapped_byte_order_inputs_by_value(floats):
    big = floats.astype(SWAPPED + "f4")
    assert big.dtype != np.float32
    np.testing.assert_array_equal(_core.encode(big, "e4m3"), fp8lab.encode(floats, "e4m3"))
    np.testing.assert_array_equal(_core.encode(floats.astype(SWAPPED + "f8"), "e5m2"), fp8lab.encode(floats, "e5m2"))
    bf = fp8lab.encode(floats, "bf16")
    np.testing.assert_array_equal(_core.decode(bf.astype(SWAPPED + "u2"), "bf16"), fp8lab.decode(bf, "bf16"))


def test_out_arrays_must_be_native(floats):
    # Written in place, so a byte-swapped destination cannot be converted: refused, naming out.
    with pytest.raises(ValueError, match="out: expected a writeable C-contiguous uint16 array"):
        _core.encode(floats, "bf16", "nearest_even", "saturate", 0, False, np.empty(floats.shape, SWAPPED + "u2"))
    with pytest.raises(TypeError, match="out: expected dtype uint16"):
        fp8lab.encode(floats, "bf16", out=np.empty(floats.shape, SWAPPED + "u2"))
    with pytest.raises(ValueError, match="out: expected a writeable C-contiguous float32 array"):
        _core.decode(fp8lab.encode(floats, "e4m3"), "e4m3", True, np.empty(floats.shape, SWAPPED + "f4"))
    # and an equal native dtype with metadata is a fine destination
    out = np.empty(floats.shape, np.dtype("f4", metadata={"m": 1}))
    _core.decode(fp8lab.encode(floats, "e4m3"), "e4m3", True, out)
    np.testing.assert_array_equal(out, fp8lab.decode(fp8lab.encode(floats, "e4m3"), "e4m3", dtype=np.float32))


def test_gemm_accepts_equal_dtypes(floats):
    a = fp8lab.decode(fp8lab.encode(floats, "e4m3"), "e4m3", dtype=np.float32)
    b = a[::-1].copy()
    want = fp8lab.gemm(a, b, accumulate="promoted", instruction="hopper_fp8")
    for dt in equal_dtypes(np.float32):
        got = fp8lab.gemm(a.astype(dt), b.astype(dt), accumulate="promoted", instruction="hopper_fp8")
        np.testing.assert_array_equal(got, want)
    got = _core.gemm(a.astype(SWAPPED + "f4"), b.astype(SWAPPED + "f4"), "promoted", 128, "deepgemm", "hopper_fp8", "fp32", None)
    np.testing.assert_array_equal(got, _core.gemm(a, b, "promoted", 128, "deepgemm", "hopper_fp8", "fp32", None))


def test_int32_arguments_accept_equal_dtypes_and_refuse_int64():
    ids = np.array([[0, 3], [3, 1], [2, 3]], dtype=np.int32)
    want = _core.moe_expert_loads(ids, 4)
    for dt in equal_dtypes(np.int32) + [np.dtype(np.intc), np.dtype(SWAPPED + "i4")]:
        np.testing.assert_array_equal(_core.moe_expert_loads(ids.astype(dt), 4), want)
    for wrong in (np.int64, np.longlong, np.uint32, np.float32):
        with pytest.raises(TypeError, match=r"ids: expected dtype int32, got "):
            _core.moe_expert_loads(ids.astype(wrong), 4)


def test_moe_route_accepts_equal_float32_dtypes():
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((7, 256)).astype(np.float32)
    ids, w = fp8lab.moe.route(logits)
    for dt in equal_dtypes(np.float32):
        ids2, w2 = fp8lab.moe.route(logits.astype(dt))
        np.testing.assert_array_equal(ids2, ids)
        np.testing.assert_array_equal(w2, w)


def test_from_parts_accepts_equal_dtypes_and_swapped_inputs(floats):
    q = fp8lab.quantize(floats, (1, 16), "e4m3", "deepgemm")
    bits, scales = np.asarray(q.bits), np.asarray(q.scales)
    want = fp8lab.decode(bits, "e4m3")
    for bdt, sdt in zip(equal_dtypes(np.uint8) + [np.dtype(np.uint8)],
                        equal_dtypes(np.float32) + [np.dtype(SWAPPED + "f4")]):
        q2 = fp8lab.from_parts(bits.astype(bdt), scales.astype(sdt), "e4m3", (1, 16), "deepgemm")
        np.testing.assert_array_equal(np.asarray(q2.scales), scales)
        np.testing.assert_array_equal(fp8lab.decode(np.asarray(q2.bits), "e4m3"), want)
    with pytest.raises(TypeError, match="scales: rule 'deepgemm' stores float32 scales: expected dtype float32, got float64"):
        fp8lab.from_parts(bits, scales.astype(np.float64), "e4m3", (1, 16), "deepgemm")


def test_python_level_entry_points_read_swapped_byte_order_inputs_by_value(floats):
    # The checks written in Python (routing, fp8lab.gemm's operands, quantize, dot, FlashMLA's sparse
    # cache) compare dtypes too; each takes the other byte order by value, as the C++ bindings do.
    big = lambda x: x.astype(SWAPPED + x.dtype.str[1:])  # noqa: E731
    assert big(floats).dtype != np.float32 and np.array_equal(big(floats), floats)
    logits = np.random.default_rng(5).standard_normal((7, 256)).astype(np.float32)
    bias = np.linspace(-0.1, 0.1, 256, dtype=np.float32)
    for got, want in zip(fp8lab.moe.route(big(logits), big(bias)), fp8lab.moe.route(logits, bias)):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(fp8lab.moe.gate_scores(big(logits)), fp8lab.moe.gate_scores(logits))
    a = fp8lab.decode(fp8lab.encode(floats, "e4m3"), "e4m3", dtype=np.float32)
    b = a[::-1].copy()
    for fn in (fp8lab.gemm, fp8lab.gemm_bound, fp8lab.gemm_exact):
        np.testing.assert_array_equal(fn(big(a), big(b)), fn(a, b))
        np.testing.assert_array_equal(fn(big(a.astype(np.float64)), b), fn(a, b))
    q, q_big = fp8lab.quantize(floats), fp8lab.quantize(big(floats))
    np.testing.assert_array_equal(np.asarray(q_big.bits), np.asarray(q.bits))
    np.testing.assert_array_equal(np.asarray(q_big.scales), np.asarray(q.scales))
    bits, scales = np.empty_like(np.asarray(q.bits)), np.empty_like(np.asarray(q.scales))
    fp8lab.quantize(big(floats), out=(bits, scales))
    np.testing.assert_array_equal(bits, np.asarray(q.bits))
    np.testing.assert_array_equal(scales, np.asarray(q.scales))
    x, y = a[:, :32], b[:, :32]
    np.testing.assert_array_equal(fp8lab.dot(big(x), big(y), big(np.ones(x.shape[0], np.float32))),
                                  fp8lab.dot(x, y, np.ones(x.shape[0], np.float32)))
    values = np.random.default_rng(3).standard_normal((1, 64, 576)).astype(np.float32)
    np.testing.assert_array_equal(fp8lab.mla_sparse.sparse_kv_quantize(big(values)),
                                  fp8lab.mla_sparse.sparse_kv_quantize(values))
