"""Checking kernels: ``fp8lab.verify`` (a Python callable or a C-ABI library against the emulator
on generated inputs), the `fp8lab verify` run over golden traces, and its results.

Modules: :mod:`.cases` (generated cases and shrinking), :mod:`.kernels` and :mod:`.worker` (C-ABI
kernels, isolated in a worker process), :mod:`.session` (the whole run and single trace files),
:mod:`.results` (exit codes, JSON, JUnit).
"""
from __future__ import annotations

from .cases import VerifyResult, check_case, verify
from .kernels import DEFAULT_TIMEOUT, CKernel, KernelCrash, KernelError, load_kernel
from .results import (EXIT_ERROR, EXIT_OK, EXIT_VIOLATION, EXIT_WITHIN_BOUND, CaseResult, exit_code, junit_xml,
                      offender_lines)
from .session import check_file, run, verify_golden

__all__ = [
    "CKernel", "CaseResult", "DEFAULT_TIMEOUT", "EXIT_ERROR", "EXIT_OK", "EXIT_VIOLATION", "EXIT_WITHIN_BOUND",
    "KernelCrash", "KernelError", "VerifyResult", "check_case", "check_file", "exit_code", "junit_xml",
    "load_kernel", "offender_lines", "run", "verify", "verify_golden",
]
