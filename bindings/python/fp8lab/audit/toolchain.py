"""Compiling kernels for a GPU architecture without a GPU, and disassembling what comes out.

Triton ``@triton.jit`` functions compile through Triton's own pipeline (``triton.compile`` with a
``GPUTarget``; its bundled ptxas makes the cubin), CUDA sources through ``nvcc`` (``-ptx
-lineinfo`` for the PTX, ``-cubin`` for the SASS). SASS is read with ``cuobjdump -sass`` (which
runs ``nvdisasm``), from the toolkit or the nvidia-cuda-cuobjdump / nvidia-cuda-nvdisasm wheels.
Compiles are slow on small machines: results are memoised per process, keyed by everything that
reaches the compiler.
"""
from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["ToolchainError", "find_tool", "compile_triton", "compile_cuda", "sass_of", "toolchain_versions"]


class ToolchainError(RuntimeError):
    """A compiler or disassembler is missing or failed (the message says which and why)."""


_MEMO: dict = {}


def _tool_dirs() -> list[str]:
    dirs = []
    cuda = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    dirs.append(os.path.join(cuda, "bin"))
    dirs += glob.glob(os.path.join(sys.prefix, "lib", "python3*", "site-packages", "nvidia", "cu*", "bin"))
    dirs += glob.glob(os.path.join(sys.prefix, "lib", "python3*", "site-packages", "nvidia", "cuda_*", "bin"))
    return dirs


def find_tool(name: str) -> str:
    """Absolute path of a CUDA tool (nvcc, ptxas, cuobjdump, nvdisasm); PATH first."""
    found = shutil.which(name)
    if found:
        return found
    for d in _tool_dirs():
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    raise ToolchainError(f"{name}: not found on PATH, under $CUDA_HOME/bin or in the nvidia-* wheels of this "
                         f"Python (pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm, or install the toolkit)")


def _run(cmd: list[str], what: str, env=None) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    except FileNotFoundError:
        raise ToolchainError(f"{what}: cannot run {cmd[0]}") from None
    if r.returncode != 0:
        raise ToolchainError(f"{what} failed (exit {r.returncode}): {(r.stderr or r.stdout).strip()[-2000:]}")
    return r.stdout


def toolchain_versions() -> dict:
    """Versions of what produced the code (recorded in every contract)."""
    out = {}
    try:
        import triton

        out["triton"] = triton.__version__
    except ImportError:
        pass
    for tool in ("nvcc", "cuobjdump"):
        try:
            line = _run([find_tool(tool), "--version"], f"{tool} --version").strip().splitlines()[-1]
            out[tool] = line.strip()
        except ToolchainError:
            pass
    return out


