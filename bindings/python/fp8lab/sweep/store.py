"""The result store: one append-only JSON Lines file per sweep.

Why JSONL and not Parquet: a Parquet file is only readable once its footer is written, so a sweep
killed mid-run would lose the whole file (or need one file per batch and a compaction step); a
JSONL file is readable up to its last complete line, and appending one line per task with a flush
and an fsync makes every finished task durable the moment it is recorded. Python's ``repr`` of a
float (which ``json`` writes) reads back to the same bits, so the store loses no precision; non-finite
values are written as Python's ``NaN``/``Infinity`` tokens (``json.loads`` reads them back).
``to_parquet`` converts a finished store into a table for analysis.

Layout: line 1 is the header ``{"fp8lab_sweep": 1, "grid": ..., "grid_hash": ..., "version": ...}``,
written atomically (temporary file + rename) when the store is created; every further line is one
task's record (``index``, ``point``, ``seed``, ``lo``, ``hi``, ``status`` "ok" with ``values`` or
"error" with ``error`` and ``traceback``, plus ``elapsed_s`` and ``worker``, which are not results).

Crash safety: a kill can leave at most one unterminated last line; opening the store for a resume
cuts it off (that task is simply computed again). A complete line that is not a record is
corruption, not a crash, and is refused. A store whose header names another grid is refused, so
results of two grids are never mixed. An exclusive lock (flock, released by the kernel when the
process dies) keeps two sweeps from appending to the same file at once.
"""
from __future__ import annotations

import fcntl
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .results import Results

FORMAT_VERSION = 1


class StoreError(ValueError):
    """A store that cannot be used for this sweep (another grid, corrupt, locked)."""


def _parse_line(path: Path, lineno: int, line: bytes) -> dict:
    try:
        rec = json.loads(line)
    except (ValueError, UnicodeDecodeError) as err:
        raise StoreError(f"store: line {lineno} of {path} is not a JSON record ({err}); the file is "
                         "corrupt — refusing to use it") from None
    if not isinstance(rec, dict):
        raise StoreError(f"store: line {lineno} of {path} is not a JSON object; the file is corrupt")
    return rec


def read(path) -> tuple[dict, list[dict], int]:
    """(header, records in file order, byte length of the complete lines). An unterminated last line
    (a write cut short by a kill) is left out."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise OSError(f"store: cannot read {path}: {err.strerror or err}") from None
    end = data.rfind(b"\n") + 1
    lines = data[:end].split(b"\n")[:-1]
    if not lines:
        raise StoreError(f"store: {path} has no complete header line; it is not an fp8lab sweep result file")
    header = _parse_line(path, 1, lines[0])
    if header.get("fp8lab_sweep") != FORMAT_VERSION or "grid" not in header or "grid_hash" not in header:
        raise StoreError(f"store: {path} is not an fp8lab sweep result file (format {FORMAT_VERSION}): "
                         "its first line has no fp8lab_sweep/grid/grid_hash header")
    records = []
    for n, line in enumerate(lines[1:], start=2):
        rec = _parse_line(path, n, line)
        if not isinstance(rec.get("index"), int) or rec.get("status") not in ("ok", "error"):
            raise StoreError(f"store: line {n} of {path} is not a task record (index, status); the file is corrupt")
        records.append(rec)
    return header, records, end


def latest(records: list[dict]) -> dict[int, dict]:
    """index -> the last record of that task (a retried task supersedes its earlier error)."""
    out: dict[int, dict] = {}
    for rec in records:
        out[rec["index"]] = rec
    return out


class ResultStore:
    """Open (create, or resume) the store of ``grid`` at ``path``; use as a context manager."""

    def __init__(self, path, grid):
        from .. import __version__

        self.path = Path(path)
        self.grid = grid
        if self.path.exists() and not self.path.is_file():
            raise StoreError(f"store: {self.path} exists and is not a file")
        if not self.path.exists() or self.path.stat().st_size == 0:
            header = {"fp8lab_sweep": FORMAT_VERSION, "grid": grid.to_json(), "grid_hash": grid.hash,
                      "version": __version__}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(json.dumps(header, sort_keys=True) + "\n")
                f.flush()
                os.fsync(f.fileno())
            if self.path.exists():
                os.replace(tmp, self.path)   # an empty file (e.g. made by the user) is taken over
            else:
                try:
                    os.link(tmp, self.path)  # never replaces a store another process just created
                except FileExistsError:
                    pass                     # it did: that one is opened and checked below
                finally:
                    os.unlink(tmp)
        self._f = open(self.path, "r+b")
        try:
            fcntl.flock(self._f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._f.close()
            raise StoreError(f"store: {self.path} is being written by another running sweep") from None
        try:
            header, records, end = read(self.path)
            if header["grid_hash"] != grid.hash:
                raise StoreError(
                    f"store: {self.path} holds results of a different grid (hash {header['grid_hash'][:12]}, "
                    f"this grid {grid.hash[:12]}); refusing to mix them — choose another result file. "
                    f"Stored grid: {json.dumps(header['grid'], sort_keys=True)}")
            self.header = header
            self._check(records)
            self.records = latest(records)
            self.torn_bytes = self._f.seek(0, os.SEEK_END) - end
            if self.torn_bytes:
                self._f.truncate(end)  # the one unfinished line a kill can leave
                os.fsync(self._f.fileno())
            self._f.seek(end)
        except BaseException:
            self.close()
            raise

    def _check(self, records: list[dict]) -> None:
        """Every record must be one of this grid's tasks, with its point, seed and range: the hash
        says so unless the file was edited by hand."""
        if not records:
            return
        n = len(self.grid)
        for rec in records:
            if not 0 <= rec["index"] < n:
                raise StoreError(f"store: {self.path} has a record for task {rec['index']}; this grid has "
                                 f"tasks 0..{n - 1}")
        want = {i: None for i in (r["index"] for r in records)}
        for t in self.grid.tasks():
            if t.index in want:
                want[t.index] = json.loads(json.dumps(t.to_json()))
        for rec in records:
            t = want[rec["index"]]
            if {k: rec.get(k) for k in t} != t:
                raise StoreError(f"store: record of task {rec['index']} in {self.path} does not match this grid's "
                                 f"task {t}; refusing to mix them")

    def done(self, retry_errors: bool = False) -> set[int]:
        return {i for i, r in self.records.items() if r["status"] == "ok" or not retry_errors}

    def append(self, record: dict) -> None:
        line = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
        self._f.write(line)
        self._f.flush()
        os.fsync(self._f.fileno())
        self.records[record["index"]] = record

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()  # the lock goes with the descriptor

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def load(path) -> "Results":
    """A finished (or partial) store as a Results object (records by task index, grid, header)."""
    from .results import Results

    header, records, _ = read(path)
    return Results(header, latest(records))


def to_parquet(path, out) -> Path:
    """Write one row per (task record, sample) of the store at ``path`` to the Parquet file ``out``
    (pyarrow): the axes as columns, each value as a column; errors as rows with their message."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    res = load(path)
    rows = res.rows()
    columns = {}
    for name in dict.fromkeys(k for r in rows for k in r):
        values = [r.get(name) for r in rows]
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            # mixed types (an axis like nc = [128, "none"]) or ragged structures: JSON text, lossless
            columns[name] = pa.array([None if v is None else json.dumps(v, sort_keys=True) for v in values])
    table = pa.table(columns)
    out = Path(out)
    pq.write_table(table, out)
    return out
