"""Block-scaled quantisation: every vendor's scale rule, bit-exact.

``quantize(x, tile=(1, 128), fmt="e4m3", rule="deepseek")`` cuts a 2-D float32 array into tiles
(``(0, 0)`` per-tensor, ``(1, 0)`` per-row, ``(1, 128)``, ``(128, 1)``, ``(128, 128)``, MX
``(1, 32)``, any ``(r, c)``; 0 means the whole dimension), forms one scale per tile from the tile's
amax with the named rule, and encodes ``x`` scaled into ``fmt``. Ragged edge tiles take their amax over
their valid elements (zero padding). ``scale_rules()`` lists the named rules and ``scale_rule(name)``
shows one as an explicit spec (a dict): pass such a dict (edited) as ``rule`` to describe a new
kernel's convention without code.

The returned ``QTensor`` has ``.bits`` (uint8/uint16 element patterns: a read-only view of the
QTensor's own buffer, which holds one byte per element for formats up to 8 bits; ``np.array(q.bits)``
for a copy to change), ``.scales`` (float32, or the UE8M0 bytes as uint8 for rules that store
UE8M0; ``.scale_values`` is always float32), ``.fmt``, ``.tile``, ``.rule``, ``.rule_spec``,
``.shape`` and ``.dequantize()`` (exact, float64).
``QTensor.from_parts(bits, scales, fmt, tile, rule)`` wraps a GPU kernel's output.

Every rule computes in float32 like its source (amax, ``amax / fmax``, the floors as float32
constants: ``1e-4`` is ``0x1.a36e2ep-14``), then casts with nearest-even:

===============  =========================  ==================  ==========  ===============  ==========
rule             amax (NaN elements)        floor               scale       pow2             apply, cast
===============  =========================  ==================  ==========  ===============  ==========
deepseek         skipped (Triton max)       amax >= 1e-4        amax/fmax   -                x / s, satfinite
deepseek_ue8m0   skipped                    amax >= 1e-4        amax/fmax   2^ceil(log2 s)   x / s, satfinite
deepseek_v32     skipped                    amax >= 1e-4        amax*fl32(1/fmax) -          clamp(x / s), cast
deepseek_v32_ue8m0 (as deepseek_v32, then 2^ceil(log2 s) from the exponent bits; float32 scales)
deepgemm         propagate (torch.amax)     amax >= 1e-4        amax/fmax   -                x * fl32(1/s), torch cast
deepgemm_ue8m0   propagate                  amax >= 1e-4        amax/fmax   exponent bits    x * fl32(1/s), torch cast;
                                                                            +1, clamp 1..254 UE8M0 bytes
te               skipped (fmaxf)            (eps 0)             fmax/amax   mantissa cleared x * m, satfinite; stores 1/m
te_fp32          skipped                    (eps 0)             fmax/amax   -                x * m, satfinite; stores 1/m
flashmla_cache   propagate (torch.max)      s >= 1e-4           amax/fmax   2^ceil(log2 s)   x / s, torch cast
flashmla_cache_ue8m0 (as flashmla_cache, the scale stored as a UE8M0 byte: FlashMLA MODEL1_FP8Sparse)
vllm             propagate                  amax >= 1e-10       amax/fmax   -                clamp(x / s), torch cast
mx               propagate                  -                   2^(floor(log2 amax) - emax)  x / X, saturate; UE8M0
===============  =========================  ==================  ==========  ===============  ==========

The torch cast (``.to(torch.float8_e4m3fn)``) is non-saturating: from 464 up it gives NaN.

Bad input, as each source behaves (tested in tests/python/test_quant_rules.py and test_quant.cpp):

- NaN in a tile: deepseek/te skip it in amax and the element stays NaN (0x7F); deepgemm, flashmla_cache
  and vllm get a NaN scale and every element of the tile NaN, except deepgemm_ue8m0, whose exponent-bit
  ceiling turns the NaN scale into 2^127 (byte 254; elements x * 2^-127, NaN stays NaN); mx gives a
  NaN scale (0xFF).
- Inf in a tile: amax/fmax rules get s = Inf, so finite elements become 0 and the Inf NaN (deepgemm:
  x * 0); te takes multiplier 1 (Inf saturates to +-max); deepgemm_ue8m0 clamps to 2^127; mx: NaN
  scale. A UE8M0 rule whose scale is Inf or 0 stores 0xFF (NaN): the byte is what a kernel reads.
- All-zero tiles: the floor decides (1e-4 / 448 for deepseek/deepgemm; 2^-13 for flashmla_cache;
  vllm: 1e-10 / 448; te: multiplier 1; mx: 2^-127, byte 0). Tiles of float32 subnormals get the
  all-zero scale and quantise to zeros, except te (the multiplier overflows to FLT_MAX: te_fp32
  stores 1/FLT_MAX, te masks it to 2^127 and stores 2^-127) and mx (2^-127), which keep them.
- One huge outlier (1e30): the scale follows it and the rest of the tile underflows to 0 or FP8
  subnormals, in every rule.

Modelling notes: ``log2``/``exp2`` in deepseek_ue8m0 and flashmla_cache are taken exactly (the
ceiling is read off the float32's bits); a float32 ``log2`` on the GPU can round a scale lying a few
ULPs above 2^k down to 2^k. Triton's default fp32 ``/`` may lower to an approximate division;
fp8lab models the IEEE division that the PyTorch references use. Record a hardware trace to settle
either for a given kernel.
"""
from __future__ import annotations

