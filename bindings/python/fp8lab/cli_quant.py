"""``fp8lab scale-rules``: the named scale rules as explicit specs (a table, or JSON with --json)."""
from __future__ import annotations

from ._table_cli import add_listing, text_table
from .quant import scale_rule, scale_rules

COLUMNS = ["name", "amax_nan", "floor_at", "epsilon", "form", "pow2", "apply", "clamp_before_cast",
           "cast_overflow", "storage"]


def rules_table() -> str:
    return text_table(COLUMNS, [[str(scale_rule(r)[c]) for c in COLUMNS] for r in scale_rules()])


def add_parser(sub) -> None:
    add_listing(sub, "scale-rules", "print the named block-quantisation scale rules as specs", rules_table,
                lambda: [scale_rule(r) for r in scale_rules()], "full specs (with sources) as JSON")
