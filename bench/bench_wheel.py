"""Benchmark: what a user gets. Builds the wheel and installs it into a fresh venv
(tools/wheel_venv.py: pyproject.toml's settings, no -march=native), then in that venv times
``fp8lab.gemm`` promoted (deepseek_v3_fp8_linear) at 1024^3 against that venv's numpy float32
matmul (sgemm) in the same process, with the dispatched kernel variant and with FP8LAB_CPU=portable
(what the wheel ran before runtime dispatch). Prints each ratio (goal >= 0.25x sgemm).

    python bench/bench_wheel.py [--size S] [--repeat N] [--work DIR]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import wheel_venv  # noqa: E402

TIMING = """
import json, time, numpy as np, fp8lab
S, R = {size}, {repeat}
rng = np.random.default_rng(0)
a = fp8lab.quantize(rng.standard_normal((S, S), dtype=np.float32), operand="a")
b = fp8lab.quantize(rng.standard_normal((S, S), dtype=np.float32), operand="b")
def best(fn, r):
    t = []
    for _ in range(r):
        t0 = time.perf_counter(); fn(); t.append(time.perf_counter() - t0)
    return min(t)
t_emu = best(lambda: fp8lab.gemm(a, b), R)
x, w = a.dequantize().astype(np.float32), b.dequantize().astype(np.float32)
t_sgemm = best(lambda: x @ w.T, R + 1)  # after the emulator (OpenBLAS threads spin after a call)
print(json.dumps({{"cpu": fp8lab.build_info()["cpu"], "threads": fp8lab.num_threads(), "emu": t_emu,
                  "sgemm": t_sgemm, "numpy": np.__version__}}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--work", type=Path, default=None, help="keep the venv here (default: a temporary folder)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        py, seconds = wheel_venv.installed(work)
        print(f"wheel built in {seconds['wheel build']:.0f} s, installed in a fresh venv in "
              f"{seconds['venv + pip install']:.0f} s")
        flop = 2.0 * args.size ** 3
        for label, env, repeat in (("dispatched", {}, args.repeat), ("FP8LAB_CPU=portable", {"FP8LAB_CPU": "portable"}, 1)):
            r = wheel_venv.run_json(py, TIMING.format(size=args.size, repeat=repeat), cwd=work, **env)
            print(f"pip-installed wheel, {label} (variant {r['cpu']}, {r['threads']} threads, numpy {r['numpy']}), "
                  f"promoted GEMM {args.size}^3:")
            print(f"  fp8lab.gemm:  {r['emu']:8.3f} s  {flop / r['emu'] * 1e-9:8.2f} GFLOP/s-equivalent")
            print(f"  numpy sgemm:  {r['sgemm']:8.3f} s  {flop / r['sgemm'] * 1e-9:8.2f} GFLOP/s")
            print(f"  ratio emulated / sgemm: {r['sgemm'] / r['emu']:.3f}x (goal >= 0.25x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
