"""The size-16 random Hadamard transform and stochastic rounding with given random bits
(fp8lab.rht16, fp8lab.stochastic_round) against independent numpy formulations of their sources:
TransformerEngine custom_recipes/reference_nvfp4.py (_build_hadamard_matrix, _apply_rht,
get_wgrad_sign_vector), TransformerEngine util/ptx.cuh stochastic_round_fp4_e2m1 (the software twin
of cvt.rs.satfinite.e2m1x4.f32) and the B200 measurement model of cvt.rs.satfinite.bf16x2.f32
(carry = ((bits & 0xFFFF) + r16) >> 16). Zero tolerance, plus an exhaustive and a seeded
statistical unbiasedness test."""
from __future__ import annotations

import math
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest

import fp8lab

F = np.float32
TE_SIGNS = [1, 1, 1, -1, 1, -1, -1, -1, -1, -1, -1, 1, -1, 1, -1, -1]  # get_wgrad_sign_vector()


def te_rht_matrix():
    """_build_hadamard_matrix(16, with_random_sign_mask=True) * (1 / sqrt(16)): Sylvester doubling
    [[h, h], [h, -h]] from [[1]], then diag(signs) @ h."""
    h = np.ones((1, 1))
    while h.shape[0] < 16:
        h = np.block([[h, h], [h, -h]])
    return np.diag(np.array(TE_SIGNS, float)) @ h * (1.0 / math.sqrt(16))


def round_fraction_to_f32(fr: Fraction) -> F:
    """A rational rounded once to float32, nearest-even (float() of a Fraction is correctly rounded
    to binary64; a binary64 that lands exactly on a float32 midpoint is decided from fr itself)."""
    d = float(fr)
    f = F(d)
    if float(f) != d:
        lo, hi = sorted([f, np.nextafter(f, F(np.inf) if float(f) < d else F(-np.inf))], key=float)
        mid = (Fraction(float(lo)) + Fraction(float(hi))) / 2
        if Fraction(d) == mid:  # binary64 tie: the exact value says which side
            f = hi if fr > mid else lo if fr < mid else (lo if (lo.view(np.uint32) & 1) == 0 else hi)
    return F(f)


def test_signs_are_transformer_engines():
    assert list(fp8lab.microscale.RHT_SIGNS) == TE_SIGNS


def test_rht_matches_te_matrix_exactly_on_bf16_inputs():
    # bf16-valued inputs over 2^-12 .. 2^12: every product with +-1/4 and every 16-term sum is
    # exact in float64, so x @ T in float64 then one cast is the exact sum rounded once.
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((64, 256)) * np.exp2(rng.integers(-12, 12, (64, 256)))).astype(ml_dtypes.bfloat16).astype(F)
    T = te_rht_matrix()
    want = (x.astype(np.float64).reshape(-1, 16) @ T).astype(F).reshape(x.shape)
    got = fp8lab.rht16(x)
    assert got.dtype == F and np.array_equal(got.view(np.uint32), want.view(np.uint32))


def test_rht_rounds_the_exact_sum_once_on_any_float32():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((6, 32)) * np.exp2(rng.integers(-60, 60, (6, 32)))).astype(F)
    x[0, :16] = [1.0, 2.0 ** -40, -1.0, 3e-30, 2.0 ** 24, -2.0 ** 24, 1.5, 2.0 ** -149, 7.0, -7.0, 1e-3, 0, 0, 0, 0, 1.0]
    got = fp8lab.rht16(x)
    T = [[Fraction(TE_SIGNS[i] * (-1 if bin(i & j).count("1") % 2 else 1), 4) for j in range(16)] for i in range(16)]
    for r in range(x.shape[0]):
        for b in range(0, x.shape[1], 16):
            xs = [Fraction(float(v)) for v in x[r, b:b + 16]]
            for j in range(16):
                want = round_fraction_to_f32(sum(xs[i] * T[i][j] for i in range(16)))
                assert got[r, b + j].view(np.uint32) == want.view(np.uint32) or (got[r, b + j] == 0 and want == 0), (r, b, j)


