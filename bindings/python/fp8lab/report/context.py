"""What every section receives: the run's mode and seed, sized problem dimensions, a named random
stream per purpose, the progress bar, and a place for figures."""
from __future__ import annotations

import zlib

import numpy as np

from .progress import Progress

MODES = ("quick", "default", "full")


class Context:
    def __init__(self, mode: str = "default", seed: int = 0, progress: Progress | None = None):
        if mode not in MODES:
            raise ValueError(f"mode: {mode!r} is not one of {MODES}")
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed: {seed!r} must be a non-negative integer")
        self.mode = mode
        self.seed = int(seed)
        self.progress = progress if progress is not None else Progress(enabled=False)

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
