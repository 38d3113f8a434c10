"""``fp8lab scale-rules``: the named scale rules as explicit specs (a table, or JSON with --json)."""
from __future__ import annotations

import json

from .quant import scale_rule, scale_rules

COLUMNS = ["name", "amax_nan", "floor_at", "epsilon", "form", "pow2", "apply", "clamp_before_cast",
           "cast_overflow", "storage"]


def rules_table() -> str:
    rows = [[str(scale_rule(r)[c]) for c in COLUMNS] for r in scale_rules()]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(COLUMNS)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(COLUMNS), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _scale_rules(args) -> int:
    if args.json:
        print(json.dumps([scale_rule(r) for r in scale_rules()], indent=1, sort_keys=True))
    else:
        print(rules_table())
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("scale-rules", help="print the named block-quantisation scale rules as specs")
    p.add_argument("--json", action="store_true", help="full specs (with sources) as JSON")
    p.set_defaults(func=_scale_rules)
