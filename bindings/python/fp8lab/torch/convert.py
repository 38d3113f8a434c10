"""``convert(model, recipe, skip=...)``: swap a torch model's ``nn.Linear`` layers for ``Fp8Linear``.

DeepSeek-V3 §3.3 keeps the embedding, the output head, the MoE gate, the normalisations and the
attention core in BF16/FP32: only Linear GEMMs go to FP8. Embeddings, norms and the attention core
are not ``nn.Linear``s, so they stay as they are; the head and gate are ``nn.Linear``s, kept by
name: ``DEFAULT_SKIP`` matches a module whose own name (the last part of its qualified name) is one
of ``head``, ``lm_head``, ``output``, ``gate``, ``router``. Pass ``skip=()`` to convert them too, or
your own names / qualified names / a predicate ``f(qualified_name, module) -> bool``.
"""
from __future__ import annotations

import torch

from .linear import Fp8Linear
from .recipes import recipe as _recipe

DEFAULT_SKIP = ("head", "lm_head", "output", "gate", "router")


def _skipped(qname: str, module, skip) -> bool:
    if callable(skip):
        return bool(skip(qname, module))
    last = qname.rsplit(".", 1)[-1]
    return qname in skip or last in skip


def convert(model: torch.nn.Module, recipe, skip=DEFAULT_SKIP, roles: dict | None = None) -> torch.nn.Module:
    """Replace every ``nn.Linear`` of ``model`` (in place; also returned) by an ``Fp8Linear`` under
    ``recipe`` with the same weights, except those ``skip`` names. ``roles`` maps own names to a
    role (default: ``{"wo": "attn_out"}``, the Linear after attention).

    Raises ValueError for an unknown recipe (listing the known ones), a model with no Linear to
    convert, or a layer whose shapes the recipe cannot tile (naming the layer)."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    row = _recipe(recipe)
    if isinstance(skip, str):
        skip = (skip,)
    roles = {"wo": "attn_out"} if roles is None else dict(roles)
    targets = []
    for qname, module in model.named_modules():
        for child_name, child in module.named_children():
            full = f"{qname}.{child_name}" if qname else child_name
            if type(child) is torch.nn.Linear and not _skipped(full, child, skip):
                targets.append((module, child_name, full, child))
    if not targets:
        n_lin = sum(1 for m in model.modules() if isinstance(m, torch.nn.Linear))
        why = (f"it has {n_lin} but skip={skip!r} keeps them all" if n_lin else "it has none")
        raise ValueError(f"model: no nn.Linear layer to convert ({why})")
    for parent, child_name, full, child in targets:
        setattr(parent, child_name, Fp8Linear.from_linear(child, row, role=roles.get(child_name, ""), name=full))
    return model


def fp8_linears(model: torch.nn.Module) -> list[Fp8Linear]:
    """The model's Fp8Linear layers, in module order."""
    return [m for m in model.modules() if isinstance(m, Fp8Linear)]


__all__ = ["DEFAULT_SKIP", "convert", "fp8_linears"]
