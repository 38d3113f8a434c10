"""fp8lab.gemm / gemm_exact / gemm_bound / metrics from Python, against independent Python oracles:
exact rational arithmetic (fractions.Fraction, whose float() rounds correctly) and a from-scratch
integer rendering of the Hopper E4M3 wgmma model as REFERENCE.md states it."""
from fractions import Fraction
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import fp8lab


def e4m3_values(shape, seed, scale=64.0):
    """Gaussian values rounded to E4M3 (so they are valid tensor-core inputs), as float32."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * scale
    return fp8lab.decode(fp8lab.encode(x, "e4m3"), "e4m3").astype(np.float32)


# ---- an independent model of one Hopper E4M3 wgmma (REFERENCE.md "Tensor cores") -----------
def _parts(v, emin):
    """(exponent clamped at emin, significand as a Fraction) with v = sig * 2^exp."""
    if v == 0:
        return None
    e = max(math.floor(math.log2(abs(v))), emin)
    return e, Fraction(v) / Fraction(2) ** e


def _trunc(x: Fraction) -> int:
    return int(x)  # toward zero


def hopper_dot_add(a, b, c):
    terms = []  # (exponent used for alignment, exact value)
    for x, y in zip(a, b):
        px, py = _parts(float(x), -6), _parts(float(y), -6)
        if px is None or py is None:
            continue
        terms.append((px[0] + py[0], Fraction(float(x)) * Fraction(float(y))))
    if c != 0:
        terms.append((_parts(float(c), -126)[0], Fraction(float(c))))
    if not terms:
        return 0.0
    emax = max(e for e, _ in terms)
    u = Fraction(2) ** (emax - 13)
    s = sum(_trunc(t / u) for _, t in terms)  # truncate magnitudes, exact integer sum
    if s == 0:
        return 0.0
    nb = abs(s).bit_length()
    mag = abs(s) >> max(nb - 14, 0) << max(nb - 14, 0)  # keep 14 significant bits
    return float(math.copysign(mag * u, s))


def promoted_reference(a, b, sa, sb, nc=128):
    """DeepGEMM order: chains of 32-wide instructions from zero, fma(sa*sb, p, acc) in float32."""
    M, K = a.shape
    N = b.shape[0]
    out = np.zeros((M, N), dtype=np.float32)
    for i in range(M):
        for j in range(N):
            acc = np.float32(0)
            for kb in range(0, K, nc):
                p = 0.0
                for kc in range(kb, min(K, kb + nc), 32):
                    p = hopper_dot_add(a[i, kc:kc + 32], b[j, kc:kc + 32], p)
                s = np.float32(sa[i]) * np.float32(sb[j])
                # fma: one rounding of the exact s*p + acc
                acc = np.float32(float(Fraction(float(s)) * Fraction(p) + Fraction(float(acc))))
            out[i, j] = acc
    return out


def test_tensor_core_model_probes():
    # REFERENCE.md single-instruction probes, through a 1 x 1 x 32 GEMM (unit scales, fp32 out).
    def one(a, b):
        a = np.array([a + [0.0] * (32 - len(a))], dtype=np.float32)
        b = np.array([b + [0.0] * (32 - len(b))], dtype=np.float32)
        return fp8lab.gemm(a, b, accumulate="tensorcore", out="fp32")[0, 0]
    assert one([1, 2.0**-6], [1, 2.0**-7]) == 1 + 2.0**-13
    assert one([1, 2.0**-7], [1, 2.0**-7]) == 1.0
    assert one([1, 1, 2.0**-6], [1, 1, 2.0**-7]) == 2.0
    assert one([1, -1, 2.0**-6], [1, 1, 2.0**-7]) == 2.0**-13


def test_promoted_matches_independent_python_model():
    a = e4m3_values((3, 200), 1)
    b = e4m3_values((4, 200), 2)
    got = fp8lab.gemm(a, b, accumulate="promoted", out="fp32")
    want = promoted_reference(a, b, np.ones(3), np.ones(4))
    np.testing.assert_array_equal(got, want.astype(np.float64))
    # Also the python model's rendering of the bf16 output rounding (nearest even via ml_dtypes).
    import ml_dtypes
    got16 = fp8lab.gemm(a, b, out="bf16")
    np.testing.assert_array_equal(got16, want.astype(ml_dtypes.bfloat16).astype(np.float64))


def test_exact_matches_fractions_and_bound_holds():
    rng = np.random.default_rng(5)
    a = e4m3_values((4, 300), 3)
    b = e4m3_values((5, 300), 4)
    c = rng.standard_normal((4, 5)).astype(np.float32)
    exact = fp8lab.gemm_exact(a, b, c=c)
    for i in range(4):
        for j in range(5):
            s = sum(Fraction(float(x)) * Fraction(float(y)) for x, y in zip(a[i], b[j])) + Fraction(float(c[i, j]))
            assert exact[i, j] == float(s)  # Fraction -> float rounds to nearest even
    for acc in ("promoted", "tensorcore", "fp32", "fp32_pairwise", "exact"):
        d = fp8lab.gemm(a, b, accumulate=acc, c=c)
        bound = fp8lab.gemm_bound(a, b, accumulate=acc, c=c)
        assert np.all(np.abs(d - exact) <= bound), acc
        m = fp8lab.metrics(d, exact, out="bf16", bound=bound)
        assert m["violations"] == 0


def test_metrics_values():
    r = np.array([1.0, 2.0, 0.5])
    x = np.array([1.0, 2.5, 0.5])
    m = fp8lab.metrics(r, x, out="fp32")
    assert m["max_rel_error"] == pytest.approx(0.2)
    assert m["mean_rel_error"] == pytest.approx(0.2 / 3)
    assert m["calc_diff"] == pytest.approx(1 - 2 * np.sum(r * x) / np.sum(r * r + x * x))
    assert m["ulp_histogram"]["0"] == 2
    assert sum(m["ulp_histogram"].values()) == 3


def test_bf16_arrays_are_accepted_exactly():
    import ml_dtypes
    rng = np.random.default_rng(3)
    a = rng.standard_normal((3, 50)).astype(ml_dtypes.bfloat16)
    b = rng.standard_normal((2, 50)).astype(ml_dtypes.bfloat16)
    got = fp8lab.gemm(a, b, accumulate="exact", out="fp64")
    want = [[float(sum(Fraction(float(x)) * Fraction(float(y)) for x, y in zip(a[i], b[j]))) for j in range(2)]
            for i in range(3)]
    np.testing.assert_array_equal(got, np.array(want))


def test_float64_input_must_hold_float32_values():
    with pytest.raises(ValueError, match="a: element \\[0, 0\\]"):
        fp8lab.gemm(np.full((1, 32), 0.1), np.ones((1, 32)), accumulate="fp32")


@pytest.mark.parametrize("kwargs, exc, text", [
    (dict(accumulate="kahan"), ValueError, "accumulate: unknown value 'kahan'"),
    (dict(combine="x"), ValueError, "combine"),
    (dict(out="fp16"), ValueError, "out"),
    (dict(promote_every=0), ValueError, "promote_every"),
    (dict(promote_every=100), ValueError, "promote_every: 100"),
    (dict(promote_every=1.5), TypeError, "promote_every"),
    (dict(instruction="volta_fp8"), ValueError, "volta_fp8"),
    (dict(c=np.ones((2, 2), dtype=np.float32)), ValueError, "c: expected shape"),
])
def test_bad_arguments(kwargs, exc, text):
    a = e4m3_values((2, 64), 1)
    b = e4m3_values((3, 64), 2)
    with pytest.raises(exc, match=text):
        fp8lab.gemm(a, b, **kwargs)


def test_bad_operands():
    a = e4m3_values((2, 64), 1)
    with pytest.raises(ValueError, match="b: has K = 32"):
        fp8lab.gemm(a, e4m3_values((3, 32), 2))
    with pytest.raises(ValueError, match="a: element \\[0, 0\\] = 0.1.* is not an e4m3 value"):
        fp8lab.gemm(np.full((1, 32), 0.1, dtype=np.float32), a[:1, :32])
    with pytest.raises(TypeError, match="a: expected a QTensor or a 2-D numpy float array"):
        fp8lab.gemm([[1.0]], a)
    with pytest.raises(ValueError, match="a: expected a 2-D array"):
        fp8lab.gemm(np.ones(4, dtype=np.float32), a)
    with pytest.raises(TypeError, match="b: expected dtype float32 or float64"):
        fp8lab.gemm(a, np.ones((2, 64), dtype=np.int32))
    bad = a.copy()
    bad[0, 3] = np.inf  # E4M3 has a NaN but no Inf (NaN operands follow the NaN/Inf policy)
    with pytest.raises(ValueError, match="a: element \\[0, 3\\] = inf is not an e4m3 value"):
        fp8lab.gemm(bad, a)


def test_qtensor_operands():
    quantize = fp8lab.quantize
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 256)).astype(np.float32)
    w = rng.standard_normal((8, 256)).astype(np.float32)
    qa, qb = quantize(x, tile=(1, 128)), quantize(w, tile=(128, 128))
    d = fp8lab.gemm(qa, qb, out="fp32")
    exact = fp8lab.gemm_exact(qa, qb)
    assert np.all(np.abs(d - exact) <= fp8lab.gemm_bound(qa, qb, out="fp32"))
    assert fp8lab.metrics(d, exact)["max_rel_error"] < 0.05


def test_tensorcore_chain_matches_mmasim():
    """The no-promotion chain (C = previous D through every wgmma) against MMA-Sim's WGMMA model."""
    torch = pytest.importorskip("torch")
    nv = pytest.importorskip("mmasim.nv_ptx")
    M, N, K = 64, 8, 128
    a = e4m3_values((M, K), 11)
    b = e4m3_values((N, K), 12)
    ours = fp8lab.gemm(a, b, accumulate="tensorcore", out="fp32")
    op = nv.WGMMA("Hopper", f"m64n{N}k32.f32.e4m3.e4m3")
    ta = torch.from_numpy(a).to(torch.float8_e4m3fn)
    tb = torch.from_numpy(b).to(torch.float8_e4m3fn)
    d = torch.zeros((M, N), dtype=torch.float32)
    for kc in range(0, K, 32):
        d = op(ta[:, kc:kc + 32], tb[:, kc:kc + 32].T.contiguous(), d)
    np.testing.assert_array_equal(ours.astype(np.float32).view(np.uint32), d.numpy().view(np.uint32))


