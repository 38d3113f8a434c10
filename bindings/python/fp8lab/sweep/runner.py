"""``fp8lab.sweep(grid, fn=..., executor=..., store=...)``: run every task of a grid that its result
store does not hold yet, record each as it finishes, and return the results."""
from __future__ import annotations

import importlib
import pickle
from pathlib import Path

from .execute import error_record, run_task
from .executors import DaskExecutor, PoolExecutor, check_executor, make_executor
from .grid import Grid, parse_grid
from .kinds import get_kind
from .results import Results
from .store import ResultStore


def resolve_fn(name: str):
    """The function named "module:function" (attributes may be dotted)."""
    mod, _, attr = name.partition(":")
    try:
        obj = importlib.import_module(mod)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"grid: fn: cannot import {name!r} ({type(err).__name__}: {err})") from None
    if not callable(obj):
        raise ValueError(f"grid: fn: {name!r} is not callable")
    return obj


def _runner(grid: Grid, fn):
    if fn is not None:
        return fn
    if grid.kind is not None:
        return get_kind(grid.kind).run
    return resolve_fn(grid.fn)


def sweep(grid, fn=None, executor=None, store=None, workers: int | None = None, progress: bool = True,
          retry_errors: bool = False, timeout: float = 10.0) -> Results:
    """Run a grid of named axes and return its ``Results``.

    grid: a dict (``parse_grid``'s format: ``{"kind": "gemm_error", "axes": {"K": [1024, 4096],
      "nc": [32, 128]}, "samples": 4}``) or a parsed ``Grid``.
    fn: for a grid without a kind, the function ``fn(task) -> dict`` of JSON values computing
      ``task.lo .. task.hi - 1`` of ``task.point``; sample j's random numbers come from
      ``task.rng(j)``. For pool or Dask executors it must be importable (module level).
    executor: None or "pool" (a local process pool: the default, no server), "serial", an int
      (pool size), "dask:local" (a LocalCluster here), "tcp://HOST:PORT" (a running Dask
      scheduler; ConnectionError after ``timeout`` s without an answer), a distributed.Client,
      or an ``Executor``.
    store: the result file (JSON Lines). With a store, finished tasks are skipped (a killed sweep
      resumes where it stopped) and a store of a different grid is refused; without one, results
      stay in memory.
    retry_errors: run again the tasks recorded with an error (by default they count as done).
    Returns ``Results``: ``.records``, ``.counts()`` (computed in this call, resumed, errors),
    ``.digest()`` (equal digests: bit-identical numbers), ``.rows()``, ``.table(...)``.
    """
    check_executor(executor)
    if not isinstance(grid, Grid):
        grid = parse_grid(grid, fn=fn)
    runner = _runner(grid, fn)
    st = ResultStore(store, grid) if store is not None else None
    try:
        return _run(grid, runner, executor, st, workers, progress, retry_errors, timeout)
    finally:
        if st is not None:
            st.close()


def _run(grid, runner, executor, st, workers, progress, retry_errors, timeout) -> Results:
    from .. import __version__
    from .progress import bar

    header = st.header if st is not None else {"fp8lab_sweep": 1, "grid": grid.to_json(), "grid_hash": grid.hash,
                                               "version": __version__}
    records = dict(st.records) if st is not None else {}
    done = st.done(retry_errors) if st is not None else set()
    todo = [t for t in grid.tasks() if t.index not in done]
    resumed = len(grid) - len(todo)
    if not todo:
        return Results(header, records, computed=0, resumed=resumed, total=len(grid))
    ex, owned = make_executor(executor, workers, timeout)
    try:
        if isinstance(ex, PoolExecutor):
            try:
                pickle.dumps(runner)
            except Exception as err:
                raise TypeError(f"fn: {runner!r} cannot be sent to pool worker processes ({err}); define it at "
                                "module level, or use executor='serial' or a Dask executor") from None
        threads = 1 if isinstance(ex, (PoolExecutor, DaskExecutor)) else None
        computed = 0
        with bar(len(grid), resumed, f"sweep {grid.kind or grid.fn}", progress) as pb:
            for i, outcome, value in ex.imap_unordered(run_task, [(runner, t, threads) for t in todo]):
                task = todo[i]
                if outcome == "ok":
                    rec = value
                elif outcome == "lost":
                    rec = error_record(task, f"WorkerLost: {value}")
                else:  # run_task catches the task's own exceptions; this is the executor failing to run it
                    rec = error_record(task, f"{type(value).__name__}: {value}")
                records[task.index] = rec
                if st is not None:
                    st.append(rec)
                computed += 1
                pb.update(rec["status"] == "error")
    finally:
        if owned:
            ex.close()
    return Results(header, records, computed=computed, resumed=resumed, total=len(grid))


def load_spec(path) -> dict:
    """Read a SPEC.json grid file (errors name the file and the problem)."""
    import json

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise OSError(f"spec: cannot read {p}: {err.strerror or err}") from None
    try:
        spec = json.loads(text)
    except ValueError as err:
        raise ValueError(f"spec: {p} is not valid JSON ({err})") from None
    if not isinstance(spec, dict):
        raise ValueError(f"spec: {p} must hold a JSON object (the grid), got {type(spec).__name__}")
    return spec


