"""Which fp8lab APIs this build has. Sections ask here and say "not available in this build" for
what is missing instead of inventing numbers."""
from __future__ import annotations

import importlib
import types

import fp8lab


def has(*names: str) -> bool:
    """True when every dotted name (e.g. "gemm", "moe.route") resolves under the fp8lab package."""
    for name in names:
        obj = fp8lab
        parts = name.split(".")
        for i, part in enumerate(parts):
            if not hasattr(obj, part):
                try:
                    obj = importlib.import_module("fp8lab." + ".".join(parts[: i + 1]))
                    continue
                except ImportError:
                    return False
            obj = getattr(obj, part)
    return True


def get(name: str):
    obj = fp8lab
    parts = name.split(".")
    for i, part in enumerate(parts):
        if hasattr(obj, part):
            obj = getattr(obj, part)
        else:
            obj = importlib.import_module("fp8lab." + ".".join(parts[: i + 1]))
    # fp8lab.gemm is the function when the package re-exports it, else the module of the same name.
    if isinstance(obj, types.ModuleType) and hasattr(obj, parts[-1]):
        obj = getattr(obj, parts[-1])
    return obj


def missing(*names: str) -> list[str]:
    return [n for n in names if not has(n)]
