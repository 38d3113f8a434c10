"""The report's summary rows and seed statistics on synthetic inputs (no emulator run): the spread
arithmetic, the noisy flag, "not measured" without a training lab, the training lab's numbers when
they exist, and hostile replicate values (inf) kept out of the JSON."""
import json
import math

import numpy as np
import pytest

from fp8lab import report
from fp8lab.report import cost_model, headlines, summary


def _heads(values: dict) -> dict:
    """headlines.run's shape from {(measurement, figure): [values]}."""
    out = {"replicates": 5, "noisy_cv": headlines.NOISY_CV, "measurements": {}}
    for (meas, name), vals in values.items():
        m = out["measurements"].setdefault(meas, {"status": "ok", "size": "test", "figures": {}})
        m["figures"][name] = headlines.stats(vals)
    return out


def test_stats_mean_sd_and_the_noisy_rule():
    st = headlines.stats([0.010, 0.011, 0.009, 0.010, 0.010])
    assert st["mean"] == pytest.approx(0.01, rel=1e-12)
    assert st["sd"] == pytest.approx(np.std([0.010, 0.011, 0.009, 0.010, 0.010], ddof=1), rel=1e-12)
    assert not st["noisy"] and st["n"] == 5
    assert headlines.stats([1.0, 1.3, 0.7])["noisy"]  # sd 0.3 = 30% of the mean
    one = headlines.stats([0.5])
    assert one["sd"] == 0.0 and not one["noisy"]


def test_stats_of_an_unbounded_replicate_is_json_safe_and_flagged():
    st = headlines.stats([1.0, math.inf, 2.0])
    assert st["mean"] is None and st["noisy"] and st["values"][1] is None
    json.dumps(st, allow_nan=False)  # would raise on inf/NaN
    assert summary.spread(st) == "not measured"


def test_rows_say_not_measured_without_training_and_quote_it_with():
    cm = cost_model.build().figures
    heads = _heads({("granularity", "recipe_normwise"): [0.027, 0.028, 0.026, 0.027, 0.028],
                    ("granularity", "bf16_normwise"): [0.0023] * 5,
                    ("scales", "ue8m0_penalty"): [2.5, 3.0, 3.5, 2.8, 3.2]})
    rows = summary.rows(cm, heads, {}, None)
    fp8 = rows[0]
    assert fp8["ours"].startswith("not measured") and "training-loss cost: not measured" in fp8["costs"]
    assert "2.72% ± " in fp8["costs"] and "5 seeds" in fp8["costs"]
    assert rows[2]["ours"].startswith("3x ± ")  # a ratio stays a ratio, not a percentage
    assert "not measured" in rows[4]["costs"]  # no MLA replicates given
    train = {"available": True, "rel_loss_error_vs_bf16": 0.0012, "bf16_seed_spread": 0.003,
             "verdict": "within the seed noise of this small run", "sentence": "deepseek_fp8 ends +0.12% from bf16."}
    rows = summary.rows(cm, heads, {}, train)
    assert rows[0]["ours"] == "0.12% relative loss error vs BF16 (BF16 seed-to-seed spread 0.3%)"
    assert rows[0]["verdict"] == train["verdict"] and train["sentence"] in rows[0]["costs"]
    assert "0.12%" in rows[3]["ours"]
    q = summary.seed_paragraph(cm, heads, train)
    assert train["sentence"] in q and "not measured" not in q


def test_blackwell_row_quotes_the_microscaling_loss_cost_or_says_not_measured():
    cm = cost_model.build().figures
    assert cm["mxfp8_bytes_ratio"]["value"] == (1 + 1 / 32) / 2 and cm["nvfp4_bytes_ratio"]["value"] == (0.5 + 1 / 16) / 2
    row = summary.rows(cm, _heads({}), {}, None)[-1]
    assert row["trick"].startswith("Blackwell block-scaled recipes") and "51.6%" in row["saves"]
    assert row["ours"] == "not measured" and "not measured" in row["costs"]
    rec = {"final_val": 5.01, "rel_error_vs_bf16": 0.002, "exceeds_bf16_noise": False, "rel_error_vs_deepseek_fp8": -0.001}
    loss = {"available": True, "plan": {"steps": 48, "seeds": [0, 1, 2]}, "noise_floor_bf16": 0.004,
            "bf16_final_val": [5.0, 5.02, 4.98],
            "recipes": {"deepseek_fp8": dict(rec, rel_error_vs_deepseek_fp8=None),
                        "mxfp8_te": rec, "nvfp4": dict(rec, rel_error_vs_bf16=0.03, exceeds_bf16_noise=True)}}
    row = summary.rows(cm, _heads({}), {"microscaling": {"status": "ok", "data": {"loss_cost": loss}}}, None)[-1]
    assert row["ours"] == "mxfp8_te: 0.2% vs BF16; nvfp4: 3% vs BF16"
    assert "mxfp8_te 0.2% (-0.1% vs deepseek_fp8)" in row["costs"]
    assert "5.0000 ± 0.02 nats/byte over 3 seeds" in row["costs"]  # sd of 5.0, 5.02, 4.98 (ddof 1)
    assert row["verdict"].startswith("above the bf16 seed noise: nvfp4")


def test_noisy_lists_exactly_the_flagged_figures():
    heads = _heads({("scales", "ue8m0_penalty"): [2.0, 3.0, 4.0], ("routing", "gate_flip_fraction"): [0.16] * 3})
    got = summary.noisy(heads)
    assert [(n["measurement"], n["name"]) for n in got] == [("scales", "ue8m0_penalty")]
    assert got[0]["cv"] == pytest.approx(1 / 3, rel=1e-12)


def test_training_headline_reads_the_training_section_only_when_it_measured(monkeypatch):
    import types

    fake = types.ModuleType("fp8lab.report.sec_training")
    fake.headline = lambda sec: sec["data"]["h"]
    monkeypatch.setitem(__import__("sys").modules, "fp8lab.report.sec_training", fake)
    h = {"available": True, "rel_loss_error_vs_bf16": 0.001, "bf16_seed_spread": 0.002}
    assert report.training_headline({"training": {"status": "ok", "data": {"h": h}}}) == h
    assert report.training_headline({"training": {"status": "ok", "data": {"h": {"available": False}}}}) is None
    assert report.training_headline({"training": {"status": "unavailable", "data": {"h": h}}}) is None
    assert report.training_headline({}) is None


def test_the_fp8_row_names_the_recipe_when_the_build_has_the_table(monkeypatch):
    import fp8lab

    cm = cost_model.build().figures
    monkeypatch.setattr(fp8lab, "recipes", lambda: {summary.FP8_RECIPE: {"source": "test"}}, raising=False)
    assert summary.gemm_recipe_name() == summary.FP8_RECIPE
    assert summary.rows(cm, _heads({}), {}, None)[0]["trick"].endswith(f"(recipe `{summary.FP8_RECIPE}`)")
    monkeypatch.setattr(fp8lab, "recipes", lambda: {"other": {}}, raising=False)
    assert summary.gemm_recipe_name() is None
    monkeypatch.setattr(fp8lab, "recipes", lambda: ["a", "list"], raising=False)  # not the table: no name
    assert summary.gemm_recipe_name() is None
    assert "recipe" not in summary.rows(cm, _heads({}), {}, None)[0]["trick"]


def test_the_summary_names_the_recipe_the_granularity_section_runs():
    from fp8lab.report import sec_granularity

    assert summary.FP8_RECIPE == sec_granularity.RECIPE
