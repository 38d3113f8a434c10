"""The build and the machine: which kernel variants this fp8lab was compiled with, which one runs
(runtime CPU dispatch, emulator/common/isa.hpp), and the stage timer behind ``fp8lab profile``.

The variants (``portable``, ``avx2``, ``avx512``) give the same bits; they differ in speed. The best
one the CPU runs is chosen at the first call; ``FP8LAB_CPU=portable|avx2|avx512`` or
:func:`set_cpu` forces one (an error when this build lacks it or the CPU cannot run it).
"""
from __future__ import annotations

import sys

from . import _core


def build_info() -> dict:
    """``variants_built``, ``variants_runnable`` (built and supported by this CPU), ``cpu`` (the
    variant dispatched calls use), ``cpu_override`` (FP8LAB_CPU or None), ``variant_flags`` (each
    variant's compiler flags), ``version`` and ``compiler``."""
    return dict(_core.build_info())


def set_cpu(cpu: str | None) -> None:
    """Forces the kernel variant for this process (``None``: back to FP8LAB_CPU or the best one)."""
    _core.set_cpu(cpu)


def stage_table(before: dict, after: dict) -> str:
    """The time per stage between two ``_core.stage_seconds()`` readings, one line per stage."""
    rows = []
    for name, s in after.items():
        sec = s["seconds"] - before[name]["seconds"]
        calls = s["count"] - before[name]["count"]
        rows.append(f"  {name:<26} {sec * 1e3:10.2f} ms  ({calls} timed sections)")
    return "\n".join(rows)


class profiled:
    """``with profiled(): ...`` turns the stage timer on for the block and prints the time per
    stage to stderr at its end (FP8LAB_PROFILE=1 turns it on for the whole process instead)."""

    def __enter__(self):
        self._was = _core.profiling()
        _core.set_profiling(True)
        self._before = _core.stage_seconds()
        return self

    def __exit__(self, *exc):
        after = _core.stage_seconds()
        _core.set_profiling(self._was)
        print("fp8lab profile: time per stage (all calls)\n" + stage_table(self._before, after), file=sys.stderr)
        return False


# FP8LAB_CPU is checked when fp8lab is imported (ValueError naming it), not at the first kernel call.
build_info()
