"""A sweep's results as read back from its store: counts, a digest of the numbers, and tables."""
from __future__ import annotations

import hashlib
import json
import math


class Results:
    def __init__(self, header: dict, records: dict[int, dict], computed: int = 0, resumed: int = 0,
                 total: int | None = None):
        self.header = header
        self.grid_spec = header["grid"]
        self.grid_hash = header["grid_hash"]
        self.by_index = dict(sorted(records.items()))
        self.computed = computed  # tasks run by the sweep() call that returned this (0 when loaded)
        self.resumed = resumed    # tasks found already done in the store
        self.total = total if total is not None else _num_tasks(self.grid_spec)

    @property
    def records(self) -> list[dict]:
        return list(self.by_index.values())

    @property
    def ok(self) -> list[dict]:
        return [r for r in self.by_index.values() if r["status"] == "ok"]

    @property
    def errors(self) -> list[dict]:
        return [r for r in self.by_index.values() if r["status"] == "error"]

    @property
    def missing(self) -> list[int]:
        return [i for i in range(self.total) if i not in self.by_index]

    def counts(self) -> dict:
        return {"tasks": self.total, "ok": len(self.ok), "error": len(self.errors),
                "missing": self.total - len(self.by_index), "computed": self.computed, "resumed": self.resumed}

    def digest(self) -> str:
        """SHA-256 of every task's index, status and numbers (or error message), in index order: equal
        digests mean bit-identical results (floats are written with repr, which round-trips exactly).
        Timings and worker names are left out."""
        h = hashlib.sha256(self.grid_hash.encode())
        for i, r in self.by_index.items():
            body = r.get("values") if r["status"] == "ok" else r.get("error")
            h.update(json.dumps([i, r["status"], body], sort_keys=True).encode())
        return h.hexdigest()

    def rows(self) -> list[dict]:
        """One row per sample: the point's axes, ``sample``, and each value (a list with one entry per
        sample is split; anything else is repeated on the task's rows). Error records give one row
        with ``error`` set."""
        out = []
        for r in self.by_index.values():
            base = {**r["point"], "task": r["index"]}
            if r["status"] != "ok":
                out.append({**base, "sample": None, "error": r.get("error", "")})
                continue
            n = r["hi"] - r["lo"]
            for j in range(n):
                row = {**base, "sample": r["lo"] + j, "error": None}
                for k, v in r["values"].items():
                    row[k] = v[j] if isinstance(v, list) and len(v) == n else v
                out.append(row)
        return out

    def table(self, y: str, by: list[str], agg: str = "mean") -> dict[tuple, float]:
        """``agg`` (mean, max, min, median) of value ``y`` over the samples of each group of points
        that share the axes ``by``; groups whose every task failed are left out."""
        groups: dict[tuple, list[float]] = {}
        for row in self.rows():
            if row.get("error") is None and y in row and isinstance(row[y], (int, float)):
                groups.setdefault(tuple(row[a] for a in by), []).append(float(row[y]))
        fns = {"mean": lambda v: math.fsum(v) / len(v), "max": max, "min": min,
               "median": lambda v: sorted(v)[len(v) // 2] if len(v) % 2 else
               (sorted(v)[len(v) // 2 - 1] + sorted(v)[len(v) // 2]) / 2}
        if agg not in fns:
            raise ValueError(f"agg: {agg!r} is not one of {', '.join(fns)}")
        return {k: fns[agg](v) for k, v in groups.items()}

    def value_names(self) -> list[str]:
        names: list[str] = []
        for r in self.ok:
            for k in r["values"]:
                if k not in names:
                    names.append(k)
        return names


def _num_tasks(spec: dict) -> int:
    pts = math.prod(len(v) for v in spec["axes"].values())
    return pts * -(-spec["samples"] // spec["shard"])
