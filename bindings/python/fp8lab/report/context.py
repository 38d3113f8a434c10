"""What every section receives: the run's mode and seed, sized problem dimensions, a named random
stream per purpose, the progress bar, a place for figures, and ``map`` for independent cells of
heavy stages (run in order here, or on a sweep executor: a local process pool or Dask)."""
from __future__ import annotations

import zlib

import numpy as np

from .progress import Progress

MODES = ("quick", "default", "full")


class Context:
    def __init__(self, mode: str = "default", seed: int = 0, progress: Progress | None = None, executor=None):
        if mode not in MODES:
            raise ValueError(f"mode: {mode!r} is not one of {MODES}")
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed: {seed!r} must be a non-negative integer")
        self.mode = mode
        self.seed = int(seed)
        self.progress = progress if progress is not None else Progress(enabled=False)
        self.executor = executor  # an fp8lab.sweep Executor, or None: cells run in order in this process

    def map(self, fn, cells, label=None) -> list:
        """``[fn(*cell) for cell in cells]``, one progress step per finished cell (``label(cell)`` names
        it). With an executor the cells run there (``fn`` and the cells must pickle: a module-level
        function, arrays, numpy Generators); the results come back in cell order, so a section's
        numbers do not depend on where its cells ran. The first cell that raises stops the stage."""
        cells = list(cells)
        if self.executor is None:
            out = []
            for cell in cells:
                out.append(fn(*cell))
                self.progress.step(label(cell) if label else "")
            return out
        out = [None] * len(cells)
        for i, outcome, value in self.executor.imap_unordered(fn, cells):
            if outcome == "raised":
                raise value
            if outcome == "lost":
                raise RuntimeError(f"{getattr(fn, '__name__', fn)}: cell {i}: {value}")
            out[i] = value
            self.progress.step(label(cells[i]) if label else "")
        return out

    @property
    def quick(self) -> bool:
        return self.mode == "quick"

    @property
    def full(self) -> bool:
        return self.mode == "full"

    def pick(self, quick, default, full=None):
        """The value for this run's mode (full falls back to default)."""
        if self.mode == "quick":
            return quick
        if self.mode == "full" and full is not None:
            return full
        return default

    def rng(self, *keys) -> np.random.Generator:
        """An independent PCG64 stream for (seed, keys): the same keys give the same numbers in
        every run, whatever else the run computes (sections and modes do not share streams).
        Keys are hashed with CRC-32, which is stable across Python processes (hash() is not)."""
        words = [self.seed] + [zlib.crc32(str(k).encode()) for k in keys]
        return np.random.default_rng(np.random.SeedSequence(words))
