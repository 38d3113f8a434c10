"""Block-scaled FP8 GEMM emulation: ``D = C + A @ B.T`` as a tensor core and its promotion compute it.

``a`` is M x K and ``b`` is N x K (DeepGEMM's NT layout). Each is a ``QTensor`` (any tiling: its
element bits and dequantisation scales are used exactly) or a 2-D float32 array (float64 accepted
when every value is a float32 value). Results are float64 arrays whose values are exactly values
of the output format.

accumulate:
    ``exact``          the exact sum, rounded once to ``out``;
    ``fp32``           sequential FP32 sum of ``fl(fl(a*sa) * fl(b*sb))``; ``fp32_pairwise`` the same by a
                       balanced tree;
    ``tensorcore``     the whole K chained through the tensor-core model (no promotion; scales must be
                       per-tensor or per-row and are applied at the end);
    ``promoted``       every ``promote_every`` elements the tensor-core partial sum is scaled and added
                       into an FP32 accumulator (DeepSeek-V3 §3.3.2).
combine (the order the scales meet a promoted partial sum p):
    ``deepgemm`` ``fma(sa*sb, p, acc)``, ``triton`` ``(p*sa)*sb + acc``, ``cublas`` ``fma(p*sa, sb, acc)``.
    DeepSeek-V3's Triton ``fp8_gemm`` is ``triton`` as written but compiles to ``cublas`` while
    Triton's FP fusion is on (the default through Triton 3.9; DeepSeek pins 3.0.0).
instruction: a tensor-core preset of ``fp8lab.accum`` (``hopper_fp8`` = Hopper wgmma E4M3).
out: ``bf16`` (round to nearest even), ``fp32``, or ``fp64`` (no output rounding).
c: optional M x N float32 C, added in FP32 after the accumulation (exactly, for ``exact``).
recipe: a named recipe (``fp8lab.recipes()``) or an edited row; its ``gemm`` part gives every
    argument above that is not passed. Default ``deepseek_v3_fp8_linear``.
"""
from __future__ import annotations

import numpy as np

from . import _core

from . import _args, _recipes

# The choices come from the GemmSpec schema in the emulator (emulator/gemm/gemm_spec.cpp).
_FIELDS = {f["key"]: f for f in _core.spec_fields("gemm")}
ACCUMULATE = tuple(_FIELDS["accumulate"]["choices"])
COMBINE = tuple(_FIELDS["combine"]["choices"])
OUT = tuple(_FIELDS["out"]["choices"])


def _check_choice(name: str, value, choices) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a string, one of {', '.join(choices)}; got {type(value).__name__}")
    if value not in choices and not (name == "accumulate" and value == "fp32_sequential"):
        raise ValueError(f"{name}: unknown value {value!r}; expected one of {', '.join(choices)}")


# Narrow float dtypes converted to float32 exactly before the call (numpy float16 and the
# ml_dtypes types: bfloat16, float8_*): every value of theirs is a float32 value.
_NARROW_FLOATS = {"float16", "bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3", "float8_e8m0fnu"}


def _check_operand(name: str, x):
    """Returns the operand to pass on (a QTensor, or a float32/float64 array)."""
    if isinstance(x, _core.__dict__.get("QTensor", ())):
        return x
    if isinstance(x, np.ndarray):
        x = _args.native_order(x)
        if x.ndim != 2:
            raise ValueError(f"{name}: expected a 2-D array (rows x K), got shape {x.shape}")
        if x.dtype.name in _NARROW_FLOATS:
            return x.astype(np.float32)
        if x.dtype not in (np.float32, np.float64):
            raise TypeError(f"{name}: expected dtype float32 or float64 (or bfloat16/float16/float8), got {x.dtype}")
        return x
    raise TypeError(f"{name}: expected a QTensor or a 2-D numpy float array, got {type(x).__name__}")


def _spec(recipe, accumulate, promote_every, combine, instruction, out) -> dict:
    """The GEMM spec: the recipe's ``gemm`` part, with every argument that was passed in its place."""
    spec = dict(_recipes.recipe(_recipes.DEFAULT if recipe is None else recipe)["gemm"])
    given = dict(accumulate=accumulate, promote_every=promote_every, combine=combine, instruction=instruction, out=out)
    spec.update({k: v for k, v in given.items() if v is not None})
    return spec


def _checked_call(a, b, recipe, accumulate, promote_every, combine, instruction, out):
    """The recipe merged with the explicit arguments, every argument checked: the positional
    arguments of ``_core.gemm`` up to ``c`` (gemm and gemm_bound take the same spec)."""
    s = _spec(recipe, accumulate, promote_every, combine, instruction, out)
    a = _check_operand("a", a)
    b = _check_operand("b", b)
    _check_choice("accumulate", s["accumulate"], ACCUMULATE)
    _check_choice("combine", s["combine"], COMBINE)
    _check_choice("out", s["out"], OUT)
    promote_every = _args.integer("promote_every", s["promote_every"], 1, _args.INT32_MAX)
    if not isinstance(s["instruction"], str):
        raise TypeError(f"instruction: expected a preset name, got {type(s['instruction']).__name__}")
    return a, b, s["accumulate"], int(promote_every), s["combine"], s["instruction"], s["out"]


def gemm(a, b, accumulate: str | None = None, promote_every: int | None = None, combine: str | None = None,
         instruction: str | None = None, out: str | None = None, c=None, *, recipe=None) -> np.ndarray:
    """Emulate ``D = C + A @ B.T`` (M x N) under the named accumulation spec; see the module doc."""
    return _core.gemm(*_checked_call(a, b, recipe, accumulate, promote_every, combine, instruction, out), c)


def gemm_bound(a, b, accumulate: str | None = None, promote_every: int | None = None, combine: str | None = None,
               instruction: str | None = None, out: str | None = None, c=None, *, recipe=None) -> np.ndarray:
    """Certified per-element bound on ``|gemm(...) - gemm_exact(...)|`` (same arguments as ``gemm``).

    A running error bound from the spec (truncation per aligned term, normalisation, promotion,
    scale multiplies, output rounding); the derivation is in emulator/gemm/bounds.hpp.
    """
    return _core.gemm(*_checked_call(a, b, recipe, accumulate, promote_every, combine, instruction, out), c, True)


def gemm_exact(a, b, c=None, out: str = "fp64") -> np.ndarray:
    """The exact ``C + A @ B.T`` of the (dequantised) inputs, rounded once to ``out`` (default binary64)."""
    a = _check_operand("a", a)
    b = _check_operand("b", b)
    _check_choice("out", out, OUT)
    return _core.gemm_exact(a, b, c, out)


def metrics(result, exact, out: str = "bf16", bound=None) -> dict:
    """Error of ``result`` against ``exact``: max/mean relative error (over non-zero exact values),
    the normwise relative error ``||result - exact||_2 / ||exact||_2``, max absolute error,
    DeepGEMM's ``calc_diff``, max ULP and a ULP histogram (in ``out``'s precision), and with
    ``bound`` the max/mean error-to-bound ratio and the number of violations. NaN/Inf results are
    counted (``nan_results``, ``inf_results``; ``nonfinite_where_exact_finite``) and make the
    errors infinite: a NaN never reads as a zero error."""
    _check_choice("out", out, OUT)
    result = np.asarray(result)
    exact = np.asarray(exact)
    if result.shape != exact.shape:
        raise ValueError(f"exact: shape {exact.shape} differs from result's {result.shape}")
    return dict(_core.gemm_metrics(result.astype(np.float64), exact.astype(np.float64), out,
                                   None if bound is None else np.asarray(bound, dtype=np.float64)))
