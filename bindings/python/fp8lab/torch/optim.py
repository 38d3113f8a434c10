"""AdamW over FP32 master weights with FP32 or BF16 moments (DeepSeek-V3 §3.3.3: "we adopt the BF16
data format instead of FP32 to track the first and second moments in the AdamW optimizer ... the
master weights (stored by the optimizer) and gradients (used for batch size accumulation) are
still retained in FP32"). The update is computed in FP32 from the freshly updated moments; the
stored moments are rounded to BF16 (torch's nearest-even cast) for the next step. Elementwise torch
ops only, so the result does not depend on the thread count.
"""
from __future__ import annotations

import torch


class AdamW:
    def __init__(self, params, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, moments: str = "fp32"):
        if moments not in ("fp32", "bf16"):
            raise ValueError(f"moments: expected 'fp32' or 'bf16', got {moments!r}")
        self.params = [p for p in params if p.requires_grad]
        self.b1, self.b2 = betas
        self.eps, self.wd = eps, weight_decay
        self.dtype = torch.bfloat16 if moments == "bf16" else torch.float32
        self.m = [torch.zeros_like(p, dtype=self.dtype) for p in self.params]
        self.v = [torch.zeros_like(p, dtype=self.dtype) for p in self.params]
        self.t = 0

    @torch.no_grad()
    def step(self, lr: float) -> None:
        self.t += 1
        c1, c2 = 1 - self.b1 ** self.t, 1 - self.b2 ** self.t
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            g = p.grad.to(torch.float32)
            m32 = m.to(torch.float32).mul_(self.b1).add_(g, alpha=1 - self.b1)
            v32 = v.to(torch.float32).mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
            m.copy_(m32)
            v.copy_(v32)
            if p.dim() >= 2:  # no decay on norms and biases
                p.mul_(1 - lr * self.wd)
            p.addcdiv_(m32 / c1, (v32 / c2).sqrt_().add_(self.eps), value=-lr)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None


__all__ = ["AdamW"]
