"""Task functions for the sweep tests: module-level, so pool and Dask workers import them by name
(pytest puts this folder on sys.path, and spawned workers inherit sys.path)."""
import os
import signal
import time
from pathlib import Path


def draws(task):
    """Per sample: the first three float64 draws of its stream and the point's axes echoed back."""
    return {"x": [task.rng(i).standard_normal(3).tolist() for i in task.samples],
            "a": task.point.get("a"), "b": task.point.get("b")}


def raises_on_b2(task):
    if task.point["b"] == 2:
        raise ArithmeticError(f"refusing b=2 at a={task.point['a']}")
    return draws(task)


def slow(task):
    """draws() after a pause (params.sleep seconds): gives a test time to kill the sweep mid-run."""
    time.sleep(task.params.get("sleep", 0.2))
    return draws(task)


def kill_worker_once(task):
    """SIGKILLs its own process the first time task params.victim runs (a marker file records that it
    did), mid-sweep; every later attempt computes normally."""
    if task.index == task.params["victim"]:
        marker = Path(task.params["marker"])
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pass
        else:
            os.close(fd)
            os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(task.params.get("sleep", 0.0))
    return draws(task)


def kill_worker(task):
    """Task params.once SIGKILLs its process the first time only (marker file params.marker); task
    params.always does so every time."""
    if task.index == task.params["always"]:
        os.kill(os.getpid(), signal.SIGKILL)
    if task.index == task.params["once"]:
        return kill_worker_once(task.__class__(task.index, task.point, {**task.params, "victim": task.index},
                                               task.seed, task.lo, task.hi))
    return draws(task)


def not_json(task):
    return {"x": object()}