def test_rht_is_orthonormal_and_handles_specials():
    x = np.zeros((1, 16), F)
    x[0, 5] = 4.0
    np.testing.assert_array_equal(fp8lab.rht16(x)[0], np.abs(te_rht_matrix()[5] * 4.0).astype(F) * np.sign(te_rht_matrix()[5]))
    y = np.ones((2, 16), F)
    y[0, 3], y[1, 0], y[1, 1] = np.nan, np.inf, -np.inf
    out = fp8lab.rht16(y)
    assert np.isnan(out[0]).all()
    # +Inf at 0 (coefficient s0*H[0][j] = +1) and -Inf at 1 (s1*H[1][j] = +-1): NaN where both signs agree
    # on opposite infinities, +-Inf elsewhere.
    c0 = np.array(TE_SIGNS[0]) * np.array([(-1) ** bin(0 & j).count("1") for j in range(16)])
    c1 = np.array(TE_SIGNS[1]) * np.array([(-1) ** bin(1 & j).count("1") for j in range(16)])
    for j in range(16):
        if c0[j] * 1 == -c1[j] * 1:  # +Inf*c0 and -Inf*c1 have the same sign
            assert out[1, j] == np.inf * c0[j]
        else:
            assert np.isnan(out[1, j])


def test_rht_bad_input():
    with pytest.raises(ValueError, match="cols: .* 24 columns is not a multiple of 16"):
        fp8lab.rht16(np.zeros((2, 24), F))
    with pytest.raises(TypeError, match="x: expected dtype float32"):
        fp8lab.rht16(np.zeros((2, 16)))
    with pytest.raises(ValueError, match="x: expected a 2-D array"):
        fp8lab.rht16(np.zeros(16, F))
    assert fp8lab.rht16(np.zeros((0, 16), F)).shape == (0, 16)


# ---- stochastic rounding ----
def te_sr_fp4(x, r8):
    """TransformerEngine util/ptx.cuh stochastic_round_fp4_e2m1 (float arithmetic): u = r/256,
    step by |x|, t = fmaf(u, step, a) (float64 sum is exact here, one rounding to float32),
    step_t by t, q = min(floor(t / step_t) * step_t, 6), copysign(q, x) (+ for NaN)."""
    a = np.abs(x).astype(np.float64)
    u = r8.astype(np.float64) / 256.0
    step = np.where(a >= 4, 2.0, np.where(a >= 2, 1.0, 0.5))
    with np.errstate(invalid="ignore"):
        t = (u * step + a).astype(F).astype(np.float64)
        step_t = np.where(t >= 4, 2.0, np.where(t >= 2, 1.0, 0.5))
        q = np.fmin(np.floor(t / step_t) * step_t, 6.0)
    q = np.where(np.isnan(t), 6.0, q)
    return np.copysign(q, np.where(np.isnan(x), 1.0, x)).astype(F)


def grid_sr(x, fmt, r, w):
    """Value-domain SR: the target quantum ulp at |x| (the format's binade, or its subnormal quantum),
    lo = floor(|x| / ulp) * ulp, frac = (|x| - lo) / ulp; away iff floor(frac * 2^w) + r >= 2^w;
    satfinite clamps to max. ml_dtypes decodes nothing here: all exact in float64."""
    info = fp8lab.format_info(fmt)
    m, emin, fmax = info["mantissa_bits"], info["min_normal_exponent"], info["max_finite"]
    out = np.empty(x.shape, np.float64)
    for i, (v, ri) in enumerate(zip(x.astype(np.float64).ravel(), r.ravel())):
        a = abs(v)
        if math.isinf(a):
            out.flat[i] = math.copysign(fmax, v)
            continue
        e = math.frexp(a)[1] - 1 if a else emin
        ulp = 2.0 ** (max(e, emin) - m)
        lo = math.floor(a / ulp) * ulp
        top = math.floor((a - lo) / ulp * 2 ** w)
        res = min(lo + (ulp if top + int(ri) >= 2 ** w else 0.0), fmax)
        out.flat[i] = math.copysign(res, v)
    return out


