"""Where tasks run: in this process, on a local process pool (the embedded default: no server), or
on a Dask cluster (``distributed``: a LocalCluster started here, or a running scheduler).

Every executor has ``imap_unordered(fn, items)``, which yields ``(i, outcome, value)`` as items
finish: outcome "ok" (value = fn's result), "raised" (value = the exception fn raised) or "lost"
(value = a message: the worker running it died too often). Results never depend on the executor:
a task's numbers are a function of the task alone (seeds and index ranges, grid.py).

Worker deaths. A pool worker that dies breaks a ``ProcessPoolExecutor`` and every task in flight
with it; the pool is rebuilt and those tasks are re-run one at a time, so a task that kills its
worker again is identified exactly and, after ``max_crashes`` deaths, reported as lost while the
others complete. On Dask the scheduler re-runs a dead worker's tasks elsewhere; a task that takes
down ``distributed.scheduler.allowed-failures`` + 1 workers comes back as ``KilledWorker`` (lost).
"""
from __future__ import annotations

import collections
import concurrent.futures as cf
import importlib.util
from concurrent.futures.process import BrokenProcessPool
import multiprocessing
import os
import re
import threading
import time
import uuid


class Executor:
    name = "executor"
    workers = 1
    threads = None  # fp8lab threads per task (None: leave the process's setting)

    def imap_unordered(self, fn, items):
        raise NotImplementedError

    def map(self, fn, items) -> list:
        """``[fn(x) for x in items]`` on this executor, in order; the first exception is raised."""
        items = list(items)
        out: list = [None] * len(items)
        for i, outcome, value in self.imap_unordered(fn, [(x,) for x in items]):
            if outcome == "raised":
                raise value
            if outcome == "lost":
                raise RuntimeError(f"item {i}: {value}")
            out[i] = value
        return out

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SerialExecutor(Executor):
    """Every task in this process, in index order."""
    name = "serial"

    def imap_unordered(self, fn, items):
        for i, args in enumerate(items):
            try:
                value = fn(*args)
            except Exception as err:
                yield i, "raised", err
                continue
            yield i, "ok", value


def _exit_with_parent(parent: int) -> None:
    # A ProcessPoolExecutor worker outlives a parent killed with SIGKILL (it waits on its queue
    # forever); a killed sweep must not leave orphans, so each worker leaves when its parent does.
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _init_worker(threads, parent):
    # Imported once per worker so that the first task does not pay for it; fp8lab's own thread pool
    # is sized to `threads` so N workers do not each start one thread per core.
    from ..formats import set_num_threads
    if threads:
        set_num_threads(threads)
    threading.Thread(target=_exit_with_parent, args=(parent,), name="fp8lab-parent-watch", daemon=True).start()


class PoolExecutor(Executor):
    """A local pool of ``workers`` processes (default: the CPU count), started with "spawn" so that
    a worker never inherits a forked copy of a threaded parent (numpy's BLAS threads). The pool is
    kept between calls until ``close()`` (a sweep closes the pools it made itself)."""
    name = "pool"

    def __init__(self, workers: int | None = None, threads: int = 1, max_crashes: int = 2):
        if workers is None:
            workers = os.cpu_count() or 1
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers: expected a positive integer, got {workers!r}")
        self.workers, self.threads, self.max_crashes = workers, threads, max_crashes
        self._pool = None

    def _new_pool(self):
        return cf.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                      initializer=_init_worker, initargs=(self.threads, os.getpid()))

    def imap_unordered(self, fn, items):
        items = list(items)
        queue = collections.deque(range(len(items)))
        suspects: collections.deque = collections.deque()  # in flight when a worker died: re-run alone
        crashes: collections.Counter = collections.Counter()
        window = 2 * self.workers
        inflight: dict = {}
        alone = None  # the suspect running by itself, if any
        try:
            while queue or suspects or inflight:
                if self._pool is None:
                    self._pool = self._new_pool()
                if suspects:
                    if not inflight:
                        alone = suspects.popleft()
                        inflight[self._pool.submit(fn, *items[alone])] = alone
                else:
                    while queue and len(inflight) < window:
                        i = queue.popleft()
                        inflight[self._pool.submit(fn, *items[i])] = i
                done, _ = cf.wait(inflight, return_when=cf.FIRST_COMPLETED)
                broken = []
                for fut in done:
                    i = inflight.pop(fut)
                    try:
                        value = fut.result()
                    except BrokenProcessPool:
                        broken.append(i)
                        continue
                    except Exception as err:
                        yield i, "raised", err
                        continue
                    yield i, "ok", value
                if not broken:
                    alone = None
                    continue
                broken += inflight.values()  # every task in flight went down with the pool
                inflight.clear()
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
                if broken == [alone]:
                    crashes[alone] += 1
                    if crashes[alone] >= self.max_crashes:
                        yield alone, "lost", f"its worker process died {crashes[alone]} times running it"
                    else:
                        suspects.appendleft(alone)
                else:
                    suspects.extend(sorted(broken))
                alone = None
        finally:
            if inflight:  # abandoned midway (an error or a break in the caller): nothing left running
                self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


_ADDRESS = re.compile(r"^(tcp|tls)://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.\-]+):(\d{1,5})$")


def check_address(address) -> str:
    if not isinstance(address, str) or not _ADDRESS.match(address) or not 0 < int(address.rsplit(":", 1)[1]) < 65536:
        raise ValueError(f"dask: {address!r} is not a scheduler address; expected 'local' or "
                         "tcp://HOST:PORT (e.g. tcp://127.0.0.1:8786)")
    return address


