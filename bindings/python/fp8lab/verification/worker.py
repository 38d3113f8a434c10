"""The worker process a C-ABI kernel runs in (see kernels.py): loads the library, checks its ABI
version, then answers one message per case until its input closes. Run by CKernel only."""
from __future__ import annotations

import ctypes
import os
import sys


def main(read_fd: int, write_fd: int) -> int:
    os.dup2(2, 1)  # a kernel's printf must not reach the protocol pipe
    from .kernels import receive, send

    out = os.fdopen(write_fd, "wb")
    lib_path, symbol, op, abi = receive(read_fd)
    try:
        lib = ctypes.CDLL(lib_path)
    except OSError as err:
        send(out, ("error", f"kernel: cannot load {lib_path}: {err}"))
        return 0
    try:
        f = getattr(lib, symbol)
    except AttributeError:
        send(out, ("error", f"kernel: {lib_path} exports no symbol {symbol!r}"))
        return 0
    version = None
    if hasattr(lib, "fp8lab_kernel_abi_version"):
        v = lib.fp8lab_kernel_abi_version
        v.restype, v.argtypes = ctypes.c_int, []
        version = int(v())
        if version != abi:
            send(out, ("error", f"kernel: {lib_path} implements fp8lab kernel ABI version {version}; this fp8lab "
                                f"implements version {abi} (golden/fp8lab_kernel.h)"))
            return 0
    f.restype = ctypes.c_int
    from ..golden import operation

    o = operation(op)
    send(out, ("ready", version))
    while True:
        msg = receive(read_fd)
        if msg is None:
            return 0
        spec, spec_json, inputs = msg
        error = ctypes.create_string_buffer(1024)
        try:
            rc, outputs = o.call_c(f, spec, spec_json, inputs, error)
        except (ValueError, TypeError, KeyError) as err:
            send(out, ("error", f"{type(err).__name__}: {err}"))
            continue
        if rc != 0:
            send(out, ("status", int(rc), error.value.decode(errors="replace")))
        else:
            send(out, ("ok", outputs))


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), int(sys.argv[2])))