def test_sr_e2m1_matches_te_software_twin_exhaustively():
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.uniform(-7, 7, 4000), rng.standard_normal(2000) * 0.3, [0.25, 0.75, 5.0, 6.0, -6.5, 1e-30]])
    x = x.astype(F)
    for r in range(256):
        rb = np.full(x.shape, r, np.uint32)
        got = fp8lab.decode(fp8lab.stochastic_round(x, "e2m1", rb), "e2m1").astype(F)
        want = te_sr_fp4(x, rb)
        assert np.array_equal(got, want), (r, x[got != want][:4], got[got != want][:4], want[got != want][:4])
    nan = fp8lab.stochastic_round(np.array([np.nan, -np.nan], F), "e2m1", np.zeros(2, np.uint32))
    assert nan.tolist() == [0x7, 0x7]  # NaN -> +MAX_NORM (satfinite, as TE's twin)


@pytest.mark.parametrize("fmt", ["e4m3", "e5m2", "bf16", "fp16"])
def test_sr_matches_the_grid_formula(fmt):
    rng = np.random.default_rng(3)
    info = fp8lab.format_info(fmt)
    w = fp8lab.microscale.RBITS_WIDTH[fmt]
    x = (rng.standard_normal(3000) * np.exp2(rng.integers(-20, 20, 3000))).astype(F)
    x[:6] = [np.inf, -np.inf, min(info["max_finite"] * 2, float(np.finfo(F).max)), info["min_positive"] / 3, -info["min_positive"] * 1.5, 0.0]
    r = rng.integers(0, 2 ** w, x.shape).astype(np.uint32)
    got = fp8lab.decode(fp8lab.stochastic_round(x, fmt, r), fmt)
    assert np.array_equal(got, grid_sr(x, fmt, r, w))


def test_sr_bf16_matches_the_b200_bit_model():
    """cvt.rs.satfinite.bf16x2.f32 as the B200 measurement harness models it: result = (bits >> 16)
    + (((bits & 0xFFFF) + r16) >> 16), saturating at 0x7F7F."""
    rng = np.random.default_rng(4)
    bits = rng.integers(0, 0x7F800000, 20000, dtype=np.uint32) | (rng.integers(0, 2, 20000, dtype=np.uint32) << 31)
    x = bits.view(F)
    r = rng.integers(0, 1 << 16, x.shape).astype(np.uint32)
    res = (bits >> 16) + (((bits & 0xFFFF) + r) >> 16)
    sign = res & 0x8000
    want = np.where((res & 0x7FFF) >= 0x7F80, sign | 0x7F7F, res).astype(np.uint16)
    assert np.array_equal(fp8lab.stochastic_round(x, "bf16", r), want)


def test_sr_is_exactly_unbiased_over_all_random_words():
    # Over all 2^8 words, E[SR(x)] = lo + ulp * floor(frac * 256) / 256 exactly: equal to x when x's
    # discarded fraction has at most 8 bits (then SR is unbiased), and never above x otherwise.
    x = (np.arange(1, 513, dtype=np.float64) * 2.0 ** -8 * 3.0 + 0.0).astype(F)  # fractions k/256 of e4m3's ulp...
    x = np.concatenate([x, (np.linspace(-400, 400, 999)).astype(F)])
    total = np.zeros(x.shape, np.float64)
    for r in range(256):
        total += fp8lab.decode(fp8lab.stochastic_round(x, "e4m3", np.full(x.shape, r, np.uint32)), "e4m3")
    mean = total / 256
    want = grid_sr_mean(x, "e4m3", 8)
    assert np.array_equal(mean, want)
    eight_bit = np.array([fraction_bits(v, "e4m3") <= 8 for v in x])
    assert eight_bit.sum() > 400 and np.array_equal(mean[eight_bit], x[eight_bit].astype(np.float64))