def connect(address: str, timeout: float):
    """A ``distributed.Client`` for the scheduler at ``address``, or ConnectionError once ``timeout``
    seconds pass without an answer. Client's own timeout covers a refused connection but not a peer
    that accepts and never speaks, so the connection is made in a thread and abandoned at the deadline."""
    from distributed import Client

    check_address(address)
    if not timeout > 0:
        raise ValueError(f"dask timeout: expected a positive number of seconds, got {timeout!r}")
    box: dict = {}

    def attempt():
        try:
            box["client"] = Client(address, timeout=timeout, set_as_default=False)
        except BaseException as err:  # handed to the caller below
            box["error"] = err

    th = threading.Thread(target=attempt, name="fp8lab-dask-connect", daemon=True)
    th.start()
    th.join(timeout + 1.0)
    if "client" in box:
        return box["client"]
    why = f" ({type(box['error']).__name__}: {box['error']})" if "error" in box else ""
    raise ConnectionError(f"dask: no Dask scheduler answered at {address} within {timeout:g} s{why}; "
                          "is `dask scheduler` running there and reachable?")


class DaskExecutor(Executor):
    """Tasks on a Dask cluster: ``address="local"`` starts a ``distributed.LocalCluster`` of ``workers``
    single-threaded worker processes on the loopback interface (closed with the executor); a
    tcp:// address connects to a running scheduler; ``client=`` uses a Client you made (left open).
    Workers must be able to import fp8lab (and a grid's function)."""
    name = "dask"

    def __init__(self, address: str = "local", workers: int | None = None, timeout: float = 10.0,
                 client=None, threads: int = 1):
        self.cluster = None
        self._own_client = client is None
        self.threads = threads
        if importlib.util.find_spec("distributed") is None:
            raise ImportError("dask: the `distributed` package is not installed (pip install 'fp8lab[sweep]'); "
                              "the local process pool needs nothing extra")
        if client is not None:
            self.client = client
        elif address == "local":
            from distributed import Client, LocalCluster

            n = min(os.cpu_count() or 1, 4) if workers is None else workers
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"workers: expected a positive integer, got {workers!r}")
            # silence_logs: worker restarts and shutdown chatter stay off the terminal; task errors are in the store
            self.cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                                        dashboard_address=None, silence_logs=50)
            self.client = Client(self.cluster, set_as_default=False)
        else:
            self.client = connect(address, timeout)
        self.address = self.client.scheduler.address
        # Sizes the submission window only (a cluster may grow or shrink while the sweep runs).
        self.workers = max(1, len(self.client.scheduler_info(n_workers=-1).get("workers", {})))

    def imap_unordered(self, fn, items):
        from distributed import as_completed
        from distributed.scheduler import KilledWorker

        items = list(items)
        tag = uuid.uuid4().hex[:12]
        window = max(4, 4 * self.workers)
        nxt = 0
        index: dict = {}

        def submit():
            nonlocal nxt
            fut = self.client.submit(fn, *items[nxt], key=f"fp8lab-task-{tag}-{nxt}", pure=False)
            index[fut.key] = nxt
            nxt += 1
            return fut

        if not items:
            return
        ac = as_completed([submit() for _ in range(min(window, len(items)))], loop=self.client.loop)
        for fut in ac:
            i = index.pop(fut.key)
            try:
                value = fut.result()
            except KilledWorker as err:
                yield i, "lost", f"Dask gave up on it: it was running on workers that died ({err})"
            except Exception as err:
                if fut.status == "cancelled":
                    raise ConnectionError(f"dask: the cluster at {self.address} cancelled the sweep's tasks "
                                          f"(lost connection?): {err}") from err
                yield i, "raised", err
            else:
                yield i, "ok", value
            finally:
                fut.release()
            if nxt < len(items):
                ac.add(submit())

    def close(self) -> None:
        if self._own_client:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None


def make_executor(executor=None, workers: int | None = None, timeout: float = 10.0) -> tuple[Executor, bool]:
    """(executor, whether the caller owns it and must close it) for:
    None or "pool" -> PoolExecutor(workers); "serial" -> in this process; an int n -> a pool of n;
    "dask" or "dask:local" -> a LocalCluster; "tcp://HOST:PORT" or "dask:tcp://..." -> that scheduler;
    an Executor -> itself; a distributed.Client -> tasks on its cluster."""
    check_executor(executor)
    if isinstance(executor, Executor):
        return executor, False
    if executor is None or executor == "pool":
        return PoolExecutor(workers), True
    if executor == "serial":
        return SerialExecutor(), True
    if isinstance(executor, int) and not isinstance(executor, bool):
        return PoolExecutor(executor), True
    if isinstance(executor, str):
        addr = executor[5:] if executor.startswith("dask:") else executor
        return DaskExecutor("local" if executor in ("dask", "dask:local") else addr, workers, timeout), True
    return DaskExecutor(client=executor), False


def check_executor(executor) -> None:
    """Refuse an executor argument that cannot work, before any file is opened or any task runs."""
    if executor is None or isinstance(executor, Executor) or executor in ("pool", "serial", "dask", "dask:local"):
        return
    if isinstance(executor, int) and not isinstance(executor, bool):
        if executor < 1:
            raise ValueError(f"executor: a pool needs at least 1 worker, got {executor}")
        return
    if isinstance(executor, str):
        addr = executor[5:] if executor.startswith("dask:") else executor
        if "://" in addr:
            check_address(addr)
            return
        raise ValueError(f"executor: unknown executor {executor!r}; expected 'pool', 'serial', a worker count, "
                         "'dask:local', a tcp://HOST:PORT scheduler address, or a distributed.Client")
    if type(executor).__name__ == "Client" and type(executor).__module__.startswith("distributed"):
        return
    raise TypeError(f"executor: expected None, 'pool', 'serial', an int, a Dask address or a distributed.Client, "
                    f"got {type(executor).__name__}")
