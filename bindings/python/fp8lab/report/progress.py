"""A progress bar on stderr for the report's long stages.

On a terminal it redraws one line per stage; otherwise (CI logs, pytest) it prints a line at the
start and end of each stage only, so logs stay short. It never writes to stdout and never touches
the numbers, so results do not depend on whether it is shown.
"""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, enabled: bool = True, stream=None):
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._stage = None
        self._total = 0
        self._done = 0
        self._t0 = 0.0
        self.timings: dict[str, float] = {}

    def stage(self, name: str, total: int) -> None:
        self.finish()
        self._stage, self._total, self._done, self._t0 = name, max(int(total), 1), 0, time.monotonic()
        if self.enabled and not self.tty:
            print(f"[report] {name}: {self._total} steps", file=self.stream, flush=True)
        self._draw("")

    def step(self, label: str = "") -> None:
        self._done = min(self._done + 1, self._total)
        self._draw(label)

    def _draw(self, label: str) -> None:
        if not (self.enabled and self.tty and self._stage):
            return
        width = 30
        filled = width * self._done // self._total
        bar = "#" * filled + "-" * (width - filled)
        elapsed = time.monotonic() - self._t0
        line = f"\r[report] {self._stage:<14} [{bar}] {self._done}/{self._total} {elapsed:6.1f}s {label[:40]:<40}"
        self.stream.write(line)
        self.stream.flush()

    def finish(self) -> None:
        if self._stage is None:
            return
        elapsed = time.monotonic() - self._t0
        self.timings[self._stage] = elapsed
        if self.enabled:
            if self.tty:
                self.stream.write("\n")
            print(f"[report] {self._stage}: done in {elapsed:.1f}s", file=self.stream, flush=True)
        self._stage = None
