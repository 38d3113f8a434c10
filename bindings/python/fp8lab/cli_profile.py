"""``fp8lab profile``: where a call's time goes (operand preparation, representability checks,
kernel, output rounding; emulator/common/profile.hpp). ``fp8lab profile gemm --shape M N K`` runs a
quantised GEMM through ``fp8lab.gemm`` (the Python path a user calls); ``fp8lab profile
<subcommand> [args]`` runs any other subcommand with the stage timer on. Each GEMM call prints a
line; the totals follow. FP8LAB_PROFILE=1 does the same for any program."""
from __future__ import annotations

import argparse
import time

from . import _args
from .system import build_info, profiled


def _gemm(argv: list[str]) -> int:
    import numpy as np

    from . import blockgemm, quant

    p = argparse.ArgumentParser(prog="fp8lab profile gemm",
                                description="a quantised GEMM through fp8lab.gemm, timed per stage")
    p.add_argument("--shape", type=int, nargs=3, metavar=("M", "N", "K"), default=[1024, 1024, 1024])
    p.add_argument("--recipe", default=None, help="a GEMM recipe (fp8lab.recipes()); default deepseek_v3_fp8_linear")
    p.add_argument("--repeat", type=int, default=1)
    args = p.parse_args(argv)
    M, N, K = (_args.integer(n, v, 1, 1 << 20) for n, v in zip(("M", "N", "K"), args.shape))
    repeat = _args.integer("repeat", args.repeat, 1, 1000)
    rng = np.random.default_rng(0)
    a = quant.quantize(rng.standard_normal((M, K), dtype=np.float32), recipe=args.recipe, operand="a")
    b = quant.quantize(rng.standard_normal((N, K), dtype=np.float32), recipe=args.recipe, operand="b")
    print(f"fp8lab profile gemm {M}x{N}x{K}, kernel variant {build_info()['cpu']}")
    with profiled():
        for _ in range(repeat):
            t0 = time.perf_counter()
            blockgemm.gemm(a, b, recipe=args.recipe)
            print(f"  call: {(time.perf_counter() - t0) * 1e3:.2f} ms wall (Python included)")
    return 0


def _profile(args) -> int:
    rest = list(args.rest)
    if not rest:
        raise ValueError("profile: name what to run: 'gemm [--shape M N K]' or another fp8lab subcommand")
    if rest[0] == "gemm":
        return _gemm(rest[1:])
    if rest[0] == "profile":
        raise ValueError("profile: cannot profile itself")
    from . import cli

    with profiled():
        return cli.main(rest)


def add_parser(sub) -> None:
    p = sub.add_parser("profile", help="time per stage of a call (operand preparation, checks, kernel, output rounding)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("rest", nargs=argparse.REMAINDER, help="gemm [--shape M N K] | <subcommand> [args]")
    p.set_defaults(func=_profile)
