"""The listing commands' shared shape (``fp8lab formats``, ``scale-rules``, ``tensor-cores``): one
row per table entry as aligned text columns, or the entries as JSON with ``--json``."""
from __future__ import annotations

import json
from typing import Callable, Sequence


def text_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]

    def line(cells):
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(r) for r in rows])


def add_listing(sub, name: str, help: str, table: Callable[[], str],
                entries: Callable[[], list] | None = None, json_help: str = "") -> None:
    """Registers ``fp8lab <name>``: prints ``table()``, or ``entries()`` as JSON with --json when
    ``entries`` is given."""
    def run(args) -> int:
        print(json.dumps(entries(), indent=1, sort_keys=True) if getattr(args, "json", False) else table())
        return 0

    p = sub.add_parser(name, help=help)
    if entries is not None:
        p.add_argument("--json", action="store_true", help=json_help)
    p.set_defaults(func=run)