def test_results_own_their_buffers_while_alive():
    """Large results and operand copies come from a buffer cache (FP8LAB_BUFFER_CACHE_MB): a live
    result must never be handed to the next call, and a freed one may be, with new values."""
    rng = np.random.default_rng(7)
    shapes = (384, 512, 256)  # 1.5 MiB of float64 results: above the cache's 1 MiB floor
    a1, b1 = (fp8lab.quantize(rng.standard_normal((m, 512), dtype=np.float32), operand=o)
              for m, o in ((shapes[0], "a"), (shapes[1], "b")))
    a2 = fp8lab.quantize(rng.standard_normal((shapes[0], 512), dtype=np.float32) * 3, operand="a")
    r1 = fp8lab.gemm(a1, b1)
    kept = r1.copy()
    view = r1[::2]
    r2 = fp8lab.gemm(a2, b1)
    r3 = fp8lab.gemm(a1, b1, accumulate="fp32")
    assert np.array_equal(r1, kept) and np.array_equal(view, kept[::2])
    assert not np.shares_memory(r1, r2) and not np.shares_memory(r2, r3) and not np.shares_memory(r1, r3)
    assert not np.array_equal(r2, kept)
    del r1
    assert np.array_equal(view, kept[::2])  # the view keeps the buffer alive
    del view
    r4 = fp8lab.gemm(a2, b1)  # may reuse r1's buffer: its values are the new call's
    assert np.array_equal(r4, r2)
    assert np.array_equal(fp8lab.gemm(a1, b1), kept)


