"""Sweep executors: a local process pool and a real distributed.LocalCluster (2 worker processes on
loopback) give the bits of the in-process run; a worker killed mid-sweep does not stop the sweep; a
scheduler address that does not answer fails clearly within its timeout."""
import json
import socket
import time

import pytest

import fp8lab
from fp8lab.sweep import DaskExecutor, PoolExecutor, load

import sweep_tasks

GEMM = {"kind": "gemm_error", "axes": {"K": [256, 1024], "nc": [32, 128], "dist": ["gaussian", "student_t3"]},
        "params": {"M": 8, "N": 8}, "samples": 2}  # 16 tasks
DRAWS = {"fn": "sweep_tasks:kill_worker_once", "axes": {"a": [1, 2, 3, 4], "b": [1, 2]}, "samples": 2}


@pytest.fixture(scope="module")
def serial_gemm():
    return fp8lab.sweep(GEMM, executor="serial", progress=False)


@pytest.fixture(scope="module")
def pool():
    with PoolExecutor(2) as ex:
        yield ex


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, silence_logs=50) as lc, \
            distributed.Client(lc, set_as_default=False) as client:
        yield client


def _kill_spec(tmp_path, victim, **params):
    return {**DRAWS, "params": {"victim": victim, "marker": str(tmp_path / "killed"), **params}}


def test_pool_gives_the_in_process_bits(serial_gemm, pool, tmp_path):
    res = fp8lab.sweep(GEMM, executor=pool, store=tmp_path / "p.jsonl", progress=False)
    assert res.counts()["ok"] == 16 and res.digest() == serial_gemm.digest()
    assert len({r["worker"] for r in load(tmp_path / "p.jsonl").records}) >= 1


def test_pool_survives_workers_killed_mid_sweep(pool, tmp_path):
    """Task 5 kills its worker once (then computes), task 3 kills its worker every time: the pool is
    rebuilt, the tasks in flight re-run one by one, task 3 is recorded as lost and the rest complete
    with the bits of the in-process run."""
    spec = {**DRAWS, "fn": "sweep_tasks:kill_worker", "params": {"once": 5, "always": 3, "marker": str(tmp_path / "m")}}
    res = fp8lab.sweep(spec, fn=sweep_tasks.kill_worker, executor=pool, progress=False)
    assert (tmp_path / "m").exists()  # task 5's worker really died
    c = res.counts()
    assert (c["ok"], c["error"], c["missing"]) == (15, 1, 0)
    assert res.errors[0]["index"] == 3 and res.errors[0]["error"].startswith("WorkerLost: its worker process died 2 times")
    ref = fp8lab.sweep({**DRAWS, "fn": "sweep_tasks:draws"}, fn=sweep_tasks.draws, executor="serial", progress=False)
    assert [r["values"] for r in res.ok] == [r["values"] for r in ref.records if r["index"] != 3]


def test_pool_refuses_a_function_it_cannot_send():
    with pytest.raises(TypeError, match="cannot be sent to pool worker processes"):
        fp8lab.sweep({"axes": {"a": [1]}}, fn=lambda t: {"a": 1}, executor=2, progress=False)


def test_local_cluster_gives_the_in_process_bits(serial_gemm, cluster, tmp_path):
    res = fp8lab.sweep(GEMM, executor=cluster, store=tmp_path / "d.jsonl", progress=False)
    assert res.counts()["ok"] == 16 and res.digest() == serial_gemm.digest()
    workers = {r["worker"] for r in load(tmp_path / "d.jsonl").records}
    assert len(workers) == 2  # both worker processes ran tasks


def test_local_cluster_survives_a_worker_killed_mid_sweep(cluster, tmp_path):
    spec = _kill_spec(tmp_path, victim=6, sleep=0.05)
    before = set(cluster.scheduler_info()["workers"])
    res = fp8lab.sweep(spec, fn=sweep_tasks.kill_worker_once, executor=cluster, store=tmp_path / "k.jsonl",
                       progress=False)
    assert (tmp_path / "killed").exists()
    assert res.counts()["ok"] == 16 and not res.errors
    ref = fp8lab.sweep(spec, fn=sweep_tasks.kill_worker_once, executor="serial", progress=False)
    assert res.digest() == ref.digest()
    assert set(cluster.scheduler_info()["workers"]) != before  # a worker left (the nanny restarts it)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_scheduler_that_does_not_answer_fails_within_the_timeout():
    pytest.importorskip("distributed")
    addr = f"tcp://127.0.0.1:{_free_port()}"  # nothing listens
    t0 = time.monotonic()
    with pytest.raises(ConnectionError, match=f"no Dask scheduler answered at {addr} within 1 s"):
        DaskExecutor(addr, timeout=1)
    # a peer that accepts the connection and never speaks: distributed's own timeout does not cover it
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        addr2 = f"tcp://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(ConnectionError, match=f"no Dask scheduler answered at {addr2} within 1 s"):
            fp8lab.sweep(GEMM, executor=addr2, timeout=1, progress=False)
    assert time.monotonic() - t0 < 30  # both gave up on their own (1 s each + slack for a loaded machine)


@pytest.mark.parametrize("bad", ["tcp://127.0.0.1", "http://127.0.0.1:8786", "tcp://127.0.0.1:70000", "pool2"])
def test_bad_executor_names_are_refused(bad):
    with pytest.raises(ValueError, match="executor|scheduler address"):
        fp8lab.sweep(GEMM, executor=bad, progress=False)


def test_cli_reports_an_unanswering_scheduler_with_exit_code_2(tmp_path, capsys):
    from fp8lab.cli import main

    spec = tmp_path / "g.json"
    spec.write_text(json.dumps(GEMM))
    addr = f"tcp://127.0.0.1:{_free_port()}"
    assert main(["sweep", str(spec), "--dask", addr, "--dask-timeout", "1", "--quiet"]) == 2
    assert f"no Dask scheduler answered at {addr} within 1 s" in capsys.readouterr().err
    assert load(tmp_path / "g.results.jsonl").counts()["ok"] == 0  # nothing computed, nothing mixed
