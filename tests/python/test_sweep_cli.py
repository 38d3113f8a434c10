"""`fp8lab sweep` on the command line (in this process): run, show, kinds, plot, and usage errors."""
import json

import matplotlib
import pytest

from fp8lab.cli import main
from fp8lab.sweep import load
from fp8lab.sweep.plot import figure

matplotlib.use("Agg")

SPEC = {"kind": "gemm_error", "axes": {"K": [256, 512], "nc": [32, 128, 256]}, "params": {"M": 4, "N": 4},
        "samples": 2}  # nc = 256 crosses a 1x128 scale tile: those tasks fail and are recorded


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    (d / "g.json").write_text(json.dumps(SPEC))
    assert main(["sweep", str(d / "g.json"), "--serial", "--quiet"]) == 1  # completed, with task errors
    return d


def test_run_show_and_rerun(result, capsys):
    res = load(result / "g.results.jsonl")
    assert res.counts() == {"tasks": 12, "ok": 8, "error": 4, "missing": 0, "computed": 0, "resumed": 0}
    assert all("promote_every must not cross a scale tile" in r["error"] for r in res.errors)
    assert main(["sweep", str(result / "g.json"), "--serial", "--quiet", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert (out["computed"], out["resumed"], out["digest"]) == (0, 12, res.digest())
    assert main(["sweep", "show", str(result / "g.results.jsonl"), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["error"] == 4 and shown["grid"]["axes"]["nc"] == [32, 128, 256]


def test_plot_draws_the_standard_figures_with_labels_and_legend(result, capsys):
    assert main(["sweep", "plot", str(result / "g.results.jsonl"), "--fig-dir", str(result / "figs")]) == 0
    files = sorted(p.name for p in (result / "figs").iterdir())
    assert files == ["g_accumulation_error_vs_K.png", "g_total_error_vs_K.png"]
    assert all((result / "figs" / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in files)
    res = load(result / "g.results.jsonl")
    fig = figure(res, "K", "normwise")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "K" and ax.get_ylabel() == "normwise (mean over samples)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["nc=32", "nc=128"]  # nc=256: no successful task
    assert "4 of 6 points" not in fig._suptitle.get_text() and "2 of 6 points had no successful task" in fig._suptitle.get_text()
    # each line's points are the mean of the samples' values, computed here from the raw records
    for line, nc in zip(ax.get_lines(), (32, 128)):
        want = []
        for k in (256, 512):
            vals = [v for r in res.ok if r["point"]["K"] == k and r["point"]["nc"] == nc for v in r["values"]["normwise"]]
            want.append(sum(vals) / len(vals))
        assert list(line.get_xdata()) == [256, 512] and list(line.get_ydata()) == want


def test_kinds_lists_axes(capsys):
    assert main(["sweep", "kinds"]) == 0
    out = capsys.readouterr().out
    assert "gemm_error" in out and "routing_flips" in out and "axis  nc" in out


@pytest.mark.parametrize("argv, words", [
    (["sweep", "missing.json"], "cannot read"),
    (["sweep", "plot"], "usage: fp8lab sweep plot"),
    (["sweep", "g.json", "--x", "K"], "--x does not apply"),
    (["sweep", "g.json", "--serial", "--dask", "local"], "--serial runs every task in this process"),
    (["sweep", "plot", "nowhere.jsonl"], "cannot read nowhere.jsonl"),
    (["sweep", "g.json", "--workers", "2", "--dask", "tcp://127.0.0.1:1"], "has the workers it has"),
    (["sweep", "g.json", "--workers", "0"], "--workers: expected at least 1"),
    (["sweep", "g.json", "--dask-timeout", "-1"], "--dask-timeout"),
    (["sweep", "g.json", "--dask", "http://x:1"], "not a scheduler address"),
])
def test_usage_errors_exit_2_with_a_message(result, argv, words, capsys, monkeypatch):
    monkeypatch.chdir(result)
    assert main(argv) == 2
    assert words in capsys.readouterr().err


def test_plot_refuses_unknown_axes_and_values(result, capsys):
    path = str(result / "g.results.jsonl")
    assert main(["sweep", "plot", path, "--x", "KK"]) == 2
    assert "'KK' is not an axis" in capsys.readouterr().err
    assert main(["sweep", "plot", path, "--y", "nope"]) == 2
    assert "'nope' is not a result value" in capsys.readouterr().err


def test_bad_spec_files(tmp_path, capsys):
    (tmp_path / "bad.json").write_text("{not json")
    assert main(["sweep", str(tmp_path / "bad.json")]) == 2
    assert "is not valid JSON" in capsys.readouterr().err
    (tmp_path / "axis.json").write_text(json.dumps({**SPEC, "axes": {"N_C": [128]}}))
    assert main(["sweep", str(tmp_path / "axis.json"), "--serial"]) == 2
    assert "unknown axis 'N_C'" in capsys.readouterr().err
    assert not (tmp_path / "axis.results.jsonl").exists()  # refused before any file is written


def test_progress_bar_counts_resumed_tasks_and_errors(tmp_path, capsys, monkeypatch):
    import sys

    from fp8lab.sweep.progress import bar

    with bar(10, 4, "sweep t", True) as pb:
        for err in (False, True, False):
            pb.update(err)
    text = capsys.readouterr().err
    assert "7/10" in text and "errors=1" in text
    monkeypatch.setitem(sys.modules, "tqdm", None)  # tqdm missing: one line at each end instead
    with bar(10, 4, "sweep t", True) as pb:
        pb.update(True)
    text = capsys.readouterr().err
    assert "sweep t: 4/10 tasks done" in text and "done, 1 task(s) with errors" in text
