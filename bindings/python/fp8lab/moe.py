"""MoE routing: DeepSeek-V3's gate, load balancing, dispatch/combine and tie-aware verdicts.

The router is a reference, not a fast path: every step is rounded as its spec says, the sigmoid
and exp are correctly rounded float32 (fp8lab's pinned math, no libm), ties go to the lower
expert index, and NaN scores rank below every number. See emulator/moe/route.hpp.

A *spec* is a recipe name (``recipes()``: ``deepseek_v3`` — the DeepSeek reference's BF16 gate
with its FP32 bias, as on its main branch since 4592be4 (2025-08-26); ``deepseek_v3_2025_02`` — the
same gate with the BF16 bias it had before (1398800, 2025-02-14); ``deepseek_v3_hf`` — FP32 gate, ``sum + 1e-20``; ``deepseek_v2`` —
softmax; ``sglang_output_scale`` — routed scale applied to the output) or a dict of fields over a
``"base"`` recipe, e.g. ``{"base": "deepseek_v3_hf", "nodes": 8, "max_nodes": 4}``.

Arrays: logits / scores float32 ``(tokens, experts)`` (ml_dtypes bfloat16 is accepted and widened
exactly); bias float32 ``(experts,)``; ids int32 ``(tokens, topk)``; weights float32.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from . import _args, _core

__all__ = [
    "recipes",
    "spec",
    "spec_json",
    "route",
    "gate_scores",
    "update_bias",
    "balance_loss",
    "expert_loads",
    "node_stats",
    "dispatch",
    "gather",
    "combine",
    "compare",
]


def recipes() -> list[str]:
    """Names of the built-in router recipes."""
    return list(_core.moe_recipe_names())


def _spec_dict(spec: Any) -> dict:
    if isinstance(spec, str):
        return {"base": spec}
    if isinstance(spec, Mapping):
        d = dict(spec)
        if "base" not in d and d.get("name") in _core.moe_recipe_names():
            d = {"base": d["name"], **d}
        return d
    raise TypeError(f"spec: expected a recipe name or a dict of RouterSpec fields, got {type(spec).__name__}")


def spec(spec: Any = "deepseek_v3") -> dict:
    """The full RouterSpec (every field) for a recipe name or a dict of overrides; validated."""
    return dict(_core.moe_spec(_spec_dict(spec)))


def spec_json(spec: Any = "deepseek_v3") -> str:
    """Canonical JSON of a spec (keys sorted), for records and traces."""
    return _core.moe_spec_json(_spec_dict(spec))


def _float32(x, arg: str) -> np.ndarray:
    a = _args.native_order(np.asarray(x))
    if a.dtype == np.float32:
        return np.ascontiguousarray(a)
    if a.dtype.name == "bfloat16":  # ml_dtypes: widening to float32 is exact
        return np.ascontiguousarray(a.astype(np.float32))
    raise TypeError(f"{arg}: expected dtype float32 (or ml_dtypes bfloat16), got {a.dtype}; "
                    "cast explicitly — the router does not round silently")


def _ids(x, arg: str) -> np.ndarray:
    a = _args.native_order(np.asarray(x))
    if a.dtype != np.int32:
        if np.issubdtype(a.dtype, np.integer):
            if a.size and (a.min() < np.iinfo(np.int32).min or a.max() > np.iinfo(np.int32).max):
                raise ValueError(f"{arg}: values do not fit int32")
            a = a.astype(np.int32)
        else:
            raise TypeError(f"{arg}: expected an integer array, got dtype {a.dtype}")
    if a.ndim != 2:
        raise ValueError(f"{arg}: expected shape (tokens, topk), got {a.shape}")
    return np.ascontiguousarray(a)


def _bias(bias) -> np.ndarray | None:
    return None if bias is None else _float32(bias, "bias")


def route(logits, bias=None, spec: Any = "deepseek_v3", *, from_scores: bool = False):
    """Route tokens: returns ``(ids int32 (tokens, topk), weights float32 (tokens, topk))``.

    ids in each row are ordered by biased selection score, largest first (ties: lower index).
    ``from_scores=True`` takes precomputed gate scores instead of logits (rounded to the gate
    format), so a kernel's selection can be checked apart from its scoring.
    """
    x = _float32(logits, "scores" if from_scores else "logits")
    if x.ndim != 2:
        raise ValueError(f"{'scores' if from_scores else 'logits'}: expected shape (tokens, experts), got {x.shape}")
    ids, w = _core.moe_route(x, _bias(bias), _spec_dict(spec), bool(from_scores))
    return ids, w


def gate_scores(logits, spec: Any = "deepseek_v3") -> np.ndarray:
    """The spec's affinity scores (sigmoid or softmax, rounded as the spec says), float32."""
    x = _float32(logits, "logits")
    if x.ndim != 2:
        raise ValueError(f"logits: expected shape (tokens, experts), got {x.shape}")
    return _core.moe_gate_scores(x, _spec_dict(spec))


def update_bias(bias, ids, gamma: float, bias_format: str = "fp32") -> np.ndarray:
    """Auxiliary-loss-free bias update over one batch: ``b -= gamma`` for overloaded experts,
    ``+= gamma`` for underloaded ones (load compared with tokens*topk/experts exactly), float32
    arithmetic, result rounded to ``bias_format`` ("fp32" or "bf16")."""
    b = _float32(bias, "bias")
    if b.ndim != 1:
        raise ValueError(f"bias: expected shape (experts,), got {b.shape}")
    if not np.isfinite(gamma) or gamma < 0:
        raise ValueError(f"gamma: expected a finite value >= 0, got {gamma}")
    return _core.moe_update_bias(b, _ids(ids, "ids"), float(gamma), str(bias_format))


