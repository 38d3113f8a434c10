"""``fp8lab tensor-cores``: the tensor-core presets (instruction models) with their evidence and
sources; ``--json`` for machine use."""
from __future__ import annotations

from ._table_cli import add_listing, text_table
from .accum import tensor_cores

COLUMNS = ["name", "alias", "input_format", "k", "block", "alignment_frac_bits", "output_precision",
           "accumulator", "evidence"]


def preset_table() -> str:
    return text_table(COLUMNS, [["-" if p[c] is None or p[c] == "" else str(p[c]) for c in COLUMNS]
                                for p in tensor_cores()])


def add_parser(sub) -> None:
    add_listing(sub, "tensor-cores", "list the tensor-core instruction presets and their evidence", preset_table,
                tensor_cores, "print the presets as JSON, sources included")
