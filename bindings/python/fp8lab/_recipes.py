"""Named GEMM recipes: per operand (``a`` activations, ``b`` weights) the element format, scale tile
and scale rule, plus the GEMM spec (accumulate, promote_every, combine, instruction, out), each row
citing its source. The table lives in the emulator (emulator/gemm/recipe.cpp); this module only
shows it.

``recipes()`` maps every name to its row; ``recipe(name)`` gives one row as a dict. A row can be
copied, edited and passed wherever a recipe is taken (``fp8lab.gemm(..., recipe=row)``,
``fp8lab.quantize(..., recipe=row, operand="a")``); a dict may also name the row it edits in
``"base"`` and give only the fields it changes: ``{"base": "deepgemm_sm90", "gemm": {"combine":
"cublas"}}``.
"""
from __future__ import annotations

from . import _core

#: the recipe every FP8 GEMM call site uses when it names none
DEFAULT = _core.default_gemm_recipe


def recipes() -> dict[str, dict]:
    """Every named recipe: name -> row dict (with its ``source``)."""
    return {name: dict(_core.gemm_recipe(name)) for name in _core.gemm_recipes()}


def recipe(name=DEFAULT) -> dict:
    """One recipe as a validated row dict: a name (unknown names list the known ones), a row dict,
    a dict with ``"base"`` and the fields it changes, or the JSON text of either."""
    if not isinstance(name, (str, dict)):
        raise TypeError(f"recipe: expected a recipe name (see recipes()) or a row dict, got {type(name).__name__}")
    return dict(_core.gemm_recipe(name))


def operand(rec, which: str) -> dict:
    """The ``format``/``tile``/``rule`` of operand ``which`` ("a" or "b") of a recipe."""
    if which not in ("a", "b"):
        raise ValueError(f"operand: expected 'a' (activations) or 'b' (weights), got {which!r}")
    return recipe(rec)[which]


__all__ = ["DEFAULT", "operand", "recipe", "recipes"]
