"""Task kinds: named operations a grid can sweep, each with its axes, fixed parameters and seed axes.

A kind's ``run(task) -> dict`` computes samples ``task.lo .. task.hi - 1`` of one grid point and
returns JSON values (lists with one entry per sample for the built-in kinds). It must be a
module-level function so that worker processes and Dask workers can import it by name.

Built-in kinds (their modules register them when first asked for):
  ``gemm_error``     block-scaled FP8 GEMM error vs K, N_C, scale rule, instruction, tiling, input
                     distribution (kind_gemm.py);
  ``routing_flips``  tokens whose expert set changes between a gate precision and a reference gate
                     (kind_routing.py);
  ``train``          training recipe x seed through the training lab, fp8lab.torch (kind_train.py).
Extension point: a new kind is a module with a ``KIND = Kind(...)`` added to BUILTIN_MODULES, or
``register_kind(Kind(...))`` from user code (then its module must be importable on every worker).
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

BUILTIN_MODULES = ("kind_gemm", "kind_routing", "kind_train")
_KINDS: dict = {}
_loaded = False


@dataclass(frozen=True)
class Axis:
    """A named axis (or fixed parameter) of a kind: its default and a check that returns the value
    (normalised) or raises ValueError/TypeError saying what was expected."""
    name: str
    default: Any
    check: Callable[[Any], Any]
    doc: str


@dataclass(frozen=True)
class Kind:
    name: str
    doc: str
    axes: tuple
    params: tuple
    seed_axes: tuple
    run: Callable
    figures: tuple  # the standard plots: ({"name", "x": axis, "y": value, "logx", "logy", "title"}, ...)

    def axis(self, name: str) -> Axis:
        return {a.name: a for a in self.axes}[name]

    def validate(self, axes: dict, params: dict) -> tuple[dict, dict]:
        out = self._checked("axes", ("axis", "axes"), axes, self.axes, lambda ax, v: [ax.check(x) for x in v],
                            lambda ax: [ax.default])
        pout = self._checked("params", ("parameter", "parameters"), params, self.params, lambda p, v: p.check(v),
                             lambda p: p.default)
        return out, pout

    def _checked(self, field: str, nouns: tuple[str, str], given: dict, declared: tuple, check, default) -> dict:
        """``given`` (name -> value) checked against the declared axes or parameters: an unknown name
        or a value its check refuses is an error naming ``grid: <field>`` and the name."""
        known = {a.name: a for a in declared}
        unknown = [n for n in given if n not in known]
        if unknown:
            raise ValueError(f"grid: {field}: unknown {nouns[0]} {', '.join(map(repr, unknown))} for kind "
                             f"{self.name!r}; its {nouns[1]} are {', '.join(sorted(known)) or 'none'}")
        out = {}
        for name in sorted(known):
            try:
                out[name] = check(known[name], given[name] if name in given else default(known[name]))
            except (TypeError, ValueError) as err:
                raise type(err)(f"grid: {field}: {name}: {err}") from None
        return out

    def describe(self) -> dict:
        return {"name": self.name, "doc": self.doc, "seed_axes": list(self.seed_axes),
                "axes": {a.name: {"default": a.default, "doc": a.doc} for a in self.axes},
                "params": {p.name: {"default": p.default, "doc": p.doc} for p in self.params}}


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for mod in BUILTIN_MODULES:
            register_kind(importlib.import_module(f"{__package__}.{mod}").KIND)


def register_kind(kind: Kind) -> None:
    """Make ``kind`` available to grids by name (a name already taken by another kind is refused)."""
    if not isinstance(kind, Kind):
        raise TypeError(f"kind: expected a fp8lab.sweep.Kind, got {type(kind).__name__}")
    old = _KINDS.get(kind.name)
    if old is not None and old is not kind:
        raise ValueError(f"kind: the name {kind.name!r} is already registered")
    _KINDS[kind.name] = kind


def get_kind(name) -> Kind:
    _load_builtins()
    if not isinstance(name, str) or name not in _KINDS:
        raise ValueError(f"grid: kind: unknown kind {name!r}; expected one of {', '.join(sorted(_KINDS))}")
    return _KINDS[name]


def kinds() -> list[dict]:
    """Every registered kind: name, doc, axes (default, doc), parameters and seed axes."""
    _load_builtins()
    return [_KINDS[n].describe() for n in sorted(_KINDS)]


# -- value checks shared by the kinds ------------------------------------------------------------

def one_of(choices: Callable[[], Sequence[str]] | Sequence[str]) -> Callable[[Any], str]:
    """A string from a fixed list (or from a function that lists them, asked when a grid is checked)."""
    def check(v):
        opts = list(choices() if callable(choices) else choices)
        if not isinstance(v, str):
            raise TypeError(f"expected a string, one of {', '.join(opts)}; got {type(v).__name__} {v!r}")
        if v not in opts:
            raise ValueError(f"unknown value {v!r}; expected one of {', '.join(opts)}")
        return v
    return check


def integer(lo: int, hi: int, multiple_of: int = 1, also: Sequence[str] = ()) -> Callable[[Any], Any]:
    """An integer in [lo, hi] (and a multiple of ``multiple_of``), or one of the strings ``also``."""
    def check(v):
        if isinstance(v, str) and v in also:
            return v
        alt = f" or one of {', '.join(map(repr, also))}" if also else ""
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"expected an integer{alt}, got {type(v).__name__} {v!r}")
        if not lo <= v <= hi:
            raise ValueError(f"{v} is outside [{lo}, {hi}]")
        if v % multiple_of:
            raise ValueError(f"{v} is not a multiple of {multiple_of}")
        return v
    return check


def number(lo: float, hi: float) -> Callable[[Any], float]:
    """A finite number in [lo, hi] (JSON integers accepted and kept as written)."""
    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"expected a number, got {type(v).__name__} {v!r}")
        if not math.isfinite(v) or not lo <= v <= hi:
            raise ValueError(f"{v!r} is outside [{lo}, {hi}]")
        return v
    return check
