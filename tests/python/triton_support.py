"""Shared by the audit and faithful-interpreter tests: the project's Triton kernels audited once
per test session (fp8lab.audit memoises compiles per process), skipping — with the reason — only
where Triton or its CUDA backend cannot run."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

CONTRACTS = Path(__file__).parent / "contracts"


def need_triton():
    pytest.importorskip("triton", reason="triton is not installed on this platform: Triton kernels are skipped")
    pytest.importorskip("torch", reason="torch is not installed: Triton's interpreter takes torch tensors")


def contract(name: str, **kw):
    """The audit of one AUDIT entry of fp8lab.triton.kernels (skips if Triton cannot compile here)."""
    need_triton()
    from fp8lab.audit import ToolchainError, audit, project_kernels

    module, entry = project_kernels()[name]
    try:
        return audit(f"{module}:{entry}", **kw)
    except ToolchainError as err:
        # Only a Triton without its CUDA backend is a reason to skip; with it (every PyPI wheel, and
        # CI) a compile error is a failure — a skip here once hid triton.language left patched.
        from triton.backends import backends
        if "nvidia" in backends:
            raise
        pytest.skip(f"Triton cannot compile for sm_90a on this platform: {err}")


def checked_in(name: str) -> dict:
    return json.loads((CONTRACTS / f"{name}.json").read_text())


def update_requested() -> bool:
    """FP8LAB_UPDATE_CONTRACTS=1 rewrites the checked-in contracts (after a reviewed kernel change)."""
    return os.environ.get("FP8LAB_UPDATE_CONTRACTS") == "1"
