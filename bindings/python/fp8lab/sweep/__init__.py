"""Sweeps: a grid of named axes over an fp8lab operation, run on this machine or on a Dask cluster.

``fp8lab.sweep(grid, fn=..., executor=..., store=...)`` (the function; this package is
``importlib.import_module("fp8lab.sweep")``) and ``fp8lab sweep SPEC.json`` on the command line.

Modules by duty: grid.py (axes, tasks, seeds, the grid hash), kinds.py (task kinds and value
checks) with kind_gemm.py and kind_routing.py, execute.py (one task -> one record), executors.py
(serial, local process pool, Dask), store.py (the append-only JSONL result file), results.py
(reading results back), runner.py (the sweep loop), progress.py (tqdm), plot.py (figures).
"""
from .executors import DaskExecutor, Executor, PoolExecutor, SerialExecutor, make_executor
from .grid import Grid, Task, parse_grid
from .kinds import Axis, Kind, get_kind, kinds, register_kind
from .results import Results
from .runner import load_spec, sweep
from .store import ResultStore, StoreError, load, to_parquet

__all__ = ["Axis", "DaskExecutor", "Executor", "Grid", "Kind", "PoolExecutor", "ResultStore", "Results",
           "SerialExecutor", "StoreError", "Task", "get_kind", "kinds", "load", "load_spec", "make_executor",
           "parse_grid", "register_kind", "sweep", "to_parquet"]