import numbers

import numpy as np

from . import _args, _core, _recipes

QTensor = _core.QTensor


def _tile(tile, name: str = "tile") -> tuple[int, int]:
    if isinstance(tile, (str, bytes)) or not hasattr(tile, "__len__") or len(tile) != 2:
        raise TypeError(f"{name}: expected a pair (rows, cols) of ints (0 = the whole dimension), got {tile!r}")
    out = []
    for v in tile:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{name}: expected ints, got {tile!r}")
        if v < 0:
            raise ValueError(f"{name}: sizes must be >= 0 (0 = the whole dimension), got {tile!r}")
        if v > _args.TILE_MAX:
            raise ValueError(f"{name}: sizes must be <= 2^40, got {tile!r}")
        out.append(int(v))
    return out[0], out[1]


def _rule(rule):
    if isinstance(rule, str):
        return rule
    if isinstance(rule, dict):
        return dict(rule)
    raise TypeError(f"rule: expected a rule name (see scale_rules()) or a spec dict, got {type(rule).__name__}")


def quantize(x, tile=None, fmt: str | None = None, rule=None, *, recipe=None, operand: str = "a", rbits=None,
             width: int | None = None, out=None):
    """Quantise the 2-D float32 array ``x`` (float64 accepted when every value is a float32 value).

    ``tile``, ``fmt`` and ``rule`` not passed come from operand ``operand`` ("a": activations, "b":
    weights) of ``recipe`` (a name from ``fp8lab.recipes()`` or an edited row; default
    ``deepseek_v3_fp8_linear``, whose activations are 1x128 E4M3 under the "deepseek" rule).

    ``rbits`` (uint32, x's shape, each word below 2^width): stochastic rounding of the scaled
    elements with these random bits in place of the rule's cast, as ``fp8lab.stochastic_round``
    rounds (cvt.rs.satfinite; ``width`` defaults to its RBITS_WIDTH[fmt]); the scales are the rule's.
    NVIDIA's NVFP4 recipe rounds gradients so. Needs float32 ``x``.

    out: a pair ``(bits, scales)`` of existing arrays to fill and return instead of a QTensor (no
    allocation; one fused pass per tile): ``bits`` of x's shape in the format's storage dtype (or
    its ml_dtypes type), ``scales`` of the tile grid's shape in float32 (uint8 UE8M0 bytes for
    UE8M0 rules), both C-contiguous, writeable and apart from x and each other. The same values
    as the QTensor's ``bits`` and ``scales``. Single-level rules and float32 ``x`` only.

    Raises TypeError for a wrong dtype/type and ValueError for a wrong shape, an unknown format or
    rule, or a tile the rule cannot take (MX needs 32-element tiles)."""
    if tile is None or fmt is None or rule is None or recipe is not None:
        op = _recipes.operand(_recipes.DEFAULT if recipe is None else recipe, operand)
        tile = op["tile"] if tile is None else tile
        fmt = op["format"] if fmt is None else fmt
        rule = op["rule"] if rule is None else rule
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x: expected a 2-D numpy array of float32, got {type(x).__name__}")
    x = _args.native_order(x)
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"x: expected dtype float32 (or float64 holding float32 values), got {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"x: expected a 2-D array, got shape {x.shape}")
    if not isinstance(fmt, str):
        raise TypeError(f"fmt: expected a format name, got {type(fmt).__name__}")
    if rbits is None:
        if width is not None:
            raise ValueError("width: given without rbits (it is the stochastic rounding's random bits per value)")
        if out is not None:
            return _quantize_into(x, _tile(tile), fmt, _rule(rule), out)
        return _core.quantize(np.ascontiguousarray(x), _tile(tile), fmt, _rule(rule))
    if out is not None:
        raise ValueError("out: not taken with rbits (stochastic rounding returns a QTensor)")
    from .microscale import sr_width

    return _core.quantize(np.ascontiguousarray(x), _tile(tile), fmt, _rule(rule), rbits, sr_width(fmt, width))


