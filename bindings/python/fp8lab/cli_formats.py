"""``fp8lab formats``: the format semantics table."""
from __future__ import annotations

from ._table_cli import add_listing, text_table
from .formats import format_info, formats

COLUMNS = ["name", "exponent_bits", "mantissa_bits", "bias", "non_finite", "max_finite", "min_normal",
           "min_positive", "nan_encoding"]


def format_table() -> str:
    return text_table(COLUMNS, [[str(format_info(f)[c]) for c in COLUMNS] for f in formats()])


def add_parser(sub) -> None:
    add_listing(sub, "formats", "print the format semantics table", format_table)
