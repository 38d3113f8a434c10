"""The sweep's result store: resume after a kill computes only the missing tasks, a torn last line is
cut off, another grid's file or a corrupt file is refused, two writers are kept apart."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import fp8lab
from fp8lab.sweep import ResultStore, StoreError, load, parse_grid, to_parquet

import sweep_tasks

GRID = {"fn": "sweep_tasks:draws", "axes": {"a": [1, 2, 3], "b": [1, 2]}, "samples": 4, "shard": 2}  # 12 tasks
ROOT = Path(__file__).resolve().parents[2]


def _run(store, **kw):
    return fp8lab.sweep(GRID, fn=sweep_tasks.draws, executor="serial", store=store, progress=False, **kw)


def test_store_round_trips_every_bit_and_a_rerun_computes_nothing(tmp_path):
    store = tmp_path / "r.jsonl"
    first = _run(store)
    assert first.counts()["computed"] == 12
    again = _run(store)
    assert (again.counts()["computed"], again.counts()["resumed"]) == (0, 12)
    loaded = load(store)
    assert loaded.digest() == first.digest() == again.digest()
    # floats read back bit for bit (repr round-trips)
    mem = fp8lab.sweep(GRID, fn=sweep_tasks.draws, executor="serial", progress=False)
    assert [r["values"] for r in loaded.records] == [r["values"] for r in mem.records]
    lines = store.read_text().splitlines()
    assert json.loads(lines[0])["grid_hash"] == parse_grid(GRID, fn=sweep_tasks.draws).hash and len(lines) == 13


def test_resume_after_a_torn_write_computes_only_the_missing_tasks(tmp_path):
    ref = _run(tmp_path / "ref.jsonl")
    store = tmp_path / "r.jsonl"
    full = (tmp_path / "ref.jsonl").read_bytes().split(b"\n")
    # header + 5 complete records + half of the 6th (a kill in the middle of a write)
    store.write_bytes(b"\n".join(full[:6]) + b"\n" + full[6][: len(full[6]) // 2])
    res = _run(store)
    assert (res.counts()["resumed"], res.counts()["computed"]) == (5, 7)
    assert res.digest() == ref.digest() == load(store).digest()
    assert len(store.read_text().splitlines()) == 13  # the torn line is gone, not left in the middle


def test_a_result_file_of_another_grid_is_refused_and_left_untouched(tmp_path):
    store = tmp_path / "r.jsonl"
    _run(store)
    before = store.read_bytes()
    other = {**GRID, "samples": 5}
    with pytest.raises(StoreError, match="different grid.*refusing to mix"):
        fp8lab.sweep(other, fn=sweep_tasks.draws, executor="serial", store=store, progress=False)
    with pytest.raises(StoreError, match="different grid"):  # another function is another grid too
        fp8lab.sweep({**GRID, "fn": "sweep_tasks:slow"}, fn=sweep_tasks.slow, executor="serial", store=store,
                     progress=False)
    assert store.read_bytes() == before


def test_corrupt_or_foreign_files_are_refused(tmp_path):
    store = tmp_path / "r.jsonl"
    _run(store)
    lines = store.read_bytes().split(b"\n")
    lines[3] = b'{"index": 2, "status": "ok", "values": {"x": [1.0'  # a complete line that is not JSON
    store.write_bytes(b"\n".join(lines))
    with pytest.raises(StoreError, match="line 4 .* corrupt"):
        _run(store)
    foreign = tmp_path / "f.jsonl"
    foreign.write_text('{"hello": 1}\n')
    with pytest.raises(StoreError, match="not an fp8lab sweep result file"):
        _run(foreign)
    edited = tmp_path / "e.jsonl"
    _run(edited)
    recs = edited.read_text().splitlines()
    r = json.loads(recs[1])
    r["point"]["a"] = 99
    recs[1] = json.dumps(r)
    edited.write_text("\n".join(recs) + "\n")
    with pytest.raises(StoreError, match="does not match this grid's task"):
        _run(edited)


def test_two_sweeps_cannot_append_to_one_file(tmp_path):
    g = parse_grid(GRID, fn=sweep_tasks.draws)
    with ResultStore(tmp_path / "r.jsonl", g):
        with pytest.raises(StoreError, match="being written by another running sweep"):
            ResultStore(tmp_path / "r.jsonl", g)


def test_errors_are_kept_unless_retried(tmp_path):
    store = tmp_path / "r.jsonl"
    spec = {**GRID, "fn": "sweep_tasks:raises_on_b2"}
    res = fp8lab.sweep(spec, fn=sweep_tasks.raises_on_b2, executor="serial", store=store, progress=False)
    assert res.counts()["error"] == 6
    again = fp8lab.sweep(spec, fn=sweep_tasks.raises_on_b2, executor="serial", store=store, progress=False)
    assert again.counts()["computed"] == 0
    retried = fp8lab.sweep(spec, fn=sweep_tasks.raises_on_b2, executor="serial", store=store, progress=False,
                           retry_errors=True)
    assert (retried.counts()["computed"], retried.counts()["error"]) == (6, 6)
    assert load(store).counts()["error"] == 6  # the later record of a task supersedes the earlier


def test_parquet_export_has_one_row_per_sample(tmp_path):
    import pyarrow.parquet as pq

    store = tmp_path / "r.jsonl"
    _run(store)
    t = pq.read_table(to_parquet(store, tmp_path / "r.parquet"))
    assert t.num_rows == 3 * 2 * 4
    assert set(t.column_names) >= {"a", "b", "sample", "x", "task"}
    assert t.column("x").to_pylist() == [r["x"] for r in load(store).rows()]
    # an axis mixing numbers and strings (nc = [32, "none"]) goes in as JSON text, not a crash
    mixed = tmp_path / "m.jsonl"
    fp8lab.sweep({"kind": "gemm_error", "axes": {"K": [64], "nc": [32, "none"], "tile": ["per_row"]},
                  "params": {"M": 2, "N": 2}}, executor="serial", store=mixed, progress=False)
    tm = pq.read_table(to_parquet(mixed, tmp_path / "m.parquet"))
    assert tm.column("nc").to_pylist() == ["32", '"none"'] and tm.num_rows == 2


def _env():
    env = dict(os.environ)
    here = str(Path(__file__).resolve().parent)
    env["PYTHONPATH"] = os.pathsep.join([here] + [p for p in sys.path if p])
    return env


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_killed_cli_sweep_resumes_with_only_the_missing_tasks(tmp_path):
    """SIGKILL a running `fp8lab sweep` (local pool of 2) after a few tasks: its pool workers leave too,
    and the rerun (in process this time) computes exactly the rest (counted), with the numbers of an
    uninterrupted in-process run."""
    spec = {"fn": "sweep_tasks:slow", "axes": {"a": [1, 2, 3, 4], "b": [1, 2]}, "samples": 2, "shard": 1,
            "params": {"sleep": 0.15}}  # 16 tasks
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    out = tmp_path / "spec.results.jsonl"
    cmd = [sys.executable, "-m", "fp8lab", "sweep", str(path), "--quiet", "--json"]
    proc = subprocess.Popen(cmd + ["--workers", "2"], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if out.exists() and out.read_bytes().count(b"\n") >= 1 + 4:
            break
        time.sleep(0.05)
    workers = [c for c in _children(proc.pid)]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert len(workers) >= 2  # the pool's processes (and multiprocessing's resource tracker)
    deadline = time.monotonic() + 30
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [w for w in workers if _alive(w)], "pool workers outlived the killed sweep"
    done = len(load(out).by_index)
    assert 4 <= done < 16, done
    rerun = subprocess.run(cmd + ["--serial"], env=_env(), capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert (summary["computed"], summary["resumed"], summary["ok"]) == (16 - done, done, 16)
    assert summary["digest"] == load(out).digest()
    # slow() returns draws(): the same numbers computed in this process without a kill
    ref = fp8lab.sweep({**spec, "fn": "sweep_tasks:draws"}, fn=sweep_tasks.draws, executor="serial", progress=False)
    assert [r["values"] for r in load(out).records] == [r["values"] for r in ref.records]
