"""The Python benches' timer: the best of ``repeats`` wall-clock runs of ``fn`` (the run least
disturbed by the rest of the machine), in seconds. Imported as a sibling module (the benches run as
``python bench/bench_<name>.py``)."""
import time


def best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best
