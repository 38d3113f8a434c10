"""Every named scale rule against an independent numpy re-formulation of its source's published
formula (not of our C++), with zero tolerance: element bits and scales must be identical.

The formulas below are transcribed from the sources (cited per function). PyTorch's
``.to(torch.float8_e4m3fn)`` is ml_dtypes' ``astype`` (nearest-even, non-saturating: from 464 up
becomes NaN); CUDA/Triton ``satfinite`` casts are ``clip(+-max)`` then the cast (NaN passes).
"""
from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest

import fp8lab

F = np.float32
DT = {"e4m3": ml_dtypes.float8_e4m3fn, "e5m2": ml_dtypes.float8_e5m2}
FMAX = {"e4m3": F(448.0), "e5m2": F(57344.0), "e2m1": F(6.0)}
EMAX = {"e4m3": 8, "e5m2": 15, "e2m1": 2}  # exponent of the largest normal (OCP MX table 1)


# ---- tiles: zero padding to whole tiles, as DeepGEMM's per_token/per_block_cast_to_fp8 do ----
def blocks(x: np.ndarray, tile) -> np.ndarray:
    r, c = x.shape
    tr, tc = tile[0] or r, tile[1] or c
    R, C = -(-r // tr) * tr, -(-c // tc) * tc
    xp = np.zeros((R, C), F)
    xp[:r, :c] = x
    return xp.reshape(R // tr, tr, C // tc, tc)


def unblock(v: np.ndarray, shape) -> np.ndarray:
    return v.reshape(v.shape[0] * v.shape[1], v.shape[2] * v.shape[3])[: shape[0], : shape[1]]


def amax_propagate(v):  # torch.amax / Tensor.max: NaN propagates
    return np.abs(v).max(axis=(1, 3), keepdims=True)


def amax_ignore(v):  # CUDA fmaxf / PTX max.f32: NaN elements are skipped
    a = np.fmax.reduce(np.abs(v), axis=3, keepdims=True)
    return np.fmax.reduce(a, axis=1, keepdims=True)


def cast_torch(q, fmt):
    with np.errstate(all="ignore"):
        return q.astype(DT[fmt]).view(np.uint8)


def cast_satfinite(q, fmt):
    return np.clip(q, -FMAX[fmt], FMAX[fmt]).astype(DT[fmt]).view(np.uint8)


def ceil_pow2_exact(s):
    """2^ceil(log2 s) evaluated exactly (float64 log2 of a float32 is exact enough to decide the
    ceiling; 0 -> 0, Inf/NaN pass)."""
    out = np.array(s, F, copy=True)
    flat = out.reshape(-1)
    for i, v in enumerate(flat):
        if np.isfinite(v) and v > 0:
            m, e = math.frexp(float(v))  # v = m 2^e, 0.5 <= m < 1
            flat[i] = F(math.ldexp(1.0, e - 1 if m == 0.5 else e))
    return out


# ---- the sources' formulas ----
def ref_deepseek(x, tile, fmt, ue8m0=False):
    """DeepSeek-V3 inference/kernel.py act_quant_kernel: amax = max(|x|) (Triton max skips NaN);
    amax = maximum(amax, 1e-4); s = amax / 448; ue8m0: s = exp2(ceil(log2(s))); y = x / s, cast
    with satfinite."""
    v = blocks(x, tile)
    a = np.fmax(amax_ignore(v), F(1e-4))
    s = (a / FMAX[fmt]).astype(F)
    if ue8m0:
        s = ceil_pow2_exact(s)
    with np.errstate(all="ignore"):
        q = (v / s).astype(F)
    return unblock(cast_satfinite(q, fmt), x.shape), s[:, 0, :, 0]


def ref_deepseek_v32(x, tile, fmt, round_scale=False):
    """DeepSeek-V3.2-Exp inference/kernel.py act_quant_kernel (TileLang): fp8_max_inv = 1 / 448;
    amax = max(amax, 1e-4); s = amax * fp8_max_inv, or fast_round_scale: bits = reinterpret(s),
    exp = ((bits >> 23) & 0xFF) - 127 + (mantissa != 0), s = reinterpret((exp + 127) << 23);
    y = clamp(x / s, -448, 448) cast to FP8."""
    v = blocks(x, tile)
    a = np.fmax(amax_ignore(v), F(1e-4))
    s = (a * F(1.0 / float(FMAX[fmt]))).astype(F)
    if round_scale:
        bits = s.view(np.uint32).astype(np.int64)
        e = ((bits >> 23) & 0xFF) - 127 + ((bits & 0x7FFFFF) != 0)
        s = ((e + 127) << 23).astype(np.uint32).view(F)
    with np.errstate(all="ignore"):
        q = np.clip((v / s).astype(F), -FMAX[fmt], FMAX[fmt])
    return unblock(cast_torch(q, fmt), x.shape), s[:, 0, :, 0]


def ref_deepgemm(x, tile, fmt, ue8m0=False):
    """DeepGEMM per_token_cast_to_fp8: x_amax = x.abs().float().amax().clamp(1e-4); sf = amax / 448;
    ceil_to_ue8m0: exp = ((bits >> 23) & 0xFF) + (bits & 0x7FFFFF).bool(), clamp(1, 254), << 23;
    (x * (1.0 / sf)).to(torch.float8_e4m3fn)."""
    v = blocks(x, tile)
    a = np.maximum(amax_propagate(v), F(1e-4))  # clamp(min): NaN stays NaN
    sf = (a / FMAX[fmt]).astype(F)
    byte = None
    if ue8m0:
        bits = np.abs(sf).view(np.int32)
        e = ((bits >> 23) & 0xFF) + ((bits & 0x7FFFFF) != 0).astype(np.int32)
        e = np.clip(e, 1, 254)
        sf = (e << 23).astype(np.int32).view(F)
        byte = e.astype(np.uint8)[:, 0, :, 0]
    with np.errstate(all="ignore"):
        q = (v * (F(1.0) / sf)).astype(F)
    return unblock(cast_torch(q, fmt), x.shape), (byte if ue8m0 else sf[:, 0, :, 0])


def ref_te(x, tile, fmt, pow2=True):
    """TransformerEngine recipe_common.cuh compute_scale_from_amax (eps 0, value_for_inf FLT_MAX),
    blockwise kernel: amax by fmaxf, output static_cast<fp8>(x * scale) (satfinite),
    scale_inv = 1.0f / scale."""
    v = blocks(x, tile)
    a = amax_ignore(v)
    scale = np.empty_like(a)
    for idx in np.ndindex(a.shape):
        am = F(a[idx])
        if am < F(0.0):
            am = F(0.0)
        if np.isinf(am) or am == 0:
            sc = F(1.0)
        else:
            with np.errstate(all="ignore"):
                sc = F(FMAX[fmt] / am)
            if np.isinf(sc):
                sc = np.finfo(F).max
            if np.isnan(sc):
                sc = F(1.0)
            if pow2:
                sc = (np.array(sc, F).view(np.uint32) & np.uint32(0xFF800000)).view(F)[()]
        scale[idx] = sc
    with np.errstate(all="ignore"):
        q = (v * scale).astype(F)
    return unblock(cast_satfinite(q, fmt), x.shape), (F(1.0) / scale)[:, 0, :, 0]


def ref_flashmla(x, tile, fmt):
    """FlashMLA tests/quant.py quantize_k_cache: s = |x|.max(-1) / 448.0;
    s = torch.pow(2, torch.clamp_min(s, 1e-4).log2().ceil()); (x.float() / s).to(float8_e4m3fn)."""
    v = blocks(x, tile)
    s = (amax_propagate(v) / FMAX[fmt]).astype(F)
    s = ceil_pow2_exact(np.maximum(s, F(1e-4)))
    with np.errstate(all="ignore"):
        q = (v / s).astype(F)
    return unblock(cast_torch(q, fmt), x.shape), s[:, 0, :, 0]


def ref_flashmla_ue8m0(x, tile, fmt):
    """FlashMLA tests/quant.py MODEL1_FP8Sparse: the scale above stored as float8_e8m0fnu bytes
    (2^e -> e + 127; a NaN or infinite scale reads back as the NaN byte 0xFF)."""
    bits, s = ref_flashmla(x, tile, fmt)
    ok = np.isfinite(s) & (s > 0)
    e = np.where(ok, np.log2(np.where(ok, s, 1)).round() + 127, 255)
    return bits, e.astype(np.uint8)


def ref_vllm(x, tile, fmt):
    """vLLM native per_token_group_quant_fp8: amax.clamp(min=1e-10); x_s = amax / fp8_max;
    (x / x_s).clamp(fp8_min, fp8_max).to(fp8)."""
    v = blocks(x, tile)
    a = np.maximum(amax_propagate(v), F(1e-10))
    s = (a / FMAX[fmt]).astype(F)
    with np.errstate(all="ignore"):
        q = np.clip((v / s).astype(F), -FMAX[fmt], FMAX[fmt])
    return unblock(cast_torch(q, fmt), x.shape), s[:, 0, :, 0]


def ref_mx(x, tile, fmt):
    """OCP MX v1.0 §6.3 as in microsoft/microxcaling _shared_exponents: shared_exp =
    floor(log2(amax + FP32_MIN_NORMAL * (amax == 0))) - emax_elem; > 127 -> NaN; < -127 -> -127;
    elements x / 2^shared_exp, nearest-even, clamped to the max normal."""
    v = blocks(x, tile)
    a = amax_propagate(v).astype(np.float64)
    with np.errstate(all="ignore"):
        e = np.floor(np.log2(a + 2.0 ** -126 * (a == 0))) - EMAX[fmt]
    e = np.where(e > 127, np.nan, np.where(e < -127, -127.0, e))
    X = np.exp2(e).astype(F)  # 2^-127 is a float32 subnormal, exact
    byte = np.where(np.isnan(e), 255, e + 127).astype(np.uint8)[:, 0, :, 0]
    with np.errstate(all="ignore"):
        q = (v / X).astype(F)
    if fmt == "e2m1":
        q = np.clip(q, -FMAX[fmt], FMAX[fmt])
        bits = q.astype(ml_dtypes.float4_e2m1fn).view(np.uint8)
    else:
        bits = cast_satfinite(q, fmt)
    return unblock(bits, x.shape), byte


# ---- MX E8M0 rounding modes (torchao ScaleCalculationMode, TransformerEngine MXFP8) ----
# torchao mx_formats/constants.py: F8E4M3_MAX_POW2 = 8, F8E5M2_MAX_POW2 = 15, F4_E2M1_MAX_POW2 = 2,
# F6_E2M3_MAX_POW2 = 2, F6_E3M2_MAX_POW2 = 4; the element mantissa widths MBITS_*.
TARGET_MAX_POW2 = {"e4m3": 8, "e5m2": 15, "e2m1": 2, "e2m3fn": 2, "e3m2fn": 4}
MBITS = {"e4m3": 3, "e5m2": 2, "e2m1": 1, "e2m3fn": 3, "e3m2fn": 2}
# OCP MX elements without NaN (torchao f32_to_f4_unpacked / f32_to_f6_*_unpacked, ml_dtypes names).
FINITE_ONLY = {"e2m1": ml_dtypes.float4_e2m1fn, "e2m3fn": ml_dtypes.float6_e2m3fn, "e3m2fn": ml_dtypes.float6_e3m2fn}


def mx_max(fmt):
    """The element's max_pos (torchao constants: 448, 57344, 6, 7.5, 28)."""
    return FMAX[fmt] if fmt in FMAX else F(float(ml_dtypes.finfo(FINITE_ONLY[fmt]).max))


def e8m0_reciprocal(byte):
    """torchao _e8m0_scale_to_reciprocal_fp32 / TE ptx::exp2f_rcp: 2^(127 - b), NaN for 0xFF."""
    b = byte.astype(np.int64)
    with np.errstate(all="ignore"):
        r = np.exp2((127 - b).astype(np.float64)).astype(F)  # 2^-127 is an exact float32 subnormal
    return np.where(b == 255, F(np.nan), r).astype(F)


def cast_mx_elements(q, fmt):
    if fmt in FINITE_ONLY:
        # cvt.rn.satfinite to E2M1/E2M3/E3M2: NaN becomes +MAX_NORM (TransformerEngine util/ptx.cuh
        # notes the same edge for its software twin), everything else clamps to +-max and rounds to
        # nearest-even.
        dt = FINITE_ONLY[fmt]
        fmax = F(float(ml_dtypes.finfo(dt).max))
        bits = np.clip(q, -fmax, fmax).astype(dt).view(np.uint8)
        top = np.array(fmax, F).astype(dt).view(np.uint8)
        return np.where(np.isnan(q), top, bits).astype(np.uint8)
    return cast_satfinite(q, fmt)


def ref_torchao_mx(x, tile, fmt, mode):
    """torchao mx_tensor.py to_mx: max_abs = torch.amax(|x|) (NaN propagates). RCEIL: descale =
    max_abs * (1.0 / max_pos), E8M0 by _f32_to_e8m0_rceil (exponent + (mantissa != 0), subnormals
    up only above 0x400000, non-finite -> 255). FLOOR/CEIL/EVEN: EVEN first does max_abs_bits =
    (bits + (1 << (23 - mbits - 1))) & (((1 << 9) - 1) << 23), NaN restored; extracted_pow2 =
    ((bits >> 23) & 0xFF) - 127, CEIL adds (bits & 0x7FFFFF) > 0; minus target_max_pow2, clamped
    to [-127, 128], + 127, 255 where max_abs is not finite. data_lp = data_hp * reciprocal, then
    the saturating cast."""
    v = blocks(x, tile)
    max_abs = amax_propagate(v).astype(F)
    if mode == "rceil":
        with np.errstate(all="ignore"):
            descale = (max_abs * F(1.0 / float(mx_max(fmt)))).astype(F)
        bits = descale.view(np.int32).astype(np.int64)
        be, man = (bits >> 23) & 0xFF, bits & 0x7FFFFF
        byte = be + np.where(be == 0, man > 0x400000, man != 0)
        byte = np.where(np.isfinite(descale), byte, 255)
    else:
        m = max_abs
        if mode == "even":
            b = m.view(np.uint32).astype(np.int64)
            b = (b + (1 << (23 - MBITS[fmt] - 1))) & (((1 << 9) - 1) << 23)
            m = np.where(np.isnan(max_abs), F(np.nan), b.astype(np.uint32).view(F)).astype(F)
        bits = m.view(np.uint32).astype(np.int64)
        ext = ((bits >> 23) & 0xFF) - 127
        if mode == "ceil":
            ext = ext + ((bits & 0x7FFFFF) > 0)
        byte = np.clip(ext - TARGET_MAX_POW2[fmt], -127, 128) + 127
        byte = np.where(np.isfinite(m), byte, 255)
    with np.errstate(all="ignore"):
        q = (v * e8m0_reciprocal(byte)).astype(F)
    return unblock(cast_mx_elements(q, fmt), x.shape), byte.astype(np.uint8)[:, 0, :, 0]


def ref_te_mxfp8(x, tile, fmt):
    """TransformerEngine quantize_mxfp8.cuh: amax by fmaxf (NaN skipped); biased_exponent =
    float_to_e8m0(amax * max_norm_rcp), whose software twin (ptx_arch_spec.cuh) is: NaN -> 0xFF,
    Inf -> 0xFE, 0 -> 0, else exponent field, + 1 if (mantissa > 0 and exponent != 0xFE) and not
    (exponent == 0 and mantissa <= 0x400000); out = static_cast<fp8>(in * exp2f_rcp(e))."""
    v = blocks(x, tile)
    with np.errstate(all="ignore"):
        # thread_amax starts at 0.0f, so an all-NaN block has amax 0.
        val = (np.fmax(amax_ignore(v), F(0.0)) * F(1.0 / float(mx_max(fmt)))).astype(F)
    bits = val.view(np.uint32).astype(np.int64)
    e, man = bits >> 23, bits & 0x7FFFFF
    up = (man > 0) & (e != 0xFE) & ~((e == 0) & (man <= 0x400000))
    byte = np.where(np.isnan(val), 0xFF, np.where(np.isinf(val), 0xFE, np.where(val == 0, 0, e + up)))
    with np.errstate(all="ignore"):
        q = (v * e8m0_reciprocal(byte)).astype(F)
    return unblock(cast_mx_elements(q, fmt), x.shape), byte.astype(np.uint8)[:, 0, :, 0]


MX_REFS = {
    "mx": lambda x, t, f: ref_torchao_mx(x, t, f, "floor"),  # torchao FLOOR = the OCP row
    "mx_rceil": lambda x, t, f: ref_torchao_mx(x, t, f, "rceil"),
    "mx_ceil": lambda x, t, f: ref_torchao_mx(x, t, f, "ceil"),
    "mx_even": lambda x, t, f: ref_torchao_mx(x, t, f, "even"),
    "te_mxfp8": ref_te_mxfp8,
}


REFS = {
    "deepseek": lambda x, t, f: ref_deepseek(x, t, f),
    "deepseek_ue8m0": lambda x, t, f: ref_deepseek(x, t, f, ue8m0=True),
    "deepseek_v32": lambda x, t, f: ref_deepseek_v32(x, t, f),
    "deepseek_v32_ue8m0": lambda x, t, f: ref_deepseek_v32(x, t, f, round_scale=True),
    "deepgemm": lambda x, t, f: ref_deepgemm(x, t, f),
    "deepgemm_ue8m0": lambda x, t, f: ref_deepgemm(x, t, f, ue8m0=True),
    "te": lambda x, t, f: ref_te(x, t, f),
    "te_fp32": lambda x, t, f: ref_te(x, t, f, pow2=False),
    "flashmla_cache": ref_flashmla,
    "flashmla_cache_ue8m0": ref_flashmla_ue8m0,
    "vllm": ref_vllm,
    "mx": ref_mx,
}


# ---- adversarial inputs ----
def adversarial(shape, seed: int) -> np.ndarray:
    """Rows (and so 1xN tiles) of the kinds the issue lists, over a Gaussian background: all zero,
    all max, one 1e30 outlier, only float32 subnormals, NaN, +-Inf, mixed signs, amax exactly
    448 * 2^k, tiny amax (below the 1e-4 floors), values just above a power of two."""
    rng = np.random.default_rng(seed)
    r, c = shape
    x = (rng.standard_normal(shape) * np.exp2(rng.integers(-12, 12, size=(r, 1)))).astype(F)
    kinds = [
        lambda row: row * 0,
        lambda row: np.full_like(row, 448.0),
        lambda row: np.where(np.arange(c) == c // 3, F(1e30), row),
        lambda row: (rng.integers(1, 2 ** 23, size=c) * rng.choice([-1, 1], size=c)).astype(np.int64).astype(F)
        * F(2.0 ** -149),
        lambda row: np.where(np.arange(c) == 5, F(np.nan), row),
        lambda row: np.where(np.arange(c) == 7, F(np.inf), row),
        lambda row: np.where(np.arange(c) == 9, F(-np.inf), row),
        lambda row: np.abs(row) * np.where(np.arange(c) % 2 == 0, F(1), F(-1)),
        lambda row: np.where(np.arange(c) == 11, F(448.0 * 2.0 ** int(rng.integers(-20, 20))), row * F(1e-9)),
        lambda row: (row * F(1e-7)).astype(F),
        lambda row: np.full_like(row, F(np.nan)),
        lambda row: np.where(np.arange(c) % 3 == 0, F(np.float32(2.0 ** -10) * F(1.0000001)), row * F(1e-4)),
        lambda row: np.where(np.arange(c) == 0, -F(448.0 * 3 * 2.0 ** -5), row * F(2.0 ** -5)),
    ]
    for i in range(r):
        k = (i + seed) % (len(kinds) + 3)
        if k < len(kinds):
            x[i] = kinds[k](x[i].copy()).astype(F)
    return x


def same_bits(got: np.ndarray, want: np.ndarray, fmt: str, what: str):
    assert got.shape == want.shape, what
    if fmt in ("e2m1", "e2m3fn", "e3m2fn"):  # no NaN: codes compare as they are
        eq = got == want
    else:
        dec = ml_dtypes.float8_e4m3fn if fmt == "e4m3" else ml_dtypes.float8_e5m2
        gv, wv = got.view(dec).astype(np.float64), want.view(dec).astype(np.float64)
        # Every NaN pattern is "NaN" to a kernel; CUDA (and fp8lab) write the canonical 0x7F.
        eq = (got == want) | (np.isnan(gv) & np.isnan(wv))
    if not eq.all():
        i = tuple(np.argwhere(~eq)[0])
        raise AssertionError(f"{what}: first mismatch at {i}: got 0x{int(got[i]):02x}, want 0x{int(want[i]):02x}")


def same_scales(got: np.ndarray, want: np.ndarray, what: str):
    assert got.shape == want.shape, f"{what}: scale grid {got.shape} vs {want.shape}"
    assert got.dtype == want.dtype, f"{what}: scale dtype {got.dtype} vs {want.dtype}"
    if got.dtype == np.uint8:
        eq = got == want
    else:
        eq = (got.view(np.uint32) == want.view(np.uint32)) | (np.isnan(got) & np.isnan(want))
    if not eq.all():
        i = tuple(np.argwhere(~eq)[0])
        raise AssertionError(f"{what}: first scale mismatch at {i}: got {got[i]!r}, want {want[i]!r}")


SHAPES = [(303, 300), (305, 256), (26, 128)]
TILES = [(1, 128), (128, 128), (128, 1), (0, 0), (1, 0), (7, 5)]


@pytest.mark.parametrize("rule", [r for r in REFS if r != "mx"])
@pytest.mark.parametrize("tile", TILES)
def test_rule_matches_its_source_formula(rule, tile):
    for si, shape in enumerate(SHAPES):
        x = adversarial(shape, seed=si * 7 + len(rule))
        q = fp8lab.quantize(x, tile=tile, fmt="e4m3", rule=rule)
        bits, scales = REFS[rule](x, tile, "e4m3")
        same_bits(q.bits, bits, "e4m3", f"{rule} {tile} {shape}")
        same_scales(np.asarray(q.scales), np.asarray(scales), f"{rule} {tile} {shape}")


@pytest.mark.parametrize("rule", ["deepseek", "deepgemm", "te", "vllm", "flashmla_cache"])
def test_rule_matches_source_with_e5m2_elements(rule):
    x = adversarial((64, 384), seed=3)
    q = fp8lab.quantize(x, tile=(1, 128), fmt="e5m2", rule=rule)
    bits, scales = REFS[rule](x, (1, 128), "e5m2")
    same_bits(q.bits, bits, "e5m2", rule)
    same_scales(np.asarray(q.scales), np.asarray(scales), rule)


@pytest.mark.parametrize("fmt", ["e4m3", "e5m2", "e2m1"])
@pytest.mark.parametrize("tile", [(1, 32), (32, 1)])
def test_mx_matches_ocp_shared_exponent(fmt, tile):
    for si, shape in enumerate([(303, 300), (64, 96)]):
        x = adversarial(shape, seed=11 + si)
        q = fp8lab.quantize(x, tile=tile, fmt=fmt, rule="mx")
        bits, byte = ref_mx(x, tile, fmt)
        scale_nan = np.isnan(np.asarray(q.scale_values))
        # Elements of a NaN-scale block are NaN whatever their bits (OCP MX §6.3); compare the rest.
        mask = np.repeat(np.repeat(scale_nan, tile[0], 0), tile[1], 1)[: shape[0], : shape[1]]
        same_bits(np.where(mask, 0, q.bits).astype(np.uint8), np.where(mask, 0, bits).astype(np.uint8), fmt,
                  f"mx {fmt} {tile}")
        same_scales(np.asarray(q.scales), byte, f"mx {fmt} {tile}")
        assert np.isnan(q.dequantize()[mask]).all()


def mx_elements_equal(q, bits, byte, tile, fmt, what):
    shape = q.bits.shape
    scale_nan = np.isnan(np.asarray(q.scale_values))
    # Elements of a NaN-scale block are NaN whatever their bits (OCP MX §6.3); compare the rest.
    mask = np.repeat(np.repeat(scale_nan, tile[0], 0), tile[1], 1)[: shape[0], : shape[1]]
    same_bits(np.where(mask, 0, q.bits).astype(np.uint8), np.where(mask, 0, bits).astype(np.uint8), fmt, what)
    same_scales(np.asarray(q.scales), byte, what)
    assert np.isnan(q.dequantize()[mask]).all(), what


@pytest.mark.parametrize("rule", sorted(MX_REFS))
@pytest.mark.parametrize("fmt", ["e4m3", "e5m2", "e2m1", "e2m3fn", "e3m2fn"])
def test_mx_rounding_modes_match_torchao_and_te(rule, fmt):
    for si, (shape, tile) in enumerate([((303, 300), (1, 32)), ((64, 96), (32, 1)), ((96, 64), (2, 16))]):
        x = adversarial(shape, seed=31 + si + len(rule))
        # Scaled copies put block amaxes on every side of the E8M0 rounding boundaries.
        x = x * F(2.0) ** np.arange(-3, 3, dtype=np.float32)[np.arange(shape[0]) % 6][:, None].astype(F)
        q = fp8lab.quantize(x.astype(F), tile=tile, fmt=fmt, rule=rule)
        bits, byte = MX_REFS[rule](x.astype(F), tile, fmt)
        mx_elements_equal(q, bits, byte, tile, fmt, f"{rule} {fmt} {tile} {shape}")


def test_mx_rounding_modes_differ_where_the_sources_say():
    # amax 150 in e4m3 (pytorch/ao#2035): FLOOR 2^(7-8), CEIL 2^(8-8), RCEIL 150/448 -> 2^-1,
    # EVEN 150 = 1.171875 * 2^7 stays in its binade -> 2^-1. amax 496 = 1.9375 * 2^8: EVEN's
    # half-ULP at 3 mantissa bits (2^-4) carries it to 2^9 -> 2^1, FLOOR keeps 2^0 (and 496
    # saturates to 448), CEIL and RCEIL (496/448 > 1) give 2^1.
    x = np.zeros((2, 32), F)
    x[0, 0], x[1, 0] = 150.0, 496.0
    got = {r: fp8lab.quantize(x, (1, 32), "e4m3", r).scales[:, 0].tolist() for r in MX_REFS}
    assert got["mx"] == [126, 127] and got["mx_ceil"] == [127, 128] and got["mx_rceil"] == [126, 128]
    assert got["mx_even"] == [126, 128] and got["te_mxfp8"] == [126, 128]
    assert fp8lab.quantize(x, (1, 32), "e4m3", "mx").bits[1, 0] == 0x7E  # 496 saturates under FLOOR


def test_mx_rceil_and_te_mxfp8_differ_on_nan_and_inf():
    # torchao (torch.amax, cvt.rp without satfinite): NaN or Inf in a block -> scale 0xFF (NaN).
    # TE (fmaxf skips NaN; satfinite): NaN ignored, Inf -> 0xFE = 2^127, Inf elements -> 448.
    x = np.ones((2, 32), F)
    x[0, 3], x[1, 5] = np.nan, np.inf
    rc = fp8lab.quantize(x, (1, 32), "e4m3", "mx_rceil")
    te = fp8lab.quantize(x, (1, 32), "e4m3", "te_mxfp8")
    assert rc.scales[:, 0].tolist() == [255, 255]
    # fl32(1 * fl32(1/448)) rounds up to 2^-8 -> byte 119; elements 1 * 2^8 = 256 (0x78).
    assert te.scales[:, 0].tolist() == [119, 254]
    assert te.bits[0, 0] == 0x78 and te.bits[0, 3] == 0x7F and te.bits[1, 5] == 0x7E and te.bits[1, 0] == 0


def test_dequantize_is_element_times_scale_exactly():
    x = adversarial((128, 256), seed=5)
    for rule in fp8lab.scale_rules():
        spec = fp8lab.scale_rule(rule)
        tile = (1, 32) if spec["tile_elements"] == 32 else (1, 16) if spec["storage"] == "e4m3" else (1, 128)
        q = fp8lab.quantize(x, tile=tile, fmt="e4m3", rule=rule)
        elem = q.bits.view(ml_dtypes.float8_e4m3fn).astype(np.float64)
        s = np.repeat(np.asarray(q.scale_values, np.float64), tile[1], axis=1)
        with np.errstate(invalid="ignore"):
            want = elem * s * np.float64(q.global_scale)
        got = q.dequantize()
        assert got.dtype == np.float64 and got.shape == x.shape
        assert np.array_equal(got, want, equal_nan=True), rule


# ---- where two rules must differ, an input on which they do ----
def test_divide_and_reciprocal_multiply_differ_on_a_tie():
    # amax 3136 = 448 * 7 gives s = 7 exactly. 10.9375 / 7 = 1.5625 exactly, an E4M3 tie between 1.5
    # (0x3C) and 1.625 (0x3D) that rounds to even, 0x3C; fl32(1/7) = 0x1.24924ap-3 is above 1/7 by
    # 2^-26.2 relative, so 10.9375 * fl32(1/7) = 1.5625001 (fl32) and rounds up to 0x3D.
    x = np.zeros((1, 128), F)
    x[0, 0], x[0, 1] = 3136.0, 10.9375
    ds = fp8lab.quantize(x, (1, 128), "e4m3", "deepseek")
    dg = fp8lab.quantize(x, (1, 128), "e4m3", "deepgemm")
    assert ds.scales[0, 0] == dg.scales[0, 0] == F(7.0)
    assert ds.bits[0, 1] == 0x3C and dg.bits[0, 1] == 0x3D
    assert ds.bits[0, 0] == dg.bits[0, 0] == 0x7E


def test_floor_on_amax_and_floor_on_scale_differ():
    # amax 1e-3: DeepSeek floors amax (no effect), s = 1e-3/448 -> 2^-18; FlashMLA floors the
    # scale at 1e-4 -> 2^ceil(log2 1e-4) = 2^-13.
    x = np.zeros((1, 128), F)
    x[0, 0] = 1e-3
    ds = fp8lab.quantize(x, (1, 128), "e4m3", "deepseek_ue8m0")
    fm = fp8lab.quantize(x, (1, 128), "e4m3", "flashmla_cache")
    assert ds.scales[0, 0] == F(2.0 ** -18) and fm.scales[0, 0] == F(2.0 ** -13)
    # 1e-3 * 2^18 = 262.1 -> 256 (0x78); 1e-3 * 2^13 = 8.19 -> 8 (0x50).
    assert ds.bits[0, 0] == 0x78 and fm.bits[0, 0] == 0x50


def test_te_pow2_rounds_the_multiplier_down():
    # 448 / 1344 = fl32(1/3); clearing the mantissa gives 0.25, stored inverse 4. 1344 * 0.25 = 336
    # is an E4M3 tie between 320 and 352 -> 320 (0x7A); te_fp32 keeps 1/3: 1344 * fl32(1/3) -> 448.
    x = np.zeros((1, 128), F)
    x[0, 0] = 1344.0
    te = fp8lab.quantize(x, (1, 128), "e4m3", "te")
    t32 = fp8lab.quantize(x, (1, 128), "e4m3", "te_fp32")
    assert te.scales[0, 0] == F(4.0) and te.bits[0, 0] == 0x7A
    assert t32.scales[0, 0] == F(1.0) / F(F(448.0) / F(1344.0)) and t32.bits[0, 0] == 0x7E


def test_nan_policies_differ():
    # DeepSeek (Triton max) and TE (fmaxf) skip NaN in amax; DeepGEMM (torch.amax) propagates it and
    # its exponent-bit ceiling turns the NaN scale into 2^127 (byte 254).
    x = np.ones((1, 128), F)
    x[0, 3] = np.nan
    ds = fp8lab.quantize(x, (1, 128), "e4m3", "deepseek")
    dg8 = fp8lab.quantize(x, (1, 128), "e4m3", "deepgemm_ue8m0")
    assert ds.scales[0, 0] == F(1.0) / F(448.0) or ds.scales[0, 0] == F(F(1.0) / F(448.0))
    assert ds.bits[0, 0] == 0x7E and ds.bits[0, 3] == 0x7F
    assert dg8.scales[0, 0] == 254 and dg8.scale_values[0, 0] == F(2.0 ** 127)


def test_pytorch_cast_is_not_saturating_but_vllm_clamps():
    # Only reachable through inputs that overflow the scaled value: an Inf element. DeepGEMM:
    # amax Inf -> sf Inf -> 1/sf = 0 -> Inf * 0 = NaN and finite * 0 = 0. vLLM clamps x / s.
    x = np.ones((1, 128), F)
    x[0, 0] = np.inf
    vl = fp8lab.quantize(x, (1, 128), "e4m3", "vllm")
    assert np.isinf(vl.scale_values[0, 0])
    assert vl.bits[0, 0] == 0x7F and vl.bits[0, 1] == 0x00  # inf/inf = NaN stays NaN through clamp


# ---- the API ----
def test_api_surface():
    names = fp8lab.scale_rules()
    for n in ("deepseek", "deepseek_ue8m0", "deepgemm", "deepgemm_ue8m0", "te", "te_fp32", "flashmla_cache",
              "vllm", "mx"):
        assert n in names
    x = adversarial((40, 300), seed=1)
    q = fp8lab.quantize(x)
    assert q.shape == (40, 300) and q.fmt == "e4m3" and q.tile == (1, 128) and q.rule == "deepseek"
    assert q.bits.dtype == np.uint8 and q.bits.shape == (40, 300)
    assert q.scales.dtype == np.float32 and q.scales.shape == (40, 3)
    q8 = fp8lab.quantize(x, rule="deepgemm_ue8m0")
    assert q8.scales.dtype == np.uint8
    qb = fp8lab.quantize(x, fmt="bf16", rule="deepseek")
    assert qb.bits.dtype == np.uint16
    spec = fp8lab.scale_rule("deepgemm")
    assert spec["apply"] == "reciprocal_multiply" and spec["epsilon_hex"] == float(F(1e-4)).hex().replace("0x1.a36e2e0000000p-14", "0x1.a36e2ep-14")
    # A custom spec reproduces the named rule it copies, and a QTensor remembers it for retile.
    custom = dict(spec, name="my_kernel")
    qc = fp8lab.quantize(x, rule=custom)
    assert qc.rule == "my_kernel" and np.array_equal(qc.bits, fp8lab.quantize(x, rule="deepgemm").bits)
    assert fp8lab.retile(qc, (128, 1)).rule == "my_kernel"


def test_from_parts_round_trip():
    x = adversarial((50, 200), seed=2)
    for rule, tile in (("deepseek", (1, 128)), ("mx", (1, 32)), ("te", (128, 128))):
        q = fp8lab.quantize(x, tile=tile, rule=rule)
        w = fp8lab.from_parts(q.bits, q.scales, "e4m3", tile, rule, allow_nonfinite=True)  # x holds NaN/Inf
        assert np.array_equal(w.dequantize(), q.dequantize(), equal_nan=True)


def test_retile_pow2_is_exact_for_in_range_values():
    rng = np.random.default_rng(9)
    x = (rng.standard_normal((256, 256)) * 0.5 + 0.5).astype(F)  # one binade-ish of dynamic range
    q = fp8lab.quantize(x, (1, 128), "e4m3", "deepseek_ue8m0")
    r = fp8lab.retile(q, (128, 1))
    assert r.tile == (128, 1) and r.scales.shape == (2, 256)
    assert np.array_equal(r.dequantize(), q.dequantize())


@pytest.mark.parametrize(
    "call, exc, msg",
    [
        (lambda: fp8lab.quantize(np.ones((4, 4), F), rule="nope"), ValueError, "unknown scale rule 'nope'"),
        (lambda: fp8lab.quantize(np.ones((4, 4), F), fmt="int8"), ValueError, "int8"),
        (lambda: fp8lab.quantize(np.ones((4, 4), np.int32)), TypeError, "x: expected dtype float32"),
        (lambda: fp8lab.quantize(np.ones(4, F)), ValueError, "x: expected a 2-D array"),
        (lambda: fp8lab.quantize([[1.0]]), TypeError, "x: expected a 2-D numpy array"),
        (lambda: fp8lab.quantize(np.ones((4, 4), F), tile=(1,)), TypeError, "tile: expected a pair"),
        (lambda: fp8lab.quantize(np.ones((4, 4), F), tile=(-1, 2)), ValueError, "tile: sizes must be >= 0"),
        (lambda: fp8lab.quantize(np.ones((4, 64), F), tile=(1, 64), rule="mx"), ValueError,
         "needs tiles of exactly 32 elements"),
        (lambda: fp8lab.quantize(np.full((1, 2), 0.1), tile=(1, 2)), ValueError, "not a float32 value"),
        (lambda: fp8lab.quantize(np.ones((4, 4), F), rule=dict(fp8lab.scale_rule("te"), apply="divide")),
         ValueError, "does not fit form"),
        (lambda: fp8lab.quantize(np.ones((4, 4), F), rule={"pow2": "sometimes"}), ValueError, "ScaleRule.pow2: unknown value 'sometimes'"),
        (lambda: fp8lab.quantize(np.ones((4, 4), F), rule=3), TypeError, "rule: expected"),
        (lambda: fp8lab.quantize(np.ones((4, 4), F), rule=dict(fp8lab.scale_rule("deepseek"), epsilon=1e-6)),
         ValueError, "disagree"),
        (lambda: fp8lab.retile("q", (1, 1)), TypeError, "q: expected a QTensor"),
        (lambda: fp8lab.from_parts(np.zeros((2, 2), np.uint16), np.ones((2, 1), F), "e4m3", (1, 2), "deepseek"),
         TypeError, "bits: format e4m3 is stored as uint8"),
        (lambda: fp8lab.from_parts(np.zeros((2, 2), np.uint8), np.ones((3, 1), F), "e4m3", (1, 2), "deepseek"),
         ValueError, "scales: expected 2 scales"),
        (lambda: fp8lab.from_parts(np.zeros((2, 2), np.uint8), np.ones((2, 1), F), "e4m3", (1, 2), "mx"),
         TypeError, "expected dtype uint8"),
    ],
)
def test_bad_input_is_a_clear_error(call, exc, msg):
    with pytest.raises(exc, match=msg):
        call()


def test_float64_input_holding_float32_values_is_accepted():
    x = adversarial((8, 128), seed=4)
    q32 = fp8lab.quantize(x)
    q64 = fp8lab.quantize(x.astype(np.float64))
    assert np.array_equal(q32.bits, q64.bits)


@pytest.mark.parametrize("fmt", ["bf16", "fp16", "e5m6", "e3m2fn", "e2m3fn", "e3m2_ieee"])
def test_other_element_formats_follow_the_same_formula(fmt):
    # DeepSeek's formula with fmax = the format's max finite; the cast is formats' encode (tested
    # against ml_dtypes in the formats area), and ml_dtypes itself where it has the format.
    x = adversarial((40, 256), seed=21)
    info = fp8lab.format_info(fmt)
    fmax = F(info["max_finite"])
    v = blocks(x, (1, 128))
    s = (np.fmax(amax_ignore(v), F(1e-4)) / fmax).astype(F)
    with np.errstate(all="ignore"):
        scaled = unblock((v / s).astype(F), x.shape)
    want = fp8lab.encode(np.clip(scaled, -fmax, fmax), fmt)
    if fmt == "bf16":
        want_ml = np.clip(scaled, -fmax, fmax).astype(ml_dtypes.bfloat16).view(np.uint16)
        nan = np.isnan(scaled)
        assert np.array_equal(want[~nan], want_ml[~nan])
    q = fp8lab.quantize(x, (1, 128), fmt, "deepseek")
    assert q.bits.dtype == want.dtype
    assert np.array_equal(q.bits, want)
    assert np.array_equal(q.scales, s[:, 0, :, 0])


def test_amax_over_fmax_and_amax_times_inverse_differ():
    # fl32(1/448) = 0x1.24924ap-9 is above 1/448, so amax * fl32(1/448) can land one float32 ULP
    # above amax / 448. Search the first such amax among a fixed range and check both rules.
    inv = F(1.0) / F(448.0)
    cand = np.arange(1, 4096, dtype=F) * F(0.125)
    hit = cand[(cand * inv).astype(F) != (cand / F(448.0)).astype(F)][0]
    x = np.zeros((1, 128), F)
    x[0, 0] = hit
    a = fp8lab.quantize(x, (1, 128), "e4m3", "deepseek")
    b = fp8lab.quantize(x, (1, 128), "e4m3", "deepseek_v32")
    assert a.scales[0, 0] == hit / F(448.0) and b.scales[0, 0] == hit * inv and a.scales[0, 0] != b.scales[0, 0]


def test_custom_epsilon_changes_the_floor():
    spec = dict(fp8lab.scale_rule("deepseek"), name="eps6", epsilon=1e-6)
    del spec["epsilon_hex"]
    x = np.zeros((1, 128), F)
    q = fp8lab.quantize(x, rule=spec)
    assert q.scales[0, 0] == F(1e-6) / F(448.0)
    assert fp8lab.scale_rule(spec)["epsilon_hex"] == "0x1.0c6f7ap-20"


# ---- DeepGEMM's FP4 reference quantiser (ties toward zero) ----
FP4_MIDPOINTS = (0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0)


def ref_deepgemm_fp4(x, tile, ue8m0=False):
    """DeepGEMM utils/math.py per_token_cast_to_fp4: x_amax = |x|.amax().clamp_min(1e-4); sf = amax / 6.0;
    ceil_to_ue8m0 when use_ue8m0; x_scaled = x * (1.0 / sf); _quantize_to_fp4_e2m1: code = sum over
    the midpoints b of (|x| > b), sign bit = (x < 0) & (code != 0)."""
    v = blocks(x, tile)
    a = np.maximum(amax_propagate(v), F(1e-4))
    sf = (a / F(6.0)).astype(F)
    byte = None
    if ue8m0:
        bits = np.abs(sf).view(np.int32)
        e = np.clip(((bits >> 23) & 0xFF) + ((bits & 0x7FFFFF) != 0).astype(np.int32), 1, 254)
        sf = (e << 23).astype(np.int32).view(F)
        byte = e.astype(np.uint8)[:, 0, :, 0]
    with np.errstate(all="ignore"):
        xs = (v * (F(1.0) / sf)).astype(F)
    ax = np.abs(xs)
    code = sum((ax > F(b)).astype(np.uint8) for b in FP4_MIDPOINTS).astype(np.uint8)
    code = code | (((xs < 0) & (code != 0)).astype(np.uint8) << 3)
    return unblock(code, x.shape), (byte if ue8m0 else sf[:, 0, :, 0])


@pytest.mark.parametrize("rule", ["deepgemm_fp4", "deepgemm_fp4_ue8m0"])
@pytest.mark.parametrize("tile", [(1, 128), (1, 32), (128, 128)])
def test_deepgemm_fp4_matches_its_source(rule, tile):
    for si, shape in enumerate([(303, 300), (64, 256)]):
        x = adversarial(shape, seed=41 + si)
        # NaN (and Inf, whose scale Inf makes x * (1 / sf) = Inf * 0 NaN): the table writes code 0 where
        # fp8lab's satfinite cast writes +6; finite inputs only.
        x = np.where(np.isfinite(x), x, F(0)).astype(F)
        q = fp8lab.quantize(x, tile=tile, fmt="e2m1", rule=rule)
        bits, scales = ref_deepgemm_fp4(x, tile, ue8m0=rule.endswith("ue8m0"))
        same_bits(q.bits, bits, "e2m1", f"{rule} {tile} {shape}")
        same_scales(np.asarray(q.scales), np.asarray(scales), f"{rule} {tile} {shape}")


def test_deepgemm_fp4_ties_go_toward_zero_and_zero_is_unsigned():
    # amax 6 gives sf = 1: the midpoints themselves are ties. Nearest-even would send 0.75 -> 1,
    # 1.25 -> 1, 2.5 -> 2, 5 -> 4 and -0.1 -> -0; the table sends them to 0.5, 1, 2, 4 and +0.
    x = np.zeros((1, 32), F)
    x[0, :8] = [6.0, 0.75, 1.25, 2.5, 5.0, -0.1, -1.75, 0.25]
    q = fp8lab.quantize(x, (1, 32), "e2m1", "deepgemm_fp4")
    assert q.bits[0, :8].tolist() == [0x7, 0x1, 0x2, 0x4, 0x6, 0x0, 0xB, 0x0]
    rn = fp8lab.quantize(x, (1, 32), "e2m1", dict(fp8lab.scale_rule("deepgemm_fp4"), cast_rounding="nearest_even"))
    assert rn.bits[0, :8].tolist() == [0x7, 0x2, 0x2, 0x4, 0x6, 0x8, 0xC, 0x0]
