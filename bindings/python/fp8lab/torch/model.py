"""A small DeepSeek-shaped decoder for the training lab (after DeepSeek-V3 ``inference/model.py``,
re-written small): RMSNorm, MLA attention with decoupled RoPE, an MoE FFN with one shared expert and
routed experts (sigmoid affinities, top-k on affinity + bias, weights normalised over the selected
affinities, §2.1.2's auxiliary-loss-free bias update), and a dense variant (SwiGLU FFN everywhere).
Byte-level: vocabulary 256.

Everything outside the ``nn.Linear`` layers runs in FP32 torch ops for every recipe (embedding,
norms, RoPE, attention scores/softmax, router gate, head): the recipes differ only in the Linear
GEMMs and the optimizer state, so the loss differences measure the GEMM recipe. Not modelled: YaRN
(sequences are short), the sequence-wise balance loss (α = 0 here), node-limited routing and
expert groups (8 experts), multi-token prediction.
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn


@dataclasses.dataclass
class ModelConfig:
    """Sizes of the model. ``moe=False`` gives the dense variant."""
    vocab: int = 256
    dim: int = 128
    n_layers: int = 2
    n_dense_layers: int = 1       # DeepSeek-V3's first_k_dense_replace: the first layers have a dense FFN
    n_heads: int = 2
    kv_lora_rank: int = 64
    qk_nope_head_dim: int = 32
    qk_rope_head_dim: int = 16
    v_head_dim: int = 64
    inter_dim: int = 256          # dense FFN hidden size
    moe: bool = True
    n_routed_experts: int = 8
    n_shared_experts: int = 1
    n_activated_experts: int = 2
    moe_inter_dim: int = 64
    route_scale: float = 1.0
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6
    max_seq_len: int = 256

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> "ModelConfig":
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.type in ("int",) and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise ValueError(f"model config {f.name}: expected an int >= 0, got {v!r}")
        if self.qk_rope_head_dim % 2:
            raise ValueError(f"model config qk_rope_head_dim: must be even (RoPE pairs), got {self.qk_rope_head_dim}")
        if self.moe and not 0 < self.n_activated_experts <= self.n_routed_experts:
            raise ValueError(f"model config n_activated_experts: {self.n_activated_experts} must be in "
                             f"[1, n_routed_experts = {self.n_routed_experts}]")
        if self.dim <= 0 or self.n_heads <= 0:
            raise ValueError(f"model config: dim and n_heads must be positive, got {self.dim}, {self.n_heads}")
        return self


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(dim: int, seq: int, theta: float):
    inv = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    ang = torch.outer(torch.arange(seq, dtype=torch.float64), inv)
    return torch.cos(ang).to(torch.float32), torch.sin(ang).to(torch.float32)


def apply_rope(x, cos, sin):
    """Interleaved pairs (x[2i], x[2i+1]) rotated, as DeepSeek-V3's view_as_complex. x [B, S, H, d]."""
    x2 = x.reshape(*x.shape[:-1], -1, 2)
    a, b = x2[..., 0], x2[..., 1]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    return torch.stack((a * c - b * s, a * s + b * c), dim=-1).flatten(-2)


class MLA(nn.Module):
    """Multi-head latent attention, naive form, no query compression (q_lora_rank = 0, as V2-Lite):
    wq -> [nope | rope] per head; wkv_a -> [latent kv_lora | k_pe shared by all heads]; RMSNorm on
    the latent; wkv_b -> [k_nope | v] per head; causal softmax in FP32; wo."""

    def __init__(self, c: ModelConfig):
        super().__init__()
        self.c = c
        self.qk_head_dim = c.qk_nope_head_dim + c.qk_rope_head_dim
        self.wq = nn.Linear(c.dim, c.n_heads * self.qk_head_dim, bias=False)
        self.wkv_a = nn.Linear(c.dim, c.kv_lora_rank + c.qk_rope_head_dim, bias=False)
        self.kv_norm = RMSNorm(c.kv_lora_rank, c.norm_eps)
        self.wkv_b = nn.Linear(c.kv_lora_rank, c.n_heads * (c.qk_nope_head_dim + c.v_head_dim), bias=False)
        self.wo = nn.Linear(c.n_heads * c.v_head_dim, c.dim, bias=False)
        self.scale = self.qk_head_dim ** -0.5

    def forward(self, x, cos, sin, mask):
        c = self.c
        B, S, _ = x.shape
        q = self.wq(x).view(B, S, c.n_heads, self.qk_head_dim)
        q_nope, q_pe = q.split([c.qk_nope_head_dim, c.qk_rope_head_dim], dim=-1)
        q_pe = apply_rope(q_pe, cos, sin)
        kv = self.wkv_a(x)
        kv, k_pe = kv.split([c.kv_lora_rank, c.qk_rope_head_dim], dim=-1)
        k_pe = apply_rope(k_pe.unsqueeze(2), cos, sin)
        kv = self.wkv_b(self.kv_norm(kv)).view(B, S, c.n_heads, c.qk_nope_head_dim + c.v_head_dim)
        k_nope, v = kv.split([c.qk_nope_head_dim, c.v_head_dim], dim=-1)
        q = torch.cat([q_nope, q_pe], dim=-1)
        k = torch.cat([k_nope, k_pe.expand(-1, -1, c.n_heads, -1)], dim=-1)
        scores = torch.einsum("bshd,bthd->bhst", q, k) * self.scale + mask
        p = scores.softmax(dim=-1)
        o = torch.einsum("bhst,bthd->bshd", p, v)
        return self.wo(o.reshape(B, S, c.n_heads * c.v_head_dim))