def test_buffer_cache_info_and_release():
    """A 1024x512 GEMM's operand copies and result (>= 1 MiB each) come from the cache: the second
    identical call reuses them, release_buffer_cache empties it, and the values never change."""
    if "FP8LAB_BUFFER_CACHE_MB" in os.environ:
        pytest.skip("runs with the default cache limit")
    rng = np.random.default_rng(11)
    a = fp8lab.quantize(rng.standard_normal((1024, 512), dtype=np.float32), operand="a")
    b = fp8lab.quantize(rng.standard_normal((512, 512), dtype=np.float32), operand="b")
    first = fp8lab.gemm(a, b)
    before = fp8lab.buffer_cache_info()
    assert set(before) == {"cached_bytes", "cached_buffers", "reused", "allocated"}
    assert before["cached_bytes"] >= 2 << 20 and before["cached_buffers"] >= 1
    again = fp8lab.gemm(a, b)
    after = fp8lab.buffer_cache_info()
    assert after["reused"] >= before["reused"] + 2  # A's decoded values and the paired layouts at least
    assert np.array_equal(first, again)
    fp8lab.release_buffer_cache()
    empty = fp8lab.buffer_cache_info()
    assert empty["cached_bytes"] == 0 and empty["cached_buffers"] == 0
    assert np.array_equal(fp8lab.gemm(a, b), first)
    assert fp8lab.buffer_cache_info()["allocated"] > empty["allocated"]


@pytest.mark.parametrize("value", ["abc", "-1", "2000000", ""])
def test_malformed_buffer_cache_limit_is_an_error_naming_it(value):
    """FP8LAB_BUFFER_CACHE_MB must be a whole number of MiB in [0, 1048576]: anything else fails the
    first call that needs a large buffer, with a ValueError naming the variable (not a silent default)."""
    code = ("import numpy as np, fp8lab\n"
            "a = fp8lab.quantize(np.ones((1024, 512), np.float32), operand='a')\n"
            "b = fp8lab.quantize(np.ones((512, 512), np.float32), operand='b')\n"
            "fp8lab.gemm(a, b)\n")
    env = dict(os.environ, FP8LAB_BUFFER_CACHE_MB=value)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert f"ValueError: FP8LAB_BUFFER_CACHE_MB: '{value}' is not a whole number of MiB" in r.stderr, r.stderr
