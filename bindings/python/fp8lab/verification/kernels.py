"""Kernels behind the C ABI (golden/fp8lab_kernel.h), run isolated.

A plug-in is loaded into a worker process (``python -m fp8lab.verification.worker``), never into
fp8lab's own: a kernel that segfaults, aborts or loops kills or stalls only the worker. Each call
has a deadline (``timeout`` seconds); a crash or a missed deadline becomes a :class:`KernelCrash`
naming the signal or the timeout, and the next case gets a fresh worker. The worker checks
``fp8lab_kernel_abi_version`` when the library exports it. Messages are length-prefixed pickles
on a private pair of pipes (the kernel's own stdout is sent to stderr).
"""
from __future__ import annotations

import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import time

import numpy as np

import fp8lab

from ..golden import canonical_json

#: default per-case deadline of a C kernel (seconds); `--timeout` changes it
DEFAULT_TIMEOUT = 30.0
#: what this fp8lab implements (FP8LAB_KERNEL_ABI_VERSION in golden/fp8lab_kernel.h)
ABI_VERSION = 1


class KernelError(RuntimeError):
    """The kernel reported failure (non-zero C status, or a Python kernel raised): an error, exit 2."""


class KernelCrash(RuntimeError):
    """The kernel killed its worker (a signal) or missed its deadline: a violation of that case."""

    def __init__(self, message: str, signal_name: str | None = None, timed_out: bool = False):
        super().__init__(message)
        self.signal_name = signal_name
        self.timed_out = timed_out


def send(stream, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def receive(fd: int, deadline: float | None = None):
    """The next message, or None at end of file; TimeoutError past the deadline."""
    head = _read_exact(fd, 8, deadline)
    if head is None:
        return None
    body = _read_exact(fd, struct.unpack("<Q", head)[0], deadline)
    return None if body is None else pickle.loads(body)


def _worker_env() -> dict:
    # The worker imports fp8lab from the same folders as this process (a source tree runs it from
    # bindings/python plus the build's python folder).
    env = dict(os.environ)
    roots = [os.path.dirname(p) for p in fp8lab.__path__]
    env["PYTHONPATH"] = os.pathsep.join(roots + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def signal_text(returncode: int) -> tuple[str, str]:
    """(name, description) of a worker's exit: SIGSEGV, SIGABRT, ... or an exit status."""
    if returncode < 0:
        try:
            sig = signal.Signals(-returncode)
            return sig.name, f"was killed by {sig.name} (signal {-returncode}: {signal.strsignal(sig)})"
        except ValueError:
            return f"signal {-returncode}", f"was killed by signal {-returncode}"
    return f"exit {returncode}", f"exited the process with status {returncode}"


def _canonical_dtype(a):
    # An unpickled array carries its own dtype instance; the bindings compare dtypes by identity
    # (pybind11 dtype::is), so hand them numpy's shared instance of the same dtype.
    if isinstance(a, np.ndarray) and a.dtype.isnative:
        return a.view(np.dtype(a.dtype.name))
    return a


class CKernel:
    """``LIB.so:SYMBOL`` for operation ``op``, called in a worker process with a per-case deadline.
    Use :meth:`run_case` (what golden.check and verify call) and :meth:`close`."""

    def __init__(self, target: str, op: str, timeout: float = DEFAULT_TIMEOUT):
        if ":" not in target:
            raise ValueError(f"kernel: {target!r} must be LIBRARY:SYMBOL, e.g. ./libmine.so:my_gemm")
        lib_path, symbol = target.rsplit(":", 1)
        if not symbol:
            raise ValueError(f"kernel: {target!r} names no symbol after ':'")
        if not os.path.exists(lib_path):
            raise FileNotFoundError(f"kernel: library {lib_path} does not exist")
        if not (float(timeout) > 0):
            raise ValueError(f"timeout: {timeout} must be a positive number of seconds")
        from ..golden import OPERATIONS, Operation, operation

        if type(operation(op)).call_c is Operation.call_c:
            with_abi = sorted(n for n, o in OPERATIONS.items() if type(o).call_c is not Operation.call_c)
            raise ValueError(f"op: the C ABI has no entry point for {op!r}; it defines {', '.join(with_abi)}")
        self.target, self.lib_path, self.symbol, self.op = target, os.path.abspath(lib_path), symbol, op
        self.timeout = float(timeout)
        self.abi_version: int | None = None
        self._proc = None
        self._start()  # load errors (no such symbol, wrong ABI) are usage errors, raised here

    def _start(self) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "fp8lab.verification.worker", str(to_child_r), str(from_child_w)],
            pass_fds=(to_child_r, from_child_w), env=_worker_env(), stdin=subprocess.DEVNULL)
        os.close(to_child_r)
        os.close(from_child_w)
        self._to = os.fdopen(to_child_w, "wb")
        self._from = from_child_r
        try:
            send(self._to, (self.lib_path, self.symbol, self.op, ABI_VERSION))
            reply = receive(self._from, time.monotonic() + max(self.timeout, 60.0))
        except BrokenPipeError:
            reply = None
        except TimeoutError:
            self.close()
            raise OSError(f"kernel: loading {self.lib_path} did not finish") from None
        if reply is None:
            rc = self._reap()
            self.close()
            raise OSError(f"kernel: loading {self.lib_path} {signal_text(rc)[1]} (its constructors crashed)")
        if reply[0] != "ready":
            self.close()
            raise ValueError(reply[1])
        self.abi_version = reply[1]

    def _reap(self) -> int:
        try:
            return self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            return self._proc.wait()

    def close(self) -> None:
        if self._proc is None:
            return
        try:
            self._to.close()
        except OSError:
            pass
        os.close(self._from)
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._proc = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass

    def run_case(self, o, spec: dict, inputs: dict) -> dict:
        """The kernel's outputs by trace name; KernelError on a non-zero status, KernelCrash on a
        signal or a missed deadline (the worker is replaced for the next case)."""
        if o.name != self.op:
            raise ValueError(f"op: {self.target} implements {self.op!r}, not {o.name!r}")
        if self._proc is None:
            self._start()
        try:
            send(self._to, (spec, canonical_json(spec).encode(), inputs))
            reply = receive(self._from, time.monotonic() + self.timeout)
        except TimeoutError:
            self._proc.kill()
            self.close()
            raise KernelCrash(f"the kernel did not return within {self.timeout:g} s (timeout; --timeout "
                              "changes it)", "timeout", timed_out=True) from None
        except (BrokenPipeError, OSError):
            reply = None
        if reply is None:
            name, text = signal_text(self._reap())
            self.close()
            raise KernelCrash(f"the kernel {text}", name)
        if reply[0] == "ok":
            return {k: _canonical_dtype(v) for k, v in reply[1].items()}
        if reply[0] == "status":
            raise KernelError(f"kernel {self.symbol} failed (status {reply[1]}): {reply[2]}")
        raise KernelError(f"kernel {self.symbol}: {reply[1]}")


def load_kernel(target: str, op: str, timeout: float = DEFAULT_TIMEOUT) -> CKernel:
    """``lib.so:symbol`` -> a kernel verify/check can run (isolated in a worker process)."""
    return CKernel(target, op, timeout)
