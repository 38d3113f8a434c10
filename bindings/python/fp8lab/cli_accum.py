"""``fp8lab tensor-cores``: the tensor-core presets (instruction models) with their evidence and
sources; ``--json`` for machine use."""
from __future__ import annotations

import json

from .accum import tensor_cores


def preset_table() -> str:
    cols = ["name", "alias", "input_format", "k", "block", "alignment_frac_bits", "output_precision",
            "accumulator", "evidence"]
    rows = [["-" if p[c] is None or p[c] == "" else str(p[c]) for c in cols] for p in tensor_cores()]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _tensor_cores(args) -> int:
    if args.json:
        print(json.dumps(tensor_cores(), indent=2))
    else:
        print(preset_table())
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("tensor-cores", help="list the tensor-core instruction presets and their evidence")
    p.add_argument("--json", action="store_true", help="print the presets as JSON, sources included")
    p.set_defaults(func=_tensor_cores)