def balance_loss(scores, ids, alpha: float = 1e-4) -> float:
    """Sequence-wise balance loss ``alpha * sum_i f_i P_i`` over one sequence (rows of ``scores``
    = the unbiased affinities of its tokens). NaN when a token's scores sum to 0 or contain NaN."""
    s = _float32(scores, "scores")
    return float(_core.moe_balance_loss(s, _ids(ids, "ids"), float(alpha)))


def expert_loads(ids, experts: int) -> np.ndarray:
    """Tokens routed to each expert (int64, length ``experts``)."""
    return _core.moe_expert_loads(_ids(ids, "ids"), int(experts))


def node_stats(ids, experts: int, nodes: int) -> dict:
    """Nodes touched per token with experts laid out contiguously on ``nodes`` nodes:
    ``nodes_per_token``, ``mean``, ``max``, ``histogram``."""
    return dict(_core.moe_node_stats(_ids(ids, "ids"), int(experts), int(nodes)))


def dispatch(ids, alignment: int = 128, experts: int | None = None) -> dict:
    """Token -> expert layouts for grouped GEMMs.

    Contiguous (DeepGEMM ``m_grouped_*_contiguous``): ``m_indices`` gives each row's expert, -1 on
    padding rows (each expert's segment padded to a multiple of ``alignment``, as DeepGEMM's
    tests build ``grouped_layout``); ``psum_layout`` (end row of each expert's real rows, DeepGEMM's
    psum variant); ``row_token``,
    ``row_slot``, ``offsets``, ``token_row``. Masked (``m_grouped_*_masked``): ``masked_m`` (=
    ``counts``), ``capacity``, ``masked_token`` (experts, capacity), ``token_masked_row``.
    ``experts`` defaults to ``ids.max() + 1``; pass the model's expert count.
    """
    i = _ids(ids, "ids")
    if experts is None:
        experts = int(i.max()) + 1 if i.size else 1
    if int(alignment) < 1:
        raise ValueError(f"alignment: expected >= 1, got {alignment}")
    d = dict(_core.moe_dispatch(i, int(experts), int(alignment)))
    d["ids"] = i
    return d


def gather(x, layout: dict, kind: str = "contiguous") -> np.ndarray:
    """The grouped GEMM's input rows for ``layout`` (from ``dispatch``): row r holds
    ``x[row_token[r]]``; padding rows are zero. ``kind``: "contiguous" or "masked"."""
    return _core.moe_gather(_float32(x, "x"), layout["ids"], int(layout["experts"]), int(layout["alignment"]), kind)


def combine(expert_out, layout: dict, weights, kind: str = "contiguous", output_scale: float = 1.0,
            out_format: str = "fp32") -> np.ndarray:
    """Back to token order: ``out[t] = sum_j weights[t, j] * expert_out[row(t, j)]``, slots in
    ascending order, float32 products and sums (no fma), then ``* output_scale`` (the routed
    scale when the spec applies it to the output) and rounding to ``out_format`` ("fp32",
    "bf16"). Padding rows are never read."""
    return _core.moe_combine(_float32(expert_out, "expert_out"), layout["ids"], _float32(weights, "weights"),
                             int(layout["experts"]), int(layout["alignment"]), kind, float(output_scale),
                             str(out_format))


class RoutingVerdict(dict):
    """A dict with the verdict fields (``kind``: "bit-identical", "within-bound" or "violation";
    token counts; ``swaps`` naming each near-tie token; ``violations``) and ``summary``."""

    @property
    def ok(self) -> bool:
        return self["kind"] != "violation"

    def __str__(self) -> str:
        return self["summary"]

    def to_json(self) -> str:
        return self["json"]


def compare(ids_a, w_a, ids_b, w_b, logits, spec: Any = "deepseek_v3", bias=None, *, pinned: bool = False,
            order_sensitive: bool = False, from_scores: bool = False) -> RoutingVerdict:
    """Judge routing A (a kernel's) against B (the reference; pass ``None, None`` to use fp8lab's own
    route of ``logits``). A token passes when its experts are a top-k under some resolution of the
    ties (between experts and between groups) of selection scores within the certified
    score-error bound of the gating format, and its weights are the spec's weights for those
    experts within their bound; every token whose expert set differs is named in ``swaps``.
    ``pinned=True``: zero bounds — a top-k of fp8lab's exact scores under some tie resolution, with
    the weights bit for bit. NaN weights match any NaN (sign and payload are not compared) and
    nothing else."""
    x = _float32(logits, "scores" if from_scores else "logits")
    ia = _ids(ids_a, "ids_a")
    wa = _float32(w_a, "weights_a")
    ib = None if ids_b is None else _ids(ids_b, "ids_b")
    wb = None if w_b is None else _float32(w_b, "weights_b")
    d = _core.moe_compare(ia, wa, ib, wb, x, _bias(bias), _spec_dict(spec), bool(pinned), bool(order_sensitive),
                          bool(from_scores))
    v = RoutingVerdict(d)
    v["json"] = d["json"]
    return v