def compile_triton(fn, signature: dict, constexprs: dict, arch: int = 90, num_warps: int = 4,
                   num_stages: int | None = None, fp_fusion: bool | None = None) -> dict:
    """Compile a ``@triton.jit`` function for ``sm_<arch>`` (90 -> sm_90a, 100 -> sm_100a).

    signature: argument name -> Triton type string (``*fp8e4nv``, ``*fp32``, ``i32``, ``fp32``);
    constexprs: name -> value (their signature entries are added). fp_fusion None leaves Triton's
    default (TRITON_DEFAULT_FP_FUSION; fused through 3.9). Returns {"ptx", "cubin", "llir", "options"}.
    """
    try:
        import triton
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
    except ImportError as err:
        raise ToolchainError(f"triton is not installed ({err}): cannot compile a Triton kernel") from None
    if not callable(getattr(fn, "fn", None)):
        raise TypeError(f"kernel: expected a @triton.jit function, got {type(fn).__name__}")
    from triton.runtime.jit import JITFunction

    # An InterpretedFunction (TRITON_INTERPRET=1 at decoration) compiles through its Python function.
    jit = fn if isinstance(fn, JITFunction) else JITFunction(fn.fn)
    sig = dict(signature)
    for k in constexprs:
        sig[k] = "constexpr"
    names = list(jit.arg_names)
    unknown = [k for k in sig if k not in names]
    if unknown:
        raise ValueError(f"signature: {unknown} are not arguments of {jit.fn.__name__} ({names})")
    missing = [k for k in names if k not in sig]
    if missing:
        raise ValueError(f"signature: no type for argument(s) {missing} of {jit.fn.__name__}")
    options = {"num_warps": int(num_warps)}
    if num_stages is not None:
        options["num_stages"] = int(num_stages)
    if fp_fusion is not None:
        options["enable_fp_fusion"] = bool(fp_fusion)
    default_fusion = os.environ.get("TRITON_DEFAULT_FP_FUSION")
    key = ("triton", jit.cache_key, tuple(sorted(sig.items())), tuple(sorted((k, repr(v)) for k, v in constexprs.items())),
           arch, tuple(sorted(options.items())), default_fusion)
    if key in _MEMO:
        return _MEMO[key]
    src = ASTSource(fn=jit, signature=sig, constexprs=dict(constexprs))
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="TRITON_DEFAULT_FP_FUSION")
            k = triton.compile(src, target=GPUTarget("cuda", int(arch), 32), options=options)
    except Exception as err:  # Triton raises its own CompilationError / RuntimeError types
        raise ToolchainError(f"triton.compile for sm_{arch}: {type(err).__name__}: {err}") from None
    fused = fp_fusion if fp_fusion is not None else getattr(k.metadata, "enable_fp_fusion", None)
    out = {"ptx": k.asm["ptx"], "cubin": k.asm["cubin"], "llir": k.asm.get("llir", ""),
           "options": {**options, "enable_fp_fusion": fused, "arch": f"sm_{arch}a" if arch >= 90 else f"sm_{arch}"}}
    _MEMO[key] = out
    return out


def compile_cuda(path, arch: str = "sm_90a", flags: list[str] | None = None, include: list[str] | None = None,
                 cubin: bool = True) -> dict:
    """Compile one CUDA source to PTX (with line info) and, with ``cubin``, to a cubin (None otherwise).
    Returns {"ptx", "cubin", "options"}."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"kernel: {path} does not exist")
    nvcc = find_tool("nvcc")
    flags = list(flags or ["-O3", "-std=c++20", "--expt-relaxed-constexpr"])
    inc = [f"-I{d}" for d in (include or [])]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    key = ("cuda", str(path.resolve()), digest, arch, tuple(flags), tuple(inc), cubin)
    if key in _MEMO:
        return _MEMO[key]
    with tempfile.TemporaryDirectory() as tmp:
        ptx = os.path.join(tmp, "k.ptx")
        _run([nvcc, "-ptx", "-lineinfo", f"-arch={arch}", *flags, *inc, "-o", ptx, str(path)], f"nvcc -ptx {path.name}")
        binary = None
        if cubin:
            out_bin = os.path.join(tmp, "k.cubin")
            _run([nvcc, "-cubin", "-lineinfo", f"-arch={arch}", *flags, *inc, "-o", out_bin, str(path)],
                 f"nvcc -cubin {path.name}")
            binary = Path(out_bin).read_bytes()
        out = {"ptx": Path(ptx).read_text(), "cubin": binary,
               "options": {"arch": arch, "flags": flags}}
    _MEMO[key] = out
    return out


def sass_of(binary) -> str:
    """``cuobjdump -sass`` of a cubin (bytes or path), an object file or a static library."""
    cuobjdump = find_tool("cuobjdump")
    nvdisasm = find_tool("nvdisasm")
    env = {**os.environ, "PATH": os.path.dirname(nvdisasm) + os.pathsep + os.environ.get("PATH", "")}
    if isinstance(binary, (bytes, bytearray)):
        key = ("sass", hashlib.sha256(binary).hexdigest())
        if key in _MEMO:
            return _MEMO[key]
        with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
            f.write(binary)
            f.flush()
            out = _run([cuobjdump, "-sass", f.name], "cuobjdump -sass", env)
        _MEMO[key] = out
        return out
    path = Path(binary)
    if not path.is_file():
        raise FileNotFoundError(f"kernel: {path} does not exist")
    return _run([cuobjdump, "-sass", str(path)], f"cuobjdump -sass {path.name}", env)