def fraction_bits(v, fmt):
    info = fp8lab.format_info(fmt)
    a = abs(float(v))
    e = math.frexp(a)[1] - 1 if a else info["min_normal_exponent"]
    ulp = 2.0 ** (max(e, info["min_normal_exponent"]) - info["mantissa_bits"])
    frac = Fraction(a) / Fraction(ulp) % 1
    return 0 if frac == 0 else int(math.log2(frac.denominator))


def grid_sr_mean(x, fmt, w):
    info = fp8lab.format_info(fmt)
    out = []
    for v in x.astype(np.float64):
        a = abs(v)
        e = math.frexp(a)[1] - 1 if a else info["min_normal_exponent"]
        ulp = 2.0 ** (max(e, info["min_normal_exponent"]) - info["mantissa_bits"])
        lo = math.floor(a / ulp) * ulp
        out.append(math.copysign(min(lo + ulp * math.floor((a - lo) / ulp * 2 ** w) / 2 ** w, info["max_finite"]), v))
    return np.array(out)


def test_sr_statistical_unbiasedness_with_seeded_words():
    # 2^16 draws for each of 64 values whose fractions are multiples of 1/256 of an ulp: the sample
    # mean error of value i has variance ulp_i^2 p_i (1 - p_i) / N; the test allows 5 standard
    # deviations of the mean over all values together (false-failure odds ~ 6e-7, and the seed is fixed).
    rng = np.random.default_rng(5)
    n = 1 << 16
    x = (rng.integers(256, 2048, 64) / 256.0 * np.exp2(rng.integers(-4, 4, 64))).astype(F)  # e4m3 ulps 2^-3..
    xs = np.repeat(x, n)
    r = rng.integers(0, 256, xs.shape).astype(np.uint32)
    got = fp8lab.decode(fp8lab.stochastic_round(xs, "e4m3", r), "e4m3").reshape(64, n)
    err = got.mean(axis=1) - x.astype(np.float64)
    info = fp8lab.format_info("e4m3")
    ulp = np.exp2(np.floor(np.log2(x.astype(np.float64))) - info["mantissa_bits"])
    p = (x.astype(np.float64) % ulp) / ulp
    sd_total = math.sqrt(float(np.sum(ulp ** 2 * p * (1 - p) / n)))
    assert abs(err.sum()) <= 5 * sd_total, (err.sum(), sd_total)
    # Nearest-even would be biased: its summed error over these values is far outside that band.
    rn = fp8lab.decode(fp8lab.encode(x, "e4m3"), "e4m3") - x.astype(np.float64)
    assert abs(rn.sum()) > 5 * sd_total


def test_sr_bad_input():
    x = np.ones(4, F)
    with pytest.raises(ValueError, match="rbits: value 256 has bits above its width 8"):
        fp8lab.stochastic_round(x, "e4m3", np.full(4, 256, np.uint32))
    with pytest.raises(ValueError, match=r"width: random bits per value must be in \[1, 32\], got 0"):
        fp8lab.stochastic_round(x, "e4m3", np.zeros(4, np.uint32), width=0)
    with pytest.raises(ValueError, match="rbits: shape must equal x's"):
        fp8lab.stochastic_round(x, "e4m3", np.zeros(3, np.uint32))
    with pytest.raises(TypeError, match="rbits: expected dtype uint32"):
        fp8lab.stochastic_round(x, "e4m3", np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="int8"):
        fp8lab.stochastic_round(x, "int8", np.zeros(4, np.uint32), width=8)
    with pytest.raises(ValueError, match="width: no cvt.rs width known for format 'e5m6'"):
        fp8lab.stochastic_round(x, "e5m6", np.zeros(4, np.uint32))
