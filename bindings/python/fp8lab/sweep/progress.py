"""The sweep's progress bar (tqdm, on stderr): tasks done out of the grid's total, counting those
already in the store, with the number of failed tasks in its postfix; a line at the start and the
end where tqdm is not installed. Never touches the results."""
from __future__ import annotations

import contextlib
import sys


class _Bar:
    def __init__(self, bar):
        self._bar = bar
        self.errors = 0

    def update(self, error: bool = False) -> None:
        if error:
            self.errors += 1
        if self._bar is not None:
            if error:
                self._bar.set_postfix(errors=self.errors, refresh=False)
            self._bar.update(1)


@contextlib.contextmanager
def bar(total: int, initial: int, desc: str, enabled: bool = True):
    if not enabled:
        yield _Bar(None)
        return
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm comes with the `sweep` extra; the local pool works without it
        print(f"{desc}: {initial}/{total} tasks done, running the rest (pip install tqdm for a progress bar)",
              file=sys.stderr, flush=True)
        b = _Bar(None)
        yield b
        print(f"{desc}: done, {b.errors} task(s) with errors", file=sys.stderr, flush=True)
        return

    tty = bool(getattr(sys.stderr, "isatty", lambda: False)())
    # Off a terminal (CI logs) a redraw every 10 s instead of many per second keeps logs short.
    with tqdm(total=total, initial=initial, desc=desc, unit="task", file=sys.stderr, dynamic_ncols=True,
              mininterval=0.1 if tty else 10.0, smoothing=0.1) as t:
        yield _Bar(t)
