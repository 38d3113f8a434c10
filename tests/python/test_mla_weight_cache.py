"""The cache of quantised FP8 projection weights (emulator/mla/weight_cache.hpp): numpy weights
written in place between calls are what the next call computes with, and the cache stays within
its limits."""
import numpy as np

from fp8lab import mla

SPEC = mla.MlaSpec(hidden=96, heads=3, q_lora=48, kv_lora=128, nope=16, v=16, rope=8,
                   wq_a="fp8", wq_b="fp8", wkv_a="fp8", wo="fp8", wkv_b="fp8")


def same(a, b):
    return all(np.array_equal(a[k].view(np.uint32), b[k].view(np.uint32)) for k in ("out", "attn"))


def test_in_place_writes_are_seen_by_the_next_call():
    w = mla.init_weights(SPEC, 5)
    x = np.random.default_rng(0).uniform(-2, 2, (6, SPEC.hidden)).astype(np.float32)
    mla.clear_weight_cache()
    first = mla.forward(x, w, SPEC, form="naive")
    before = mla.weight_cache_info()
    assert before["entries"] == 5  # wq_a, wq_b, wkv_a, wo and wkv_b quantised once each
    again = mla.forward(x, w, SPEC, form="naive")
    after = mla.weight_cache_info()
    assert after["misses"] == before["misses"] and after["hits"] >= before["hits"] + 5 and same(first, again)
    for name, idx, ulp in [("wo", (3, 7), False), ("wq_b", (0, 0), True), ("wkv_b", (5, 127), False),
                           ("wkv_a", (-1, -1), True), ("wq_a", (10, 20), False)]:
        a = w[name]
        a[idx] = np.nextafter(a[idx], np.float32(np.inf)) if ulp else -a[idx]  # in place: the same array
        got = mla.forward(x, w, SPEC, form="naive")
        mla.clear_weight_cache()
        want = mla.forward(x, {k: v.copy() for k, v in w.items()}, SPEC, form="naive")
        assert same(got, want), (name, idx)
    assert not same(first, got)


def test_cache_stays_within_its_limits():
    x = np.ones((1, SPEC.hidden), np.float32)
    for seed in range(20):
        mla.forward(x, mla.init_weights(SPEC, 100 + seed), SPEC)
        info = mla.weight_cache_info()
        assert info["entries"] <= info["max_entries"] and info["bytes"] <= info["max_bytes"]
    assert mla.weight_cache_info()["entries"] == mla.weight_cache_info()["max_entries"]
    mla.clear_weight_cache()
    assert mla.weight_cache_info()["entries"] == 0


def test_a_nan_written_in_place_is_still_an_error_naming_the_tensor():
    w = mla.init_weights(SPEC, 6)
    x = np.ones((2, SPEC.hidden), np.float32)
    mla.forward(x, w, SPEC)
    w["wo"][1, 2] = np.nan
    try:
        mla.forward(x, w, SPEC)
    except ValueError as e:
        assert "wo" in str(e)
    else:
        raise AssertionError("a NaN weight was accepted")
