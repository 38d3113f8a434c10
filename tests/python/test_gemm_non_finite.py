"""The GEMM's NaN/Inf policy (emulator/gemm/non_finite.hpp) against MMA-Sim, an independent model of
the tensor cores (mmasim.nv_ptx WGMMA, arXiv 2511.10909), on FP8 operands holding NaN (E4M3, E5M2)
and +/-Inf (E5M2): the no-promotion chain (C = the previous D through every wgmma) must agree bit for
bit where the result is a number and in NaN-ness where it is not; MMA-Sim writes its NaN as the
canonical 0x7FFFFFFF. Also: every accumulation mode puts NaN where MMA-Sim does."""
from __future__ import annotations

import numpy as np
import pytest

import fp8lab

torch = pytest.importorskip("torch")
nv = pytest.importorskip("mmasim.nv_ptx")


def operands(fmt: str, seed: int, m: int = 64, n: int = 16, k: int = 128):
    rng = np.random.default_rng(seed)
    a = (rng.integers(-8, 9, (m, k)) * 0.25).astype(np.float32)
    b = (rng.integers(-8, 9, (n, k)) * 0.25).astype(np.float32)
    specials = [np.nan] if fmt == "e4m3" else [np.nan, np.inf, -np.inf]
    for i in rng.choice(m, 6, replace=False):
        a[i, rng.integers(0, k)] = rng.choice(specials)
    for j in rng.choice(n, 4, replace=False):
        b[j, rng.integers(0, k)] = rng.choice(specials)
    if fmt == "e5m2":
        # Inf x 0 and +Inf against -Inf, deliberately: row 0 x column 0.
        a[0, 5], b[0, 5] = np.inf, 0.0
        a[1, 7], b[1, 7], a[1, 90], b[1, 90] = np.inf, 1.0, np.inf, -1.0
    return a, b


def mmasim_chain(a, b, fmt):
    m, k = a.shape
    n = b.shape[0]
    dtype = torch.float8_e4m3fn if fmt == "e4m3" else torch.float8_e5m2
    op = nv.WGMMA("Hopper", f"m64n{n}k32.f32.{fmt}.{fmt}")
    ta, tb = torch.from_numpy(a).to(dtype), torch.from_numpy(b).to(dtype)
    d = torch.zeros((m, n), dtype=torch.float32)
    for kc in range(0, k, 32):
        d = op(ta[:, kc:kc + 32], tb[:, kc:kc + 32].T.contiguous(), d)
    return d.numpy()


@pytest.mark.parametrize("fmt", ["e4m3", "e5m2"])
def test_tensorcore_chain_with_nan_and_inf_matches_mmasim(fmt):
    a, b = operands(fmt, 3 if fmt == "e4m3" else 4)
    instruction = "hopper_fp8" if fmt == "e4m3" else "hopper_fp8_e5m2"
    want = mmasim_chain(a, b, fmt)
    nan = np.isnan(want)
    assert 0 < nan.sum() < nan.size
    assert (want.view(np.uint32)[nan] == 0x7FFFFFFF).all()  # the canonical NaN
    if fmt == "e5m2":
        assert np.isinf(want).any() and np.isnan(want[0, 0]) and np.isnan(want[1, 1])
    # (the vector kernel runs here; test_gemm_non_finite.cpp proves the generic path identical)
    got = fp8lab.gemm(a, b, accumulate="tensorcore", instruction=instruction, out="fp32")
    np.testing.assert_array_equal(np.isnan(got), nan)
    np.testing.assert_array_equal(got[~nan].astype(np.float32).view(np.uint32), want[~nan].view(np.uint32))


@pytest.mark.parametrize("accumulate", ["exact", "fp32", "fp32_pairwise", "tensorcore", "promoted"])
def test_every_mode_puts_nan_and_inf_where_the_tensor_core_does(accumulate):
    a, b = operands("e5m2", 5, k=256)
    want = mmasim_chain(a, b, "e5m2")
    got = fp8lab.gemm(a, b, accumulate=accumulate, instruction="hopper_fp8_e5m2", out="bf16")
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want))
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