class SwiGLU(nn.Module):
    def __init__(self, dim: int, inter: int):
        super().__init__()
        self.w1 = nn.Linear(dim, inter, bias=False)
        self.w2 = nn.Linear(inter, dim, bias=False)
        self.w3 = nn.Linear(dim, inter, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Gate(nn.Module):
    """DeepSeek-V3 router (§2.1.2): s = sigmoid(x . e_i) in FP32; top-k of s + bias (the bias only
    selects); weights = s / sum of the selected s, times route_scale. ``bias`` is a buffer updated
    by ``MoE.update_bias`` (b_i -= γ if overloaded, += γ if underloaded, over the whole batch)."""

    def __init__(self, c: ModelConfig):
        super().__init__()
        self.topk = c.n_activated_experts
        self.route_scale = c.route_scale
        self.gate = nn.Linear(c.dim, c.n_routed_experts, bias=False)  # kept FP32 by convert's DEFAULT_SKIP
        self.register_buffer("bias", torch.zeros(c.n_routed_experts))

    def forward(self, x):
        s = torch.sigmoid(self.gate(x))
        idx = torch.topk(s.detach() + self.bias, self.topk, dim=-1, sorted=True).indices
        w = s.gather(1, idx)
        w = w / w.sum(dim=-1, keepdim=True)
        return w * self.route_scale, idx


class MoE(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.n_experts = c.n_routed_experts
        self.gate = Gate(c)
        self.experts = nn.ModuleList(SwiGLU(c.dim, c.moe_inter_dim) for _ in range(c.n_routed_experts))
        self.shared_experts = SwiGLU(c.dim, c.n_shared_experts * c.moe_inter_dim)
        self.last_load = torch.zeros(c.n_routed_experts, dtype=torch.int64)

    def forward(self, x):
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        w, idx = self.gate(x)
        self.last_load = torch.bincount(idx.flatten(), minlength=self.n_experts)
        y = torch.zeros_like(x)
        for i in range(self.n_experts):
            if int(self.last_load[i]) == 0:
                continue
            rows, slot = torch.where(idx == i)
            y = y.index_add(0, rows, self.experts[i](x[rows]) * w[rows, slot, None])
        return (y + self.shared_experts(x)).view(shape)

    @torch.no_grad()
    def update_bias(self, gamma: float) -> None:
        """§2.1.2: after each step, b_i -= γ for experts above the mean load, += γ below it."""
        load = self.last_load.to(torch.float32)
        self.gate.bias += gamma * torch.sign(load.mean() - load)


class Block(nn.Module):
    def __init__(self, layer: int, c: ModelConfig):
        super().__init__()
        self.attn_norm = RMSNorm(c.dim, c.norm_eps)
        self.attn = MLA(c)
        self.ffn_norm = RMSNorm(c.dim, c.norm_eps)
        self.ffn = MoE(c) if c.moe and layer >= c.n_dense_layers else SwiGLU(c.dim, c.inter_dim)

    def forward(self, x, cos, sin, mask):
        x = x + self.attn(self.attn_norm(x), cos, sin, mask)
        return x + self.ffn(self.ffn_norm(x))


class Transformer(nn.Module):
    """Byte-level decoder: tokens [B, S] (int64, 0..vocab-1) -> logits [B, S, vocab] (FP32)."""

    def __init__(self, c: ModelConfig):
        super().__init__()
        self.c = c.validate()
        self.embed = nn.Embedding(c.vocab, c.dim)
        self.layers = nn.ModuleList(Block(i, c) for i in range(c.n_layers))
        self.norm = RMSNorm(c.dim, c.norm_eps)
        self.head = nn.Linear(c.dim, c.vocab, bias=False)
        cos, sin = rope_tables(c.qk_rope_head_dim, c.max_seq_len, c.rope_theta)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self._init()

    def _init(self):
        # Deterministic from torch.manual_seed: normal(0, 0.02) weights (DeepSeek-V3 §4.2: std 0.006 at
        # its width; 0.02 at this width), output projections scaled by 1/sqrt(2 n_layers) (GPT-2).
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * self.c.n_layers) if name.endswith(("wo.weight", "w2.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)

    def moe_layers(self) -> list[MoE]:
        return [m for m in self.modules() if isinstance(m, MoE)]

    def forward(self, tokens):
        B, S = tokens.shape
        if S > self.c.max_seq_len:
            raise ValueError(f"tokens: sequence length {S} exceeds max_seq_len = {self.c.max_seq_len}")
        x = self.embed(tokens)
        mask = torch.full((S, S), float("-inf")).triu_(1)
        cos, sin = self.cos[:S], self.sin[:S]
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.head(self.norm(x))


def sized(name: str) -> ModelConfig:
    """Named sizes: ``moe`` / ``dense`` (the defaults), ``tiny`` / ``tiny_dense`` (tests and --quick)."""
    sizes = {
        "moe": ModelConfig(),
        "dense": ModelConfig(moe=False),
        "tiny": ModelConfig(dim=64, n_heads=2, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8,
                            v_head_dim=16, inter_dim=96, n_routed_experts=4, n_activated_experts=2,
                            moe_inter_dim=32, max_seq_len=64),
        "tiny_dense": ModelConfig(dim=64, n_heads=2, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8,
                                  v_head_dim=16, inter_dim=96, moe=False, max_seq_len=64),
    }
    if name not in sizes:
        raise ValueError(f"model: unknown size {name!r}; known: {', '.join(sizes)}")
    return sizes[name]


__all__ = ["Gate", "MLA", "MoE", "ModelConfig", "RMSNorm", "SwiGLU", "Transformer", "sized"]
