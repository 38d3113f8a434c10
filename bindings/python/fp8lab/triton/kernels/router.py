"""The sigmoid group-limited router (DeepSeek-V3 §2.1.2, HF ``noaux_tc``; fp8lab recipe
``deepseek_v3_hf``): biased selection scores ``s + b``, group score = sum of the group's top-2
biased scores, the best ``TOPK_G`` groups stay eligible, top-``TOPK`` experts among them (ties to
the lower index, as the vLLM/SGLang CUDA kernels), weights ``s / (sum + eps) * scale`` in FP32.

One program per token. The sum of the selected scores is accumulated in selection order by
scalar adds (a ``tl.sum`` would be a reduction tree whose order the GPU layout decides), and the
division is ``tl.div_rn`` (a plain ``/`` is the approximate ``div.full.f32``).

``FROM_LOGITS=True`` applies ``tl.sigmoid`` to logits first: Triton lowers it to ``ex2.approx``
and an approximate division, which fp8lab cannot pin (the audit lists them; the faithful
interpreter refuses them unless asked to flag). With ``FROM_LOGITS=False`` the kernel takes the
scores and is a pinned function of them.
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def router_kernel(x_ptr, bias_ptr, ids_ptr, w_ptr, eps, scale, E: tl.constexpr, G: tl.constexpr,
                  TOPK_G: tl.constexpr, TOPK: tl.constexpr, FROM_LOGITS: tl.constexpr):
    t = tl.program_id(axis=0)
    e = tl.arange(0, E)
    x = tl.load(x_ptr + t * E + e)
    if FROM_LOGITS:
        s = tl.sigmoid(x)
    else:
        s = x
    sel = s + tl.load(bias_ptr + e)
    PER: tl.constexpr = E // G
    grouped = tl.reshape(sel, (G, PER))
    pos = tl.reshape(e, (G, PER)) % PER
    best = tl.argmax(grouped, axis=1, tie_break_left=True)
    first = tl.max(grouped, axis=1)
    second = tl.max(tl.where(pos == best[:, None], float("-inf"), grouped), axis=1)
    gscore = first + second
    gi = tl.arange(0, G)
    keep = gi < 0
    for _ in tl.static_range(TOPK_G):
        j = tl.argmax(gscore, axis=0, tie_break_left=True)
        keep = keep | (gi == j)
        gscore = tl.where(gi == j, float("-inf"), gscore)
    eligible = tl.reshape(tl.broadcast_to(keep[:, None], (G, PER)), (E,))
    cand = tl.where(eligible, sel, float("-inf"))
    slot = tl.arange(0, TOPK)
    ids = tl.zeros((TOPK,), dtype=tl.int32)
    picked = tl.zeros((TOPK,), dtype=tl.float32)
    denom = 0.0
    for j in tl.static_range(TOPK):
        k = tl.argmax(cand, axis=0, tie_break_left=True)
        sk = tl.max(tl.where(e == k, s, float("-inf")), axis=0)
        denom += sk
        ids = tl.where(slot == j, k, ids)
        picked = tl.where(slot == j, sk, picked)
        cand = tl.where(e == k, float("-inf"), cand)
    w = tl.div_rn(picked, denom + eps) * scale
    tl.store(ids_ptr + t * TOPK + slot, ids)
    tl.store(w_ptr + t * TOPK + slot, w)


def route(x, bias, experts_per_token: int = 8, groups: int = 8, topk_groups: int = 4, eps: float = 1e-20,
          scale: float = 2.5, from_logits: bool = False, kernel=router_kernel):
    """x: float32 [tokens, experts] scores (or logits with ``from_logits``), bias float32
    [experts] (CPU torch tensors) -> (ids int32 [tokens, k], weights float32 [tokens, k])."""
    import torch

    if x.dtype != torch.float32 or bias.dtype != torch.float32:
        raise TypeError(f"x, bias: expected float32 tensors, got {x.dtype}, {bias.dtype}")
    t, e = x.shape
    if tuple(bias.shape) != (e,):
        raise ValueError(f"bias: shape {tuple(bias.shape)} must be ({e},)")
    if e % groups or e & (e - 1) or groups & (groups - 1):
        raise ValueError(f"experts {e} / groups {groups}: need powers of two with groups dividing experts")
    ids = torch.empty((t, experts_per_token), dtype=torch.int32)
    w = torch.empty((t, experts_per_token), dtype=torch.float32)
    kernel[(t,)](x.contiguous(), bias.contiguous(), ids, w, eps, scale, E=e, G=groups, TOPK_G=topk_groups,
                 TOPK=experts_per_token, FROM_LOGITS=from_logits)
    return ids, w


_SIG = {"x_ptr": "*fp32", "bias_ptr": "*fp32", "ids_ptr": "*i32", "w_ptr": "*fp32", "eps": "fp32", "scale": "fp32"}
_SPEC = {"base": "deepseek_v3_hf", "experts": 256, "topk": 8, "groups": 8, "topk_groups": 4}
AUDIT = {
    "router": {"fn": "router_kernel", "op": "moe_route", "signature": _SIG,
               "constexprs": {"E": 256, "G": 8, "TOPK_G": 4, "TOPK": 8, "FROM_LOGITS": False}, "spec": _SPEC},
    "router_logits": {"fn": "router_kernel", "op": "moe_route", "signature": _SIG,
                      "constexprs": {"E": 256, "G": 8, "TOPK_G": 4, "TOPK": 8, "FROM_LOGITS": True}, "spec": _SPEC},
}
