"""``fp8lab report``: compute the accuracy report and write index.html, report.md, results.json."""
from __future__ import annotations

import sys
import time


def _report(args) -> int:
    from . import report

    mode = "quick" if args.quick else "full" if args.full else "default"
    sections = None
    if args.sections:
        sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    t0 = time.monotonic()
    executor = None  # heavy stages in this process unless --workers or --dask says otherwise
    if args.dask:
        executor = "dask:local" if args.dask == "local" else args.dask
    elif args.workers:
        executor = "pool"
    res = report.run(args.out, mode=mode, seed=args.seed, sections=sections, progress=not args.quiet,
                     executor=executor, workers=args.workers)
    print(f"fp8lab report: wrote {res['index']} (+ report.md, results.json) in {time.monotonic() - t0:.1f}s",
          file=sys.stderr)
    if res["failed"]:
        print(f"fp8lab report: sections that failed: {', '.join(res['failed'])}", file=sys.stderr)
        return 1
    return 0


def _seed(text: str) -> int:
    try:
        v = int(text, 0)
    except ValueError:
        raise ValueError(f"--seed: {text!r} is not an integer") from None
    if v < 0 or v >= 2**63:
        raise ValueError(f"--seed: {v} is outside [0, 2^63)")
    return v


def add_parser(sub) -> None:
    from .report import SECTION_IDS

    p = sub.add_parser("report", help="measure what each FP8 training trick costs; write an HTML/Markdown report",
                       description="Compute the accuracy report (numbers from seeded inputs against exact "
                                   "references) and write DIR/index.html, DIR/report.md and DIR/results.json.")
    p.add_argument("--out", default="report", metavar="DIR", help="output folder (created; default: report)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes (under a minute; used by the tests)")
    size.add_argument("--full", action="store_true", help="larger sizes (K up to 65536; slower)")
    p.add_argument("--seed", type=str, default="0", help="random seed (default 0); same seed, same numbers")
    p.add_argument("--sections", default="", metavar="LIST",
                   help=f"comma-separated subset of: {','.join(SECTION_IDS)}")
    p.add_argument("--quiet", action="store_true", help="no progress output on stderr")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="run the heavy stages' cells on a local pool of N processes (same numbers; see fp8lab sweep)")
    p.add_argument("--dask", metavar="local|tcp://HOST:PORT", help="run the heavy stages' cells on Dask")

    def func(args):
        args.seed = _seed(args.seed)
        if args.workers is not None and args.workers < 1:
            raise ValueError(f"--workers: expected at least 1, got {args.workers}")
        return _report(args)

    p.set_defaults(func=func)
