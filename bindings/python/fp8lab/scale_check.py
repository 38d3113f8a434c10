"""``fp8lab.check_scales``: a kernel's scale tensors against a recipe's contract, before any arithmetic.

Each mistake real kernels made in the field is a named finding with its first offending tile (row,
column of the tile grid):

``transposed``                 the scale grid is laid out columns-first (K-major where MN-major is due,
                               or the grid's transpose);
``not_packed_ue8m0``           DeepGEMM's layout wants UE8M0 bytes packed 4 per int32 along K, MN-major
                               (``get_mn_major_tma_aligned_packed_ue8m0_tensor``), and got something else;
``fp32_read_as_ue8m0``         FP32 scale bytes handed over as UE8M0 bytes (4 bytes per scale), or a 0xFF
                               byte — NaN in OCP E8M0, which a reader that takes it for 2^128 gets wrong;
``padding_garbage``            rows/columns allocated for alignment but never written (DeepGEMM zeroes
                               them: its torch path copies into ``torch.zeros``);
``not_power_of_two``           the rule's scales are powers of two (UE8M0, MX) and this one is not;
``rounded_without_requantising`` the scale was rounded (to a power of two) after the data was quantised
                               with the unrounded one, so the data no longer match it;
``data_not_quantised_with_scale`` the data are not the recipe's cast of x / scale for any other reason;
``scale_mismatch``             a scale differs from the recipe's (fp8lab.quantize of the same x).

Layouts: ``"plain"`` — a row-major grid of the rule's storage (float32 multipliers, or uint8 UE8M0
bytes for rules that store them); ``"deepgemm_ue8m0"`` — int32 words of shape
(ceil(C / 4), align(R, 4)), byte j (little-endian) of word [w, r] the UE8M0 scale of tile (r, 4w + j).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from . import _core
from .formats import decode, encode, format_info

LAYOUTS = ("plain", "deepgemm_ue8m0")


@dataclasses.dataclass
class ScaleFinding:
    name: str
    tile: tuple[int, int] | None
    message: str

    def __str__(self) -> str:
        where = f" at tile {self.tile}" if self.tile is not None else ""
        return f"{self.name}{where}: {self.message}"


def _first(mask: np.ndarray) -> tuple[int, int] | None:
    idx = np.argwhere(mask)
    return (int(idx[0][0]), int(idx[0][1])) if idx.size else None


def _grid(shape, tile) -> tuple[int, int]:
    rows, cols = shape
    tr, tc = tile[0] or max(rows, 1), tile[1] or max(cols, 1)
    return -(-rows // tr) if rows else 0, -(-cols // tc) if cols else 0


def _ue8m0_values(b: np.ndarray) -> np.ndarray:
    return decode(np.ascontiguousarray(b, dtype=np.uint8), "ue8m0")


def _unpack_deepgemm(words: np.ndarray, r: int, c: int, out: list) -> np.ndarray | None:
    """UE8M0 bytes (r x c) from DeepGEMM's packed MN-major int32 words; findings appended to out."""
    aligned_r, packed_c = -(-r // 4) * 4, -(-c // 4)
    if words.dtype not in (np.int32, np.uint32):
        kind = "uint8 UE8M0 bytes" if words.dtype == np.uint8 else f"{words.dtype} values"
        out.append(ScaleFinding("not_packed_ue8m0", None, f"got {kind} of shape {words.shape}; DeepGEMM packs "
                                f"4 UE8M0 bytes per int32 along K: int32 words of shape ({packed_c}, {aligned_r})"))
        return None
    if words.shape == (aligned_r, packed_c) and words.shape != (packed_c, aligned_r):
        out.append(ScaleFinding("transposed", (0, 0), f"int32 words of shape {words.shape} are K-major; DeepGEMM's "
                                f"layout is MN-major: shape ({packed_c}, {aligned_r})"))
        words = words.T
    if words.shape != (packed_c, aligned_r):
        out.append(ScaleFinding("not_packed_ue8m0", None, f"int32 words of shape {words.shape}, expected "
                                f"({packed_c}, {aligned_r}) for a {r} x {c} scale grid"))
        return None
    by = np.ascontiguousarray(words.astype("<u4")).view(np.uint8).reshape(packed_c, aligned_r, 4)
    full = by.transpose(1, 0, 2).reshape(aligned_r, packed_c * 4)  # full[row, col]
    pad = np.zeros(full.shape, bool)
    pad[r:, :] = True
    pad[:, c:] = True
    garbage = pad & (full != 0)
    if garbage.any():
        t = _first(garbage)
        out.append(ScaleFinding("padding_garbage", t, f"padding byte at (row {t[0]}, scale column {t[1]}) is "
                                f"0x{int(full[t]):02x}; alignment padding must be zero (allocated and never written?)"))
    return full[:r, :c]


def check_scales(x, q, scales, rule: str = "deepseek", tile=(1, 128), fmt: str = "e4m3",
                 layout: str = "plain") -> list[ScaleFinding]:
    """Findings (empty when the contract holds) for a kernel's quantisation of ``x`` (float32, rows x
    cols) into element bits ``q`` and ``scales`` under the named scale ``rule``, ``tile`` and
    element format ``fmt``; ``layout`` says how the scales are laid out (see the module doc)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout: unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"x: expected a 2-D array, got shape {x.shape}")
    q = np.asarray(q)
    if q.shape != x.shape:
        raise ValueError(f"q: shape {q.shape} differs from x's {x.shape}")
    tile = (int(tile[0]), int(tile[1]))
    info = _core.scale_rule(rule)
    pow2 = info["pow2"] != "none" or info["form"].startswith("mx_shared_exponent")
    ref = _core.quantize(x, tile, fmt, rule)
    ref_values = np.asarray(ref.scale_values, dtype=np.float32)
    r, c = _grid(x.shape, tile)
    out: list[ScaleFinding] = []
    s = np.asarray(scales)

    # 1. Layout: decode the kernel's tensor to one scale value per tile.
    if layout == "deepgemm_ue8m0":
        b = _unpack_deepgemm(s, r, c, out)
        if b is None:
            return out
        values = _ue8m0_values(b)
        stored_bytes = b
    else:
        ue8m0 = info["storage"] == "ue8m0"
        if s.dtype == np.uint8 and s.ndim == 2 and s.shape == (r, 4 * c) and c:
            out.append(ScaleFinding("fp32_read_as_ue8m0", (0, 0), f"{s.shape} bytes for a {r} x {c} grid: "
                                    "the FP32 scales' bytes handed over as UE8M0 bytes"))
            return out
        if s.ndim == 2 and s.shape == (c, r) and (r, c) != (c, r):
            out.append(ScaleFinding("transposed", (0, 0), f"shape {s.shape} is the transpose of the {r} x {c} "
                                    "tile grid (scales laid out K-major)"))
            s = s.T
        if s.ndim != 2 or s.shape[0] < r or s.shape[1] < c:
            out.append(ScaleFinding("scale_mismatch", None, f"shape {s.shape}, expected the {r} x {c} tile grid"))
            return out
        if s.shape != (r, c):  # allocated with padding: it must hold zeros
            pad = np.ones(s.shape, bool)
            pad[:r, :c] = False
            garbage = pad & ~(s == 0)
            if garbage.any():
                t = _first(garbage)
                out.append(ScaleFinding("padding_garbage", t, f"padding entry {t} of a {s.shape} allocation is "
                                        f"{s[t]!r}; padding must be zero (allocated and never written?)"))
            s = s[:r, :c]
        if ue8m0 and s.dtype != np.uint8:
            out.append(ScaleFinding("not_packed_ue8m0", None, f"rule {rule!r} stores UE8M0 bytes (uint8); got {s.dtype}"))
            return out
        if s.dtype == np.uint8:
            values, stored_bytes = _ue8m0_values(s), s
        else:
            values, stored_bytes = s.astype(np.float32), None
    # 0xFF where the recipe has no NaN scale (OCP MX makes a block holding a NaN scale 0xFF).
    ff = (stored_bytes == 0xFF) & ~np.isnan(ref_values) if stored_bytes is not None else None
    if ff is not None and ff.any():
        t = _first(ff)
        out.append(ScaleFinding("fp32_read_as_ue8m0", t, "UE8M0 byte 0xFF is NaN in OCP E8M0 (not 2^128): a float32 "
                                "scale's exponent byte, or an overflowed scale"))

    # 2. Per tile: powers of two where the rule makes them, then the values themselves.
    v = values.astype(np.float64)
    finite = np.isfinite(v) & (v > 0)
    if pow2:
        m = np.frexp(np.where(finite, v, 1.0))[0]
        bad = finite & (m != 0.5)
        if bad.any():
            t = _first(bad)
            out.append(ScaleFinding("not_power_of_two", t, f"scale {v[t]!r} is not a power of two; rule {rule!r} "
                                    "makes every scale one"))
    # 3. The data must be the recipe's cast of x / scale: exactly fp8lab.quantize's bits where the
    # scale is the recipe's; a tile whose bits are x cast with the unrounded amax / fmax scale while
    # the stored scale is another (rounded) one is the rounded-without-requantising mistake.
    tr, tc = tile[0] or max(x.shape[0], 1), tile[1] or max(x.shape[1], 1)
    ref_bits = np.asarray(ref.bits)
    q_bits = q.view(ref_bits.dtype) if q.dtype != ref_bits.dtype and q.dtype.itemsize == ref_bits.dtype.itemsize else q
    same_scale = (values == ref_values) | (np.isnan(values) & np.isnan(ref_values))
    fmax = format_info(fmt)["max_finite"]
    rounded, wrong_data = None, None
    for tr_i, tc_i in np.argwhere(np.ones((r, c), bool)):
        rows, cols = slice(tr_i * tr, (tr_i + 1) * tr), slice(tc_i * tc, (tc_i + 1) * tc)
        q_block = q_bits[rows, cols]
        if same_scale[tr_i, tc_i] and np.array_equal(q_block, ref_bits[rows, cols]):
            continue
        block = x[rows, cols]
        amax = float(np.max(np.abs(block))) if block.size else 0.0
        unrounded = np.float32(max(amax, float(info["epsilon"])) / fmax)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            cast = encode((block / unrounded).astype(np.float32), fmt)
        t = (int(tr_i), int(tc_i))
        if np.array_equal(cast, q_block) and np.float32(values[t]) != unrounded:
            rounded = rounded or ScaleFinding("rounded_without_requantising", t, f"the data were cast with scale "
                                   f"{float(unrounded)!r} (amax / {fmax:g}) but the stored scale is "
                                   f"{float(values[t])!r}: rounded without re-quantising the data")
        elif wrong_data is None and same_scale[t]:
            wrong_data = ScaleFinding("data_not_quantised_with_scale", t, "the element bits are not rule "
                                      f"{rule!r}'s cast of x / {float(values[t])!r}")
    out += [f for f in (rounded, wrong_data) if f is not None]
    mismatch = ~((values == ref_values) | (np.isnan(values) & np.isnan(ref_values)))
    if mismatch.any():
        t = _first(mismatch)
        out.append(ScaleFinding("scale_mismatch", t, f"scale {float(values[t])!r}, rule {rule!r} gives "
                                f"{float(ref_values[t])!r}"))
    return out