def _quantize_into(x, tile, fmt, rule, out):
    from .formats import _bits_dtypes

    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise TypeError(f"out: expected a pair (bits, scales) of numpy arrays, got {type(out).__name__}")
    if x.dtype != np.float32:
        raise TypeError("x: out= takes float32 input (cast float64 holding float32 values with x.astype(np.float32))")
    spec = _core.scale_rule(rule)
    if spec["form"] == "nvfp4_two_level" or spec["four_over_six"]:
        raise ValueError(f"out: rule {spec['name']!r} needs the tensor-level or candidate scales of a QTensor; "
                         "call quantize() without out= for it")
    rows, cols = x.shape
    tr, tc = tile[0] or rows, tile[1] or cols
    grid = (0 if rows == 0 else -(-rows // tr), 0 if cols == 0 else -(-cols // tc))  # QTensor's tile grid
    bits, scales = out
    dtypes = _bits_dtypes(fmt)
    _args.out_array("out[0] (bits)", bits, x.shape, dtypes, [("x", x)])
    scale_dtype = np.uint8 if spec["storage"] == "ue8m0" else np.float32
    _args.out_array("out[1] (scales)", scales, grid, (np.dtype(scale_dtype),), [("x", x), ("out[0] (bits)", bits)])
    _core.quantize_into(np.ascontiguousarray(x), tile, fmt, rule, bits.view(dtypes[0]), scales)
    return bits, scales


def retile(q: QTensor, tile) -> QTensor:
    """Re-quantise ``q`` into ``tile`` with its format and rule (dequantise to float32, quantise), as
    DeepSeek-V3 does for the backward pass (1x128 -> 128x1). Exact when the scales are powers of two
    and no element leaves the format's normal range."""
    if not isinstance(q, QTensor):
        raise TypeError(f"q: expected a QTensor, got {type(q).__name__}")
    return _core.retile(q, _tile(tile))


def scale_rules() -> list[str]:
    """Names of the built-in scale rules."""
    return list(_core.scale_rules())


def scale_rule(rule) -> dict:
    """The explicit spec of a rule (name or dict) as a dict: amax NaN policy, floor and where it
    applies, amax/fmax vs fmax/amax, power-of-two method, how it is applied, the cast's overflow,
    scale storage, and its source."""
    return dict(_core.scale_rule(_rule(rule)))


def from_parts(bits, scales, fmt: str, tile, rule, *, allow_nonfinite: bool = False, global_scale: float = 1.0,
               global_amax: float = 0.0) -> QTensor:
    """Wrap existing element bits (2-D, the format's storage dtype) and per-tile scales (float32, or
    uint8 UE8M0 bytes for UE8M0 rules) as a QTensor, e.g. a GPU kernel's output.

    Every scale must be finite and > 0 (ValueError naming the first bad tile); with
    ``allow_nonfinite=True`` NaN and +Inf scales (what the rules make of NaN/Inf input) pass.
    ``global_scale`` is a two-level (NVFP4) tensor's S_dec (``q.global_scale``) and ``global_amax`` the
    tensor amax it came from (``q.global_amax``), which ``fp8lab.gemm`` needs: the NVFP4 GEMM's
    epilogue alpha is formed from the two operands' amaxes (TransformerEngine recipe/nvfp4.cu)."""
    if not isinstance(allow_nonfinite, bool):
        raise TypeError(f"allow_nonfinite: expected True or False, got {allow_nonfinite!r}")
    if isinstance(global_scale, bool) or not isinstance(global_scale, (int, float)):
        raise TypeError(f"global_scale: expected a float, got {type(global_scale).__name__}")
    if isinstance(global_amax, bool) or not isinstance(global_amax, (int, float)):
        raise TypeError(f"global_amax: expected a float, got {type(global_amax).__name__}")
    return QTensor.from_parts(bits, scales, fmt, _tile(tile), _rule(rule), allow_nonfinite=allow_nonfinite,
                              global_scale=float(global_scale), global_amax=float(global_amax))


__all__ = ["QTensor", "from_parts", "quantize", "retile", "scale_rule", "scale_rules"]
