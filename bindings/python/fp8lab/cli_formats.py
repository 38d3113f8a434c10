"""``fp8lab formats``: the format table, and ``fp8lab casts``: the cast-verification summary."""
from __future__ import annotations

from .formats import format_info, formats


def format_table() -> str:
    cols = ["name", "exponent_bits", "mantissa_bits", "bias", "non_finite", "max_finite", "min_normal",
            "min_positive", "nan_encoding"]
    rows = [[str(format_info(f)[c]) for c in cols] for f in formats()]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _formats(args) -> int:
    print(format_table())
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("formats", help="print the format semantics table")
    p.set_defaults(func=_formats)
