"""fp8lab.check_scales and verify's scale-contract stage (issue #14 item 13): each scale mistake real
kernels made is built here and must be named, with its first offending tile."""
from __future__ import annotations

import numpy as np
import pytest

import fp8lab

RULE = "deepgemm_ue8m0"  # DeepGEMM's UE8M0 recipe: power-of-two scales stored as UE8M0 bytes
TILE = (1, 128)


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((6, 600)) * np.ldexp(1.0, rng.integers(-6, 7, (6, 1)))).astype(np.float32)
    q = fp8lab.quantize(x, tile=TILE, fmt="e4m3", rule=RULE)
    return x, np.asarray(q.bits), np.asarray(q.scales), np.asarray(q.scale_values)


def names(findings):
    return {f.name: f.tile for f in findings}


def pack_deepgemm(ue8m0: np.ndarray) -> np.ndarray:
    """DeepGEMM's get_mn_major_tma_aligned_packed_ue8m0_tensor (its torch path), in numpy: bytes into
    torch.zeros((align(mn, 4), align(k, 4))), viewed as int32 (little-endian), stored MN-major."""
    mn, k = ue8m0.shape
    padded = np.zeros((-(-mn // 4) * 4, -(-k // 4) * 4), np.uint8)
    padded[:mn, :k] = ue8m0
    words = padded.view("<i4")  # (aligned_mn, aligned_k / 4)
    return np.ascontiguousarray(words.T)  # MN-major: (aligned_k / 4, aligned_mn) in memory order


def test_a_correct_quantisation_has_no_findings(case):
    x, bits, scales, _ = case
    assert fp8lab.check_scales(x, bits, scales, rule=RULE, tile=TILE) == []
    assert fp8lab.check_scales(x, bits, pack_deepgemm(scales), rule=RULE, tile=TILE, layout="deepgemm_ue8m0") == []


def test_not_power_of_two(case):
    x, *_ = case
    # The plain DeepSeek recipe (amax / 448) handed over as if it were the UE8M0 recipe's multipliers.
    plain = fp8lab.quantize(x, tile=TILE, fmt="e4m3", rule="deepseek")
    values = np.asarray(plain.scale_values).copy()
    values[:2] = np.ldexp(1.0, np.round(np.log2(values[:2])).astype(int)).astype(np.float32)  # the first rows happen to be fine
    f = names(fp8lab.check_scales(x, np.asarray(plain.bits), values, rule="deepseek_ue8m0", tile=TILE))
    assert f["not_power_of_two"] == (2, 0)


def test_fp32_scales_read_as_ue8m0_bytes(case):
    x, bits, scales, values = case
    f = names(fp8lab.check_scales(x, bits, np.ascontiguousarray(values).view(np.uint8), rule=RULE, tile=TILE))
    assert "fp32_read_as_ue8m0" in f
    ff = scales.copy()
    ff[3, 2] = 0xFF  # NaN in E8M0; 2^128 to a reader that forgot
    f = names(fp8lab.check_scales(x, bits, ff, rule=RULE, tile=TILE))
    assert f["fp32_read_as_ue8m0"] == (3, 2)


def test_scales_rounded_without_requantising_the_data(case):
    x, _, scales, _ = case
    unrounded_bits = np.asarray(fp8lab.quantize(x, tile=TILE, fmt="e4m3", rule="deepgemm").bits)
    f = names(fp8lab.check_scales(x, unrounded_bits, scales, rule=RULE, tile=TILE))
    assert f == {"rounded_without_requantising": (0, 0)}


def test_garbage_in_padding(case):
    x, bits, scales, _ = case
    alloc = np.zeros((8, 8), np.uint8)  # rows and columns allocated for alignment
    alloc[:6, :5] = scales
    alloc[6, 1] = 0x7A  # never written: whatever was in the memory
    f = names(fp8lab.check_scales(x, bits, alloc, rule=RULE, tile=TILE))
    assert f == {"padding_garbage": (6, 1)}
    words = pack_deepgemm(scales)
    words[0, 7] = 0x3F  # padded row 7 (mn = 6 aligned to 8)
    f = names(fp8lab.check_scales(x, bits, words, rule=RULE, tile=TILE, layout="deepgemm_ue8m0"))
    assert f == {"padding_garbage": (7, 0)}


def test_transposed_and_unpacked_layouts(case):
    x, bits, scales, _ = case
    assert names(fp8lab.check_scales(x, bits, np.ascontiguousarray(scales.T), rule=RULE, tile=TILE)) == {
        "transposed": (0, 0)}
    k_major = np.ascontiguousarray(pack_deepgemm(scales).T)
    assert "transposed" in names(fp8lab.check_scales(x, bits, k_major, rule=RULE, tile=TILE, layout="deepgemm_ue8m0"))
    for unpacked in (scales, scales.astype(np.float32)):
        assert "not_packed_ue8m0" in names(fp8lab.check_scales(x, bits, unpacked, rule=RULE, tile=TILE,
                                                               layout="deepgemm_ue8m0"))


def test_a_wrong_scale_value_names_its_tile(case):
    x, bits, scales, _ = case
    s = scales.copy()
    s[4, 3] += 1  # twice the scale: the data no longer match it either
    assert names(fp8lab.check_scales(x, bits, s, rule=RULE, tile=TILE))["scale_mismatch"] == (4, 3)


def test_verify_names_the_scale_mistake_before_comparing_elements(case):
    def kernel(x, spec):  # the data cast with amax / 448, the scale rounded up to UE8M0 afterwards
        bits = fp8lab.quantize(x, tile=tuple(spec["tile"]), fmt="e4m3", rule="deepgemm").bits
        return np.asarray(bits), np.asarray(fp8lab.quantize(x, tile=tuple(spec["tile"]), fmt="e4m3", rule=RULE).scales)

    r = fp8lab.verify(kernel, op="quantize", spec={"rule": RULE, "tile": [1, 128]}, cases=7, shrink=False)
    assert r.kind == "violation" and "scale contract: rounded_without_requantising at tile" in r.verdict.summary
    with pytest.raises(ValueError, match="layout"):
        fp8lab.check_scales(case[0], case[1], case[2], rule=RULE, layout="nope")
