"""float32 -> e4m3 (nearest-even, saturate) throughput: fp8lab.encode vs ml_dtypes astype, same run.

ml_dtypes' cast is non-saturating (values from 464 up become NaN), so the input is drawn inside
the finite range where the two agree bit for bit, and the bench checks they do before timing.
"""
import time

import ml_dtypes
import numpy as np

import fp8lab


def best_of(fn, repeats=5):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    n = 1 << 24
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(n) * 64).astype(np.float32)
    ours = fp8lab.encode(x, "e4m3")
    theirs = x.astype(ml_dtypes.float8_e4m3fn).view(np.uint8)
    mismatches = int(np.count_nonzero(ours != theirs))
    t_ml = best_of(lambda: x.astype(ml_dtypes.float8_e4m3fn))
    t_ours = best_of(lambda: fp8lab.encode(x, "e4m3"))
    fp8lab.set_num_threads(1)
    t_ours_1 = best_of(lambda: fp8lab.encode(x, "e4m3"))
    fp8lab.set_num_threads(0)
    print(f"float32 -> e4m3, {n} elements, mismatches vs ml_dtypes: {mismatches}")
    print(f"  ml_dtypes astype     : {n / t_ml / 1e6:9.1f} Melem/s")
    print(f"  fp8lab.encode ({fp8lab.num_threads()} thr): {n / t_ours / 1e6:9.1f} Melem/s   ratio {t_ml / t_ours:6.2f}x")
    print(f"  fp8lab.encode (1 thr): {n / t_ours_1 / 1e6:9.1f} Melem/s   ratio {t_ml / t_ours_1:6.2f}x")


if __name__ == "__main__":
    main()
