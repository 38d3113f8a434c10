"""DeepSeek-V3.2's lightning indexer (DSA's token selector) and tie-aware checks of its top-k.

The arithmetic is stated, with its sources, in emulator/mla/indexer.hpp (DeepSeek-V3.2-Exp
inference/model.py ``Indexer`` and kernel.py ``fp8_index``; DeepGEMM ``fp8_mqa_logits``); every
bit-changing choice is a field of the indexer spec (``indexer_spec()``; defaults DeepSeek-V3.2:
64 heads, head dim 128, top-2048, UE8M0 act_quant, Hopper FP8 wgmma, reduction ``v32_tilelang``).

Typical use::

    r = index(q, k, weights)                      # q (m, H, 128), k (n, 128), weights (m, H): BF16 values
    r["logits"], r["indices"]                     # (m, n) float32 (-inf masked), (m, topk) int32 (-1 padded)
    s = topk_stability(q, k, weights)             # selection changes vs the exact (float64) indexer
    v = selection_verdict(kernel_indices, q, k, weights)   # a kernel's selection against the emulator
    assert v.ok, v.message

Inputs are float32 arrays holding BF16 values, or ml_dtypes.bfloat16 arrays; the queries' token
ranges are ``starts``/``ends`` (DeepGEMM's cu_seq_len_k_start / _end: query i sees tokens
[starts[i], ends[i])), default every token.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from . import _core

HEAD_DIM = 128  # emulator/mla/indexer_spec.hpp kIndexHeadDim
REFERENCES = ("unquantised", "quantised")


def indexer_spec(spec=None) -> dict:
    """The canonical indexer spec dict (a dict of the fields to change, or its JSON text)."""
    return dict(_core.indexer_spec(spec))


def _values(a, name: str, ndim: int) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype.name == "bfloat16":
        arr = arr.astype(np.float32)
    elif arr.dtype != np.float32:
        raise TypeError(f"{name}: expected float32 (holding BF16 values) or bfloat16, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        at = tuple(int(x) for x in np.argwhere(bad)[0])
        raise ValueError(f"{name}: element {at} is {arr[at]}; the indexer takes finite BF16 values")
    bits = np.ascontiguousarray(arr).view(np.uint32)
    off = (bits & 0xFFFF) != 0
    if off.any():
        at = tuple(int(x) for x in np.argwhere(off)[0])
        raise ValueError(f"{name}: element {at} = {arr[at]!r} is not a BF16 value (round to BF16 first, as the model does)")
    return np.ascontiguousarray(arr)


def _range(a, name: str, m: int):
    if a is None:
        return None
    arr = np.asarray(a)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected an integer array, got dtype {arr.dtype}")
    if arr.shape != (m,):
        raise ValueError(f"{name}: expected shape ({m},) (one per query), got {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() > np.iinfo(np.int32).max):
        raise ValueError(f"{name}: values must lie in [0, 2^31), got [{arr.min()}, {arr.max()}]")
    return np.ascontiguousarray(arr, dtype=np.int32)


def _prepare(q, k, weights, starts, ends, spec, topk):
    q = _values(q, "q", 3)
    k = _values(k, "k", 2)
    weights = _values(weights, "weights", 2)
    s = {} if spec is None else dict(spec) if isinstance(spec, dict) else None
    if s is None:
        raise TypeError(f"spec: expected a dict of indexer spec fields, got {type(spec).__name__}")
    s.setdefault("heads", int(q.shape[1]))
    if topk is not None:
        s["topk"] = topk
    s = indexer_spec(s)
    m, H, n = q.shape[0], s["heads"], k.shape[0]
    if q.shape[1:] != (H, HEAD_DIM):
        raise ValueError(f"q: expected shape (queries, {H}, {HEAD_DIM}) for spec heads={H}, got {q.shape}")
    if k.shape[1] != HEAD_DIM:
        raise ValueError(f"k: expected shape (tokens, {HEAD_DIM}), got {k.shape}")
    if weights.shape != (m, H):
        raise ValueError(f"weights: expected shape ({m}, {H}) (queries, heads), got {weights.shape}")
    if s["topk"] > n:
        raise ValueError(f"topk: {s['topk']} is larger than the context ({n} tokens)")
    return q, k, weights, _range(starts, "starts", m), _range(ends, "ends", m), s


def index(q, k, weights, *, starts=None, ends=None, spec=None, topk: int | None = None) -> dict:
    """The FP8 indexer: ``logits`` (m, n) float32 with -inf outside each query's range, ``indices``
    (m, topk) int32 — the largest logits in descending order, ties to the lower token, -1 padded —
    and the intermediates ``q_rot``/``k_rot`` (BF16 values after rotate_activation), ``q_e4m3``/
    ``k_e4m3`` (bits), ``q_scale``/``k_scale`` and ``weights_folded`` (what the kernel reads), and
    ``spec``. ``heads`` defaults to q's second dimension; ``topk`` overrides the spec's."""
    q, k, weights, st, en, s = _prepare(q, k, weights, starts, ends, spec, topk)
    out = dict(_core.mla_index(q, k, weights, st, en, s))
    out["spec"] = s
    return out


def index_exact(q, k, weights, *, starts=None, ends=None, spec=None, inputs: str = "unquantised") -> np.ndarray:
    """What the FP8 indexer approximates, in float64 (emulator/mla/indexer.hpp ExactIndexer):
    ``"unquantised"`` — the BF16 inputs, exact Hadamard, no FP8: sum_h w_h relu(q_h . k_j) with
    w_h = weights * H^-1/2 * 128^-1/2; ``"quantised"`` — the same E4M3 elements, scales and folded
    weights as :func:`index`, exact dots and sum (isolates the kernel's accumulation)."""
    if inputs not in REFERENCES:
        raise ValueError(f"inputs: {inputs!r}; expected one of {REFERENCES}")
    q, k, weights, st, en, s = _prepare(q, k, weights, starts, ends, spec, None if spec and "topk" in spec else 1)
    return np.asarray(_core.mla_index_exact(q, k, weights, st, en, s, inputs))


def index_bound(q, k, weights, *, starts=None, ends=None, spec=None) -> np.ndarray:
    """Certified per-element bound on |index(...)["logits"] - index_exact(..., inputs="quantised")|
    (0 outside the ranges)."""
    q, k, weights, st, en, s = _prepare(q, k, weights, starts, ends, spec, None if spec and "topk" in spec else 1)
    return np.asarray(_core.mla_index_bound(q, k, weights, st, en, s))


def selection_changes(a, b, topk: int, *, starts=None, ends=None) -> dict:
    """Tie-aware change count between the top-k selections of logits ``a`` and ``b`` (m, n): per
    query the fewest tokens that differ between any selection a admits and any b admits (a swap
    between exactly equal logits is no change; see emulator/mla/indexer_select.hpp). Returns per-query
    arrays ``changed``, ``selected`` (min(topk, valid)), ``ties_a``/``ties_b`` (tokens exactly at the
    k-th logit) and the totals ``total_changed``, ``total_selected``."""
    if isinstance(topk, bool) or not isinstance(topk, (int, np.integer)) or topk < 1:
        raise ValueError(f"topk: {topk!r}; expected an integer >= 1")
    a, b = np.asarray(a), np.asarray(b)
    m = a.shape[0] if a.ndim == 2 else 0
    d = {k: np.asarray(v) for k, v in _core.mla_selection_changes(a, b, _range(starts, "starts", m),
                                                                  _range(ends, "ends", m), int(topk)).items()}
    d["total_changed"] = int(d["changed"].sum())
    d["total_selected"] = int(d["selected"].sum())
    return d


def topk_stability(q, k, weights, *, starts=None, ends=None, spec=None, reference: str = "unquantised") -> dict:
    """How many selected tokens change between the FP8 indexer and the exact float64 one
    (``reference``: ``"unquantised"`` BF16 inputs, or ``"quantised"`` the same FP8 inputs; see
    :func:`index_exact`), tie-aware. Returns :func:`selection_changes`'s fields plus ``reference``,
    ``fraction`` (changed / selected over the batch), ``fp8`` (the :func:`index` result) and ``exact``
    (the reference logits)."""
    r = index(q, k, weights, starts=starts, ends=ends, spec=spec)
    exact = index_exact(q, k, weights, starts=starts, ends=ends, spec=r["spec"], inputs=reference)
    d = selection_changes(r["logits"], exact, r["spec"]["topk"], starts=starts, ends=ends)
    d.update(reference=reference, fp8=r, exact=exact,
             fraction=d["total_changed"] / d["total_selected"] if d["total_selected"] else 0.0)
    return d


def check_selection(indices, logits, topk: int, *, starts=None, ends=None) -> str:
    """"" when every query's ``indices`` (m, topk) int32, in any order with -1 padding, is a top-k
    selection ``logits`` admits (tie-aware), else a message naming the first offending query."""
    if isinstance(topk, bool) or not isinstance(topk, (int, np.integer)) or topk < 1:
        raise ValueError(f"topk: {topk!r}; expected an integer >= 1")
    idx = np.asarray(indices)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"indices: expected an integer array, got dtype {idx.dtype}")
    if idx.size and (idx.min() < np.iinfo(np.int32).min or idx.max() > np.iinfo(np.int32).max):
        raise ValueError("indices: values outside int32")
    lg = np.asarray(logits)
    m = lg.shape[0] if lg.ndim == 2 else 0
    return str(_core.mla_check_selection(np.ascontiguousarray(idx, dtype=np.int32), lg, _range(starts, "starts", m),
                                         _range(ends, "ends", m), int(topk)))


@dataclasses.dataclass(frozen=True)
class SelectionVerdict:
    ok: bool
    message: str      # "" when ok; else names the first offending query
    query: int | None  # that query's index

    def __bool__(self) -> bool:
        return self.ok


def selection_verdict(indices, q, k, weights, *, starts=None, ends=None, spec=None) -> SelectionVerdict:
    """A kernel's top-k ``indices`` (m, topk), any order within a query's set, -1 padding, checked
    against the emulator's FP8 logits for the same inputs under ``spec`` (tie-aware)."""
    r = index(q, k, weights, starts=starts, ends=ends, spec=spec)
    msg = check_selection(indices, r["logits"], r["spec"]["topk"], starts=starts, ends=ends)
    query = int(msg.split(":")[0].split()[1]) if msg.startswith("query ") else None
    return SelectionVerdict(not msg, msg, query)


__all__ = ["HEAD_DIM", "SelectionVerdict", "check_selection", "index", "index_bound", "index_exact", "indexer_spec",
           "selection_changes", "selection_verdict", "topk_stability"]
