"""The operations golden traces and verify know, by name. Each module holds one operation: its
generators, emulator run, numpy oracle, shrinking and C-ABI marshalling."""
from __future__ import annotations

from .base import Operation
from .cast import CastOp
from .gemm import GemmOp
from .mla_index import MlaIndexOp
from .mla_sparse_decode import MlaSparseDecodeOp
from .moe_route import MoeRouteOp
from .quantize import QuantizeOp
from .tc_probe import TcProbeOp

#: Operation name -> implementation, in the order `fp8lab verify` runs them.
OPERATIONS: dict[str, Operation] = {}


def register_operation(op: Operation) -> None:
    OPERATIONS[op.name] = op


for _op in (CastOp(), QuantizeOp(), GemmOp(), MoeRouteOp(), TcProbeOp(), MlaSparseDecodeOp()):
    register_operation(_op)
register_operation(MlaIndexOp())


def operation(name: str) -> Operation:
    if name not in OPERATIONS:
        raise ValueError(f"op: unknown operation {name!r}; known: {sorted(OPERATIONS)}")
    return OPERATIONS[name]
