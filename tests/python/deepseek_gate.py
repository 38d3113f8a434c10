"""DeepSeek-V3's routing Gate, re-formulated in torch from its source for use as an oracle.

Source: deepseek-ai/DeepSeek-V3 ``inference/model.py``, class ``Gate``, ``forward`` from the
logits on (``scores = linear(x, self.weight)`` is the caller's), at two commits:
  * 1398800 (2025-02-14, "fix scores mask"): the bias is an ``nn.Parameter`` in the default dtype,
    bf16, so ``scores + bias`` is bf16;
  * 4592be4 (2025-08-26, "fp32 gate bias"): the bias is created as float32, so ``scores + bias``
    is promoted to float32 (the group top-2 sums and the final top-k then run in float32).
Steps (sigmoid variant, as DeepSeek-V3 configures it): sigmoid of the bf16 logits; the biased
scores grouped into ``n_groups`` groups, each scored by the sum of its two largest; the
``topk_groups`` best groups kept, the others filled with -inf; top-k over what is left; weights are
the unbiased scores of the chosen experts over their sum, times ``route_scale``, in bf16. The tie
order is torch.topk's own (unspecified), which is the point of using it.
"""
from __future__ import annotations

import torch


def gate(logits: torch.Tensor, bias: torch.Tensor, *, n_groups: int = 8, topk_groups: int = 4, topk: int = 8,
         route_scale: float = 2.5):
    """``logits`` bf16 (tokens, experts); ``bias`` bf16 (the Feb-2025 Gate) or float32 (the current
    one). Returns (weights bf16 (tokens, topk), indices int64 (tokens, topk))."""
    assert logits.dtype == torch.bfloat16
    tokens = logits.shape[0]
    affinity = logits.sigmoid()
    selection = affinity + bias  # bf16 + bf16 stays bf16; bf16 + float32 becomes float32
    grouped = selection.view(tokens, n_groups, -1)
    group_score = grouped.topk(2, dim=-1).values.sum(dim=-1)
    best_groups = group_score.topk(topk_groups, dim=-1).indices
    unselected = torch.ones(tokens, n_groups, dtype=torch.bool).scatter(1, best_groups, False)
    masked = grouped.masked_fill(unselected.unsqueeze(-1), float("-inf")).flatten(1)
    indices = masked.topk(topk, dim=-1).indices
    weights = affinity.gather(1, indices)
    weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights * route_scale, indices
