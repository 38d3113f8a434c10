"""``fp8lab sweep``: run a grid (``fp8lab sweep SPEC.json``), draw its figures (``fp8lab sweep plot
RESULTS.jsonl``), summarise a result file (``fp8lab sweep show RESULTS.jsonl``) or list the task
kinds (``fp8lab sweep kinds``).

Exit codes: 0 every task succeeded; 1 the sweep completed but some tasks are recorded with an
error; 2 usage or file error (a bad grid, a result file of another grid, no scheduler answering)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

ACTIONS = ("plot", "show", "kinds")

USAGE = """fp8lab sweep SPEC.json [--out RESULTS.jsonl] [--workers N | --serial | --dask local|tcp://HOST:PORT]
       fp8lab sweep plot RESULTS.jsonl [--fig-dir DIR] [--x AXIS] [--y VALUE] [--agg mean|median|max|min] [--panel AXIS]
       fp8lab sweep show RESULTS.jsonl [--json]
       fp8lab sweep kinds [--json]"""

EPILOG = """SPEC.json is a grid: {"kind": "gemm_error", "axes": {"K": [1024, 4096], "nc": [32, 128]},
"params": {"M": 16, "N": 16}, "samples": 4, "shard": 1, "seed": 0} (or "fn": "module:function" instead of
a kind). Results go to RESULTS.jsonl (default: SPEC.results.jsonl next to the spec); running the same
spec again computes only the tasks the file does not hold yet."""


def _default_out(spec: Path) -> Path:
    name = spec.name[:-5] if spec.name.endswith(".json") else spec.name
    return spec.with_name(name + ".results.jsonl")


def _only(args, allowed: set, action: str) -> None:
    # One parser serves every form; an option that belongs to another form is a usage error, not ignored.
    owners = {"out": "run", "workers": "run", "serial": "run", "dask": "run", "dask_timeout": "run",
              "retry_errors": "run", "fig_dir": "plot", "x": "plot", "y": "plot", "agg": "plot", "panel": "plot",
              "json": "show/kinds/run"}
    for dest, owner in owners.items():
        if dest in allowed:
            continue
        v = getattr(args, dest)
        if v not in (None, False):
            raise ValueError(f"--{dest.replace('_', '-')} does not apply to `fp8lab sweep {action}` "
                             f"(it belongs to: {owner})")


def _run(args) -> int:
    from .sweep import load_spec, sweep

    if len(args.target) != 1:
        raise ValueError(f"expected one SPEC.json, got {len(args.target)} arguments: {' '.join(args.target)}")
    _only(args, {"out", "workers", "serial", "dask", "dask_timeout", "retry_errors", "json"}, "SPEC.json")
    if args.serial and (args.workers is not None or args.dask is not None):
        raise ValueError("--serial runs every task in this process: it takes neither --workers nor --dask")
    if args.workers is not None and args.dask not in (None, "local"):
        raise ValueError("--workers sizes the local pool or a --dask local cluster; a running scheduler "
                         "has the workers it has")
    spec_path = Path(args.target[0])
    spec = load_spec(spec_path)
    out = Path(args.out) if args.out else _default_out(spec_path)
    if args.serial:
        executor = "serial"
    elif args.dask is not None:
        executor = "dask:local" if args.dask == "local" else args.dask
    else:
        executor = "pool"
    timeout = 10.0 if args.dask_timeout is None else args.dask_timeout
    res = sweep(spec, executor=executor, store=out, workers=args.workers, progress=not args.quiet,
                retry_errors=args.retry_errors, timeout=timeout)
    c = res.counts()
    summary = {**c, "results": str(out), "digest": res.digest(), "grid_hash": res.grid_hash}
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True))
    else:
        print(f"fp8lab sweep: {c['tasks']} tasks: {c['computed']} computed now, {c['resumed']} already in "
              f"{out}; {c['error']} with errors")
        print(f"digest {summary['digest']}")
    for r in res.errors[:5]:
        print(f"fp8lab sweep: task {r['index']} {json.dumps(r['point'], sort_keys=True)}: {r['error']}",
              file=sys.stderr)
    if len(res.errors) > 5:
        print(f"fp8lab sweep: ... and {len(res.errors) - 5} more task errors (fp8lab sweep show {out})",
              file=sys.stderr)
    return 1 if c["error"] or c["missing"] else 0


def _plot(args) -> int:
    from .sweep.plot import plot

    if len(args.target) != 2:
        raise ValueError("usage: fp8lab sweep plot RESULTS.jsonl [--fig-dir DIR] [--x AXIS] [--y VALUE]")
    _only(args, {"fig_dir", "x", "y", "agg", "panel"}, "plot")
    for p in plot(args.target[1], args.fig_dir, x=args.x, y=args.y, agg=args.agg or "mean", panel=args.panel):
        print(p)
    return 0


def _show(args) -> int:
    from .sweep import load

    if len(args.target) != 2:
        raise ValueError("usage: fp8lab sweep show RESULTS.jsonl [--json]")
    _only(args, {"json"}, "show")
    res = load(args.target[1])
    c = res.counts()
    info = {**{k: c[k] for k in ("tasks", "ok", "error", "missing")}, "digest": res.digest(),
            "grid": res.grid_spec, "grid_hash": res.grid_hash, "version": res.header.get("version"),
            "errors": [{"index": r["index"], "point": r["point"], "error": r["error"]} for r in res.errors]}
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return 0
    print(f"grid {res.grid_hash[:12]} ({res.grid_spec.get('kind') or res.grid_spec.get('fn')}): {c['tasks']} tasks, "
          f"{c['ok']} ok, {c['error']} errors, {c['missing']} missing")
    print(f"digest {info['digest']}")
    for e in info["errors"]:
        print(f"task {e['index']} {json.dumps(e['point'], sort_keys=True)}: {e['error']}")
    return 0


def _kinds(args) -> int:
    from .sweep import kinds

    _only(args, {"json"}, "kinds")
    ks = kinds()
    if args.json:
        print(json.dumps(ks, indent=2, sort_keys=True, default=str))
        return 0
    for k in ks:
        print(f"{k['name']}: {k['doc']}")
        for name, a in sorted(k["axes"].items()):
            print(f"  axis  {name:<12} default {json.dumps(a['default']):<14} {a['doc']}")
        for name, a in sorted(k["params"].items()):
            print(f"  param {name:<12} default {json.dumps(a['default']):<14} {a['doc']}")
    return 0


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"--dask-timeout: {text!r} is not a number of seconds") from None
    if not v > 0 or v != v or v == float("inf"):
        raise ValueError(f"--dask-timeout: expected a positive, finite number of seconds, got {text}")
    return v


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise ValueError(f"--workers: {text!r} is not an integer") from None
    if v < 1:
        raise ValueError(f"--workers: expected at least 1, got {v}")
    return v


def add_parser(sub) -> None:
    import argparse

    p = sub.add_parser("sweep", help="run a grid of named axes (local pool or Dask), plot or show its results",
                       usage=USAGE, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Run every task of a grid that its result file does not hold yet, on a local "
                                   "process pool (default), in this process, or on a Dask cluster.")
    p.add_argument("target", nargs="+", metavar="SPEC.json | plot RESULTS | show RESULTS | kinds")
    run = p.add_argument_group("running a grid")
    run.add_argument("--out", metavar="RESULTS.jsonl", help="result file (default: SPEC.results.jsonl)")
    run.add_argument("--workers", type=str, default=None, metavar="N",
                     help="local pool size, or LocalCluster size with --dask local (default: CPU count)")
    run.add_argument("--serial", action="store_true", help="run every task in this process")
    run.add_argument("--dask", metavar="local|tcp://HOST:PORT",
                     help="run on Dask: 'local' starts a distributed.LocalCluster, an address connects to a scheduler")
    run.add_argument("--dask-timeout", type=str, default=None, metavar="S",
                     help="seconds to wait for the scheduler to answer (default 10)")
    run.add_argument("--retry-errors", action="store_true", help="run again the tasks recorded with an error")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    pl = p.add_argument_group("plot")
    pl.add_argument("--fig-dir", metavar="DIR", help="where the PNG files go (default: next to the result file)")
    pl.add_argument("--x", metavar="AXIS", help="axis on the x axis (default: the kind's standard figures)")
    pl.add_argument("--y", metavar="VALUE", help="result value on the y axis")
    pl.add_argument("--agg", choices=("mean", "median", "max", "min"), default=None,
                    help="how the samples of a point combine (default mean)")
    pl.add_argument("--panel", metavar="AXIS", help="one subplot per value of this axis")
    p.add_argument("--json", action="store_true", help="machine-readable output (run, show, kinds)")

    def func(args):
        if args.workers is not None:
            args.workers = _positive_int(args.workers)
        if args.dask_timeout is not None:
            args.dask_timeout = _positive_float(args.dask_timeout)
        action = args.target[0]
        try:
            if action == "plot":
                return _plot(args)
            if action == "show":
                return _show(args)
            if action == "kinds":
                if len(args.target) != 1:
                    raise ValueError("usage: fp8lab sweep kinds [--json]")
                return _kinds(args)
            return _run(args)
        except ImportError as err:  # an optional package (distributed, pyarrow, tqdm): one line, exit 2
            raise ValueError(str(err)) from None

    p.set_defaults(func=func)
