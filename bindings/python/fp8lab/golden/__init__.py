"""Golden traces: record the exact bits an operation produced for fixed inputs, check them later,
and explain what changed between two traces.

Modules by duty: :mod:`.trace` (the file format), :mod:`.verdict` (comparisons), :mod:`.outputs`
(what a kernel may return), :mod:`.ops` (one module per operation: generators, emulator run,
oracle, C-ABI marshalling), :mod:`.record` (record/check), :mod:`.diff` (regression reports).
Every verdict on an output comes from :meth:`Operation.judge`.
"""
from __future__ import annotations

from .diff import DiffResult, diff
from .markdown import markdown_to_html
from .ops import OPERATIONS, Operation, operation, register_operation
from .outputs import OutputMismatch, as_host_array
from .record import check, default_golden_dir, record, record_all, run_kernel
from .trace import (DTYPE_OF_FORMAT, FORMAT_OF_DTYPE, NUMPY_OF_DTYPE, ROLES, Trace, TraceError, TraceTensor,
                    canonical_json, dtype_for_format, parse_trace, producer, read_trace, sha256, spec_hash)
from .verdict import Verdict, compare_tensors, compare_values, values_of

__all__ = [
    "DTYPE_OF_FORMAT", "DiffResult", "FORMAT_OF_DTYPE", "NUMPY_OF_DTYPE", "OPERATIONS", "Operation", "OutputMismatch",
    "ROLES", "Trace", "TraceError", "TraceTensor", "Verdict", "as_host_array", "canonical_json", "check",
    "compare_tensors", "compare_values", "default_golden_dir", "diff", "dtype_for_format", "markdown_to_html",
    "operation", "parse_trace", "producer", "read_trace", "record", "record_all", "register_operation", "run_kernel",
    "sha256", "spec_hash", "values_of",
]
