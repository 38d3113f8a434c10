"""fp8lab.mla reads the weights dict in place: float32 C-contiguous arrays are viewed for the call,
not copied (DeepSeek-V3's ~750 MB per call) and not snapshotted (a write between calls is seen, and
checked, by the next call). Oracles: the same call on copies of the weights converted by numpy
(float64, Fortran order: the binding's copy path), and a fresh copy of the written weights."""
import ml_dtypes
import numpy as np
import pytest

from fp8lab import mla

SMALL = mla.MlaSpec(hidden=64, heads=4, q_lora=32, kv_lora=128, nope=16, rope=8, v=16)
FP8_WKV_B = mla.MlaSpec(hidden=64, heads=2, q_lora=32, kv_lora=256, nope=32, rope=8, v=32, wkv_b="fp8")
KEYS = ("out", "attn", "q_nope", "q_pe", "latent", "k_pe", "q_absorbed")


def x_of(spec, tokens=7, seed=0):
    x = np.random.default_rng(seed).uniform(-1.7, 1.7, (tokens, spec.hidden))
    return x.astype(np.float32).astype(ml_dtypes.bfloat16).astype(np.float32)


def assert_same_bits(a, b):
    for k in KEYS:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert np.array_equal(a[k].view(np.uint32), b[k].view(np.uint32)), k


def with_checkpoint_wkv_b(w, spec):
    """The FP8 checkpoint form of wkv_b (E4M3 values, power-of-two block multipliers)."""
    rows, cols = w["wkv_b"].shape
    s = np.exp2(np.ceil(np.log2(np.abs(w["wkv_b"]).reshape(rows // 128, 128, cols // 128, 128).max(axis=(1, 3)) / 448)))
    e = (w["wkv_b"] / np.repeat(np.repeat(s, 128, 0), 128, 1)).astype(ml_dtypes.float8_e4m3fn).astype(np.float32)
    return dict(w, wkv_b_e4m3=e, wkv_b_scale_inv=s.astype(np.float32))


@pytest.mark.parametrize("spec,checkpoint", [(SMALL, False), (SMALL.replace(q_lora=0), False),
                                             (FP8_WKV_B, False), (FP8_WKV_B, True)])
@pytest.mark.parametrize("form", ["absorbed", "naive"])
def test_viewed_weights_equal_converted_copies(spec, checkpoint, form):
    w = mla.init_weights(spec, 3)
    if checkpoint:
        w = with_checkpoint_wkv_b(w, spec)
    saved = {k: v.copy() for k, v in w.items()}
    x = x_of(spec)
    got = mla.forward(x, w, spec, form, start_pos=4)
    copied = {k: np.asfortranarray(v.astype(np.float64)) for k, v in w.items()}  # numpy converts: a copy
    assert_same_bits(got, mla.forward(x, copied, spec, form, start_pos=4))
    # Non-contiguous float32 views are converted the same way (a copy for the call).
    strided = {k: np.repeat(v[..., None], 2, axis=-1)[..., 0] for k, v in w.items()}
    assert not strided["wo"].flags.c_contiguous
    assert_same_bits(got, mla.forward(x, strided, spec, form, start_pos=4))
    # The call reads the weights and writes none of them.
    for k, v in w.items():
        assert np.array_equal(v.view(np.uint32), saved[k].view(np.uint32)), k
    # The results are arrays of their own (handed over without a copy), writable and C-contiguous.
    for k in KEYS:
        assert got[k].flags.writeable and got[k].flags.c_contiguous, k
        assert not any(np.shares_memory(got[k], v) for v in w.values()), k
    # q_absorbed is decode's query whichever form ran.
    other = mla.forward(x, w, spec, "naive" if form == "absorbed" else "absorbed", start_pos=4)
    assert np.array_equal(got["q_absorbed"].view(np.uint32), other["q_absorbed"].view(np.uint32))


def test_write_between_calls_is_seen_by_the_next_call():
    w = mla.init_weights(SMALL, 5)
    x = x_of(SMALL, 5, 1)
    before = mla.forward(x, w, SMALL)
    w["wkv_b"][3, 7] *= -2  # the user writes into the array the dict holds
    after = mla.forward(x, w, SMALL)
    fresh = mla.forward(x, {k: v.copy() for k, v in w.items()}, SMALL)
    assert not np.array_equal(after["attn"], before["attn"])
    assert_same_bits(after, fresh)


@pytest.mark.parametrize("name", ["wq_a", "q_norm", "wq_b", "wkv_a", "kv_norm", "wkv_b", "wo"])
def test_nan_written_between_calls_is_an_error_naming_the_tensor(name):
    w = mla.init_weights(SMALL, 6)
    x = x_of(SMALL, 3, 2)
    good = mla.forward(x, w, SMALL)
    flat = w[name].reshape(-1)
    assert np.shares_memory(flat, w[name])
    keep = flat[5]
    flat[5] = np.nan
    for call in (lambda: mla.forward(x, w, SMALL, "absorbed"), lambda: mla.forward(x, w, SMALL, "naive"),
                 lambda: mla.compare_forms(x, w, SMALL)):
        with pytest.raises(ValueError, match=rf"weights\.{name}: element 5 is not finite"):
            call()
    flat[5] = keep
    assert_same_bits(mla.forward(x, w, SMALL), good)


def test_bad_weights_name_the_argument():
    w = mla.init_weights(SMALL, 7)
    x = x_of(SMALL, 2)
    with pytest.raises(TypeError, match=r"weights\['wo'\]: expected a float array, got dtype int32"):
        mla.forward(x, dict(w, wo=w["wo"].astype(np.int32)), SMALL)
    with pytest.raises(ValueError, match=r"weights\['wq_b'\]: expected 3072 elements for this spec, got 3071"):
        mla.forward(x, dict(w, wq_b=w["wq_b"].reshape(-1)[:-1]), SMALL)
    with pytest.raises(ValueError, match="weights: missing tensor 'kv_norm'"):
        mla.forward(x, {k: v for k, v in w.items() if k != "kv_norm"}, SMALL)
    with pytest.raises(ValueError, match="weights: unknown tensor 'wk'"):
        mla.forward(x, dict(w, wk=w["wo"]), SMALL)
    inf = dict(w, wkv_a=w["wkv_a"].copy())
    inf["wkv_a"][1, 2] = -np.inf
    with pytest.raises(ValueError, match=r"weights\.wkv_a: element 66 is not finite"):
        mla.forward(x, inf, SMALL)
