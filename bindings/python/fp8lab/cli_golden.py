"""``fp8lab golden record|check|diff`` and ``fp8lab verify``.

Exit codes (verify and golden check): 0 all bit-identical, 1 a violation (also when something else
in the run failed: the violation is never hidden), 2 usage or file error,
3 changed but within bound (``--accept within-bound`` turns 3 into 0).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from . import golden
from . import verification as verify_mod


def _print_results(results, as_json: bool, accept: bool) -> int:
    code = verify_mod.exit_code(results, accept)
    if as_json:
        json.dump({"exit_code": code, "results": [r.to_dict() for r in results]}, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        for r in results:
            text = r.error if r.kind == "error" else r.verdict.summary
            print(f"{r.kind.upper():14} {r.name}: {text}")
            if r.kind != "error" and r.kind != "bit-identical":
                for line in verify_mod.offender_lines(r.verdict):
                    print(f"{'':14} {line}")
            if r.inputs is not None and not (r.verdict and r.verdict.details.get("crash")):
                shapes = ", ".join(f"{k}{list(v.shape)}" for k, v in r.inputs.items())
                print(f"{'':14} shrunk counterexample: {shapes}")
        counts = {}
        for r in results:
            counts[r.kind] = counts.get(r.kind, 0) + 1
        print("summary: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) + f" -> exit {code}")
    return code


def _accept(args) -> bool:
    return getattr(args, "accept", None) == "within-bound"


def _record(args) -> int:
    if args.all:
        directory = Path(args.dir) if args.dir else golden.default_golden_dir()
        written = golden.record_all(directory, update=args.update)
        for p in written:
            print(f"recorded {p}")
        return 0
    if not args.op or not args.out:
        raise ValueError("record: give --op and --out (or --all)")
    spec = args.spec
    if spec and spec.startswith("@"):
        spec = Path(spec[1:]).read_text()
    fn = verify_mod.load_kernel(args.kernel, args.op) if args.kernel else None
    try:
        trace = golden.record(args.op, spec, args.seed, args.kind, fn=fn, producer=args.producer)
    finally:
        if fn is not None:
            fn.close()
    trace.write(args.out, update=args.update)
    print(f"recorded {args.out} ({args.op}, spec {golden.spec_hash(trace.spec)[:16]})")
    return 0


def _check(args) -> int:
    results, kernels = [], {}
    try:
        for path in args.traces:
            fn = None
            if args.kernel:
                op = args.op
                if op is None:  # the kernel implements the op each trace records
                    problem = verify_mod.session.trace_path_problem(Path(path))
                    if problem:
                        results.append(verify_mod.CaseResult(str(path), None, problem))
                        continue
                    try:
                        op = golden.read_trace(path, check_digests=False).op
                    except (ValueError, OSError) as err:
                        results.append(verify_mod.CaseResult(Path(path).name, None, str(err)))
                        continue
                if op not in kernels:
                    kernels[op] = verify_mod.load_kernel(args.kernel, op, args.timeout)
                fn = kernels[op]
            results.append(verify_mod.check_file(path, fn, args.op))
    finally:
        for k in kernels.values():
            k.close()
    results = [r for r in results if r is not None]
    if not results:
        raise ValueError(f"check: no trace of op {args.op!r} among the files given")
    return _print_results(results, args.json, _accept(args))


def _diff(args) -> int:
    for path in (args.a, args.b):
        problem = verify_mod.session.trace_path_problem(Path(path))
        if problem:
            raise ValueError(f"{path}: {problem}")
    result = golden.diff(args.a, args.b)
    if args.html:
        Path(args.html).write_text(result.html())
    if args.out:
        Path(args.out).write_text(result.markdown)
        print(f"wrote {args.out}: {result.verdict.kind}, {result.moved} of {result.compared} elements moved")
    else:
        sys.stdout.write(result.markdown)
    return {"bit-identical": 0, "within-bound": 3, "violation": 1}[result.verdict.kind]


def _verify(args) -> int:
    if args.cases < 0:
        raise ValueError(f"--cases: {args.cases} is negative")
    if args.seed < 0:
        raise ValueError(f"--seed: {args.seed} is negative")
    ops = args.op or None
    spec = args.spec
    if spec and spec.startswith("@"):
        spec = Path(spec[1:]).read_text()
    results = verify_mod.run(args.golden, args.cases, args.seed, ops, args.kernel, use_golden=not args.no_golden,
                             spec=spec, timeout=args.timeout, failures_dir=args.failures)
    if not results:
        raise ValueError("verify: nothing to check (no traces and no generated cases)")
    if args.junit:
        Path(args.junit).write_text(verify_mod.junit_xml(results, _accept(args)))
    return _print_results(results, args.json, _accept(args))


def add_parser(sub) -> None:
    g = sub.add_parser("golden", help="record, check and diff golden traces")
    gsub = g.add_subparsers(dest="golden_command", metavar="SUBCOMMAND")
    g.set_defaults(func=lambda a: (g.print_help(), 2)[1])

    p = gsub.add_parser("record", help="run the emulator and write a trace (atomically)")
    p.add_argument("--all", action="store_true", help="regenerate every fixture in fixtures/golden")
    p.add_argument("--dir", help="fixture folder for --all (default fixtures/golden)")
    p.add_argument("--op", help=f"operation ({', '.join(sorted(golden.OPERATIONS))})")
    p.add_argument("--spec", help="spec as JSON text or @file.json (default: the op's default spec)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kind", help="input generator kind (e.g. ties, extreme, ragged, mixed)")
    p.add_argument("--out", help="trace file to write")
    p.add_argument("--update", action="store_true", help="replace existing traces")
    p.add_argument("--kernel", help="record the outputs of LIB.so:SYMBOL (C ABI) instead of the emulator's "
                   "(e.g. a GPU kernel; needs --producer)")
    p.add_argument("--producer", help="what produced the outputs, e.g. 'H100 SXM, driver 550.54, my_gemm_v2'")
    p.set_defaults(func=_record)

    p = gsub.add_parser("check", help="recompute traces from their inputs and compare bits")
    p.add_argument("traces", nargs="+")
    p.add_argument("--kernel", help="check LIB.so:SYMBOL (C ABI, golden/fp8lab_kernel.h) instead of the emulator")
    p.add_argument("--op", help="only traces of this operation (default: each trace's own; --kernel implements it)")
    p.add_argument("--timeout", type=float, default=verify_mod.DEFAULT_TIMEOUT,
                   help=f"seconds a --kernel may take per trace (default {verify_mod.DEFAULT_TIMEOUT:g})")
    p.add_argument("--json", action="store_true", help="machine-readable results")
    p.add_argument("--accept", choices=["within-bound"], help="exit 0 on within-bound changes")
    p.set_defaults(func=_check)

    p = gsub.add_parser("diff", help="regression report (Markdown) between two traces of the same inputs")
    p.add_argument("a", help="before")
    p.add_argument("b", help="after")
    p.add_argument("--out", help="write the report here (default: stdout)")
    p.add_argument("--html", help="also write the report as a self-contained HTML page")
    p.set_defaults(func=_diff)

    p = sub.add_parser("verify", help="run every golden trace and N generated cases per operation")
    p.add_argument("--golden", help="trace folder (default fixtures/golden)")
    p.add_argument("--no-golden", action="store_true", help="generated cases only")
    p.add_argument("--cases", type=int, default=20, help="generated cases per operation (default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--op", action="append", help="only this operation (repeatable; required with --kernel)")
    p.add_argument("--kernel", help="LIB.so:SYMBOL implementing --op through the C ABI (golden/fp8lab_kernel.h)")
    p.add_argument("--spec", help="the spec (JSON or @file) --kernel implements; only traces recorded under it "
                   "are checked (default: the op's default spec)")
    p.add_argument("--timeout", type=float, default=verify_mod.DEFAULT_TIMEOUT,
                   help=f"seconds --kernel may take per case before it is a violation (default "
                   f"{verify_mod.DEFAULT_TIMEOUT:g}); the kernel runs in a worker process")
    p.add_argument("--failures", default="fp8lab-failures",
                   help="where the inputs of a case that crashed or timed out are saved as traces "
                   "(default ./fp8lab-failures)")
    p.add_argument("--junit", help="write JUnit XML here")
    p.add_argument("--json", action="store_true", help="machine-readable results on stdout")
    p.add_argument("--accept", choices=["within-bound"], help="exit 0 (not 3) when changes stay within bound")
    p.set_defaults(func=_verify)
