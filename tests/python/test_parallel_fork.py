"""The emulator's worker pool (common/parallel) across os.fork: a child forked after the pool has
started, or while another thread is inside a parallel call, runs parallel work to the same bits
without deadlock (a child that hangs is ended by SIGALRM and the test fails)."""
import os
import signal
import threading

import numpy as np
import pytest

import fp8lab

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")


def operands(seed):
    rng = np.random.default_rng(seed)
    pats = rng.integers(0, 256, size=(20000, 32), dtype=np.uint8)
    pats[(pats & 0x7F) == 0x7F] = 0  # no NaN
    a = fp8lab.decode(pats, "e4m3").astype(np.float32)
    return a, a[::-1].copy(), rng.standard_normal(20000).astype(np.float32)


def child_matches(a, b, c, want) -> bool:
    """Forks; the child computes fp8lab.dot on 3 threads and exits 0 when the bits match."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            signal.alarm(60)
            fp8lab.set_num_threads(3)
            got = fp8lab.dot(a, b, c)
            code = 0 if np.array_equal(got.view(np.uint32), want.view(np.uint32)) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_forked_child_runs_parallel_work():
    a, b, c = operands(1)
    before = fp8lab.num_threads()
    try:
        fp8lab.set_num_threads(1)
        want = fp8lab.dot(a, b, c)
        fp8lab.set_num_threads(3)
        np.testing.assert_array_equal(fp8lab.dot(a, b, c).view(np.uint32), want.view(np.uint32))  # the pool runs
        assert child_matches(a, b, c, want), "child of an idle pool"
        stop = threading.Event()

        def keep_busy():  # parallel calls without the GIL while the main thread forks
            while not stop.is_set():
                fp8lab.dot(a, b, c)

        busy = threading.Thread(target=keep_busy)
        busy.start()
        try:
            for i in range(5):
                assert child_matches(a, b, c, want), f"child forked while the pool was busy ({i})"
        finally:
            stop.set()
            busy.join()
    finally:
        fp8lab.set_num_threads(before)
