"""Running one task where it lands (this process, a pool worker or a Dask worker) and turning what
happened into a result record: the values on success, the error and its traceback otherwise. A task
that raises never takes the sweep down; a worker that dies is reported by the executor instead."""
from __future__ import annotations

import os
import socket
import time
import traceback

import numpy as np


def to_json_value(v, where: str = "value"):
    """Numpy scalars and arrays as plain JSON values; anything JSON cannot hold raises TypeError."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v)
    if isinstance(v, np.ndarray):
        return to_json_value(v.tolist(), where)
    if isinstance(v, (list, tuple)):
        return [to_json_value(x, f"{where}[{i}]") for i, x in enumerate(v)]
    if isinstance(v, dict):
        bad = [k for k in v if not isinstance(k, str)]
        if bad:
            raise TypeError(f"{where}: keys must be strings, got {bad[0]!r}")
        return {k: to_json_value(x, f"{where}.{k}") for k, x in v.items()}
    raise TypeError(f"{where}: {type(v).__name__} is not a JSON value (numbers, strings, lists, dicts)")


def error_record(task, message: str, tb: str = "", attempts: int = 1) -> dict:
    return {**task.to_json(), "status": "error", "error": message, "traceback": tb, "attempts": attempts}


def run_task(runner, task, threads: int | None = None) -> dict:
    """``runner(task)`` as a record. ``threads``: fp8lab's thread count in this process (1 on pool and
    Dask workers so that N workers do not start N x cores threads; results never depend on it)."""
    if threads is not None:
        from ..formats import num_threads, set_num_threads
        if num_threads() != threads:
            set_num_threads(threads)
    t0 = time.perf_counter()
    try:
        values = runner(task)
        if not isinstance(values, dict):
            raise TypeError(f"the task function returned {type(values).__name__}; expected a dict of results")
        values = to_json_value(values, "result")
        rec = {**task.to_json(), "status": "ok", "values": values}
    except Exception as err:  # recorded, the sweep goes on (a BaseException such as KeyboardInterrupt stops it)
        rec = error_record(task, f"{type(err).__name__}: {err}", traceback.format_exc(limit=8))
    rec["elapsed_s"] = round(time.perf_counter() - t0, 6)
    rec["worker"] = f"{socket.gethostname()}:{os.getpid()}"
    return rec
