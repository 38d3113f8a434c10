"""fp8lab report: runs --quick into a temporary folder, checks the page's structure, determinism,
and a few numbers against independent computations (exact fractions, ml_dtypes)."""
import json
import math
import os
import re
from html import escape
from fractions import Fraction

import numpy as np
import pytest

import fp8lab
from fp8lab import report
from fp8lab.cli import main
from fp8lab.report.context import Context
from fp8lab.report.inputs import operands

SEED = 7


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    os.environ["FP8LAB_HARDWARE_TRACES"] = str(tmp_path_factory.mktemp("no_traces"))
    try:
        res = report.run(out, mode="quick", seed=SEED, progress=False)
    finally:
        del os.environ["FP8LAB_HARDWARE_TRACES"]
    return out, res


def section(res, sid):
    return next(s for s in res["results"]["sections"] if s["id"] == sid)


def test_writes_the_three_files_and_every_section(quick):
    out, res = quick
    assert res["failed"] == []
    for name in ("index.html", "report.md", "results.json"):
        assert (out / name).stat().st_size > 0
    on_disk = json.loads((out / "results.json").read_text())
    assert [s["id"] for s in on_disk["sections"]] == report.SECTION_IDS
    assert on_disk["meta"]["mode"] == "quick" and on_disk["meta"]["seed"] == SEED
    for s in on_disk["sections"]:
        assert s["status"] in ("ok", "partial", "unavailable")
        # One quotable sentence that carries a number (or says plainly what is missing).
        assert s["conclusion"].endswith(".") and len(s["conclusion"]) > 40
        if s["status"] != "unavailable":
            assert re.search(r"\d", s["conclusion"]), s["id"]


def test_html_is_self_contained_with_every_figure_embedded(quick):
    out, res = quick
    html = (out / "index.html").read_text()
    figures = [b for s in res["results"]["sections"] for b in s["blocks"] if b["kind"] == "figure"]
    assert figures, "the accumulation section always plots its FP32/BF16 baselines"
    assert html.count("src='data:image/png;base64,") == len(figures)
    assert not re.search(r"(src|href)=['\"]?(https?:|file:|//)", html)
    for s in res["results"]["sections"]:
        assert f"id='{s['id']}'" in html and escape(s["title"]) in html
    md = (out / "report.md").read_text()
    for s in res["results"]["sections"]:
        assert f"## {s['number']}. {s['title']}" in md
        assert f"> {s['conclusion']}" in md
    for f in figures:
        assert (out / f["file"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_seed_same_json_and_page_bit_for_bit_and_another_seed_differs(quick):
    _, res = quick
    os.environ["FP8LAB_HARDWARE_TRACES"] = "/nonexistent-fp8lab-traces"
    try:
        again, figs, failed = report.compute(Context("quick", SEED))
        other, _, _ = report.compute(Context("quick", SEED + 1), sections=["accumulation"])
    finally:
        del os.environ["FP8LAB_HARDWARE_TRACES"]
    assert failed == []
    a = json.loads(report.dumps(res["results"]))
    b = json.loads(report.dumps(again))
    for s in a["sections"] + b["sections"]:  # the folder name is the only run-dependent field
        if s["id"] == "hardware":
            s["data"].pop("directory")
    assert report.dumps(a) == report.dumps(b)
    # The page itself, byte for byte (the trace folder appears only in results.json, not on the page).
    from fp8lab.report import html_writer, markdown_writer

    out, _ = quick
    assert html_writer.render(again, figs).encode() == (out / "index.html").read_bytes()
    assert markdown_writer.render(again).encode() == (out / "report.md").read_bytes()
    for name, png in figs.items():
        assert (out / name).read_bytes() == png
    acc = lambda r: next(s for s in r["sections"] if s["id"] == "accumulation")["data"]["series"]  # noqa: E731
    assert acc(other) != acc(res["results"])


def _fl32_sequential_and_exact(a, b):
    """A scalar float32 loop (no numpy reductions) and exact rational dot products."""
    m, n, k = a.shape[0], b.shape[0], a.shape[1]
    got, exact = [], []
    fa = [[Fraction(float(v)) for v in row] for row in a]
    fb = [[Fraction(float(v)) for v in row] for row in b]
    for i in range(m):
        for j in range(n):
            acc = np.float32(0)
            for t in range(k):
                acc = np.float32(acc + np.float32(a[i, t] * b[j, t]))
            got.append(Fraction(float(acc)))
            exact.append(sum(x * y for x, y in zip(fa[i], fb[j])))
    return got, exact


def test_fp32_sequential_error_at_small_k_matches_exact_fractions(quick):
    _, res = quick
    data = section(res, "accumulation")["data"]
    k = data["K"][0]
    assert k == 256
    a, b = operands("gaussian", data["M"], data["N"], k, Context("quick", SEED).rng("accumulation", "gaussian", k))
    got, exact = _fl32_sequential_and_exact(a, b)
    rel = [abs(g - e) / abs(e) for g, e in zip(got, exact) if e != 0]
    max_rel = float(max(rel))
    mean_rel = float(sum(rel) / len(rel))
    normwise = math.sqrt(float(sum((g - e) ** 2 for g, e in zip(got, exact)) / sum(e * e for e in exact)))
    m = data["series"]["fp32_sequential"]["gaussian"][str(k)]
    # The report divides by the binary64-rounded exact value: agreement to ~1e-15 relative.
    assert m["max_rel"] == pytest.approx(max_rel, rel=1e-12)
    assert m["mean_rel"] == pytest.approx(mean_rel, rel=1e-12)
    assert m["normwise"] == pytest.approx(normwise, rel=1e-12)
    # Sanity of the oracle itself: every error obeys Higham's dot-product bound (Accuracy and Stability
    # of Numerical Algorithms, eq. 3.5) |err| <= gamma_k sum|x y|, gamma_k = k u / (1 - k u), u = 2^-24.
    u = Fraction(1, 2**24)
    gamma = k * u / (1 - k * u)
    it = iter(range(len(got)))
    for i in range(data["M"]):
        for j in range(data["N"]):
            idx = next(it)
            absdot = sum(abs(Fraction(float(x)) * Fraction(float(y))) for x, y in zip(a[i], b[j]))
            assert abs(got[idx] - exact[idx]) <= gamma * absdot


def test_e4m3_rounding_error_matches_ml_dtypes(quick):
    import ml_dtypes

    _, res = quick
    d = section(res, "formats")["data"]
    for fmt, dtype, u in (("e4m3", ml_dtypes.float8_e4m3fn, 2.0 ** -4), ("bf16", ml_dtypes.bfloat16, 2.0 ** -8)):
        info = fp8lab.format_info(fmt)
        rng = Context("quick", SEED).rng("formats", fmt)
        n = d[fmt]["samples"]
        mags = np.exp2(rng.uniform(np.log2(info["min_normal"]), np.log2(min(info["max_finite"], 2.0 ** 100)), n))
        x = (np.where(rng.integers(0, 2, n) == 1, 1.0, -1.0) * np.minimum(mags, info["max_finite"])).astype(np.float32)
        y = x.astype(dtype).astype(np.float64)
        rel = np.abs(y - x) / np.abs(x.astype(np.float64))
        assert d[fmt]["normal_range_max_rel"] == rel.max()
        assert d[fmt]["unit_roundoff"] == u and rel.max() <= u


def test_accumulation_claim_check_is_consistent_with_its_numbers(quick):
    _, res = quick
    s = section(res, "accumulation")
    data = s["data"]
    assert data["paper_claim"] == {"K": 4096, "max_rel": 0.02, "reproduced_band": [0.01, 0.03]}
    if "fp8_tensorcore" not in data["series"]:
        assert s["status"] == "partial" and "not available in this build" in json.dumps(s["blocks"])
        pytest.skip("fp8lab.gemm/quantize not in this build: the section says so")
    g = data["series"]["fp8_tensorcore"]["gaussian"]["4096"]
    lo, hi = data["paper_claim"]["reproduced_band"]
    for metric, verdict in data["claim_check"]["gaussian"].items():
        assert verdict.startswith("reproduced") == (lo <= g[metric] <= hi)
    assert ("is reproduced" in s["conclusion"]) == any(lo <= g[x] <= hi for x in data["claim_check"]["gaussian"])
    p = data["series"]["fp8_promoted_128"]["gaussian"]["4096"]
    # The paper's fix must help: promotion every 128 elements lowers every error at K = 4096.
    for metric in ("max_rel", "max_rel_top_half", "normwise"):
        assert p[metric] < g[metric]
        assert data["promotion_128_gain_gaussian"][metric] == pytest.approx(g[metric] / p[metric], rel=1e-15)
    # Without promotion the error grows with K (the truncated running sum loses more bits).
    ks = [str(k) for k in data["K"]]
    norm = [data["series"]["fp8_tensorcore"]["gaussian"][k]["normwise"] for k in ks]
    assert norm[-1] > norm[0]


def test_hardware_section_says_plainly_that_there_are_no_traces(quick):
    _, res = quick
    s = section(res, "hardware")
    assert s["status"] == "unavailable" and s["data"]["traces"] == []
    assert "No GPU traces" in s["conclusion"] and "no claim" in s["conclusion"]


def test_cli_writes_a_subset_and_rejects_bad_arguments(tmp_path, capsys):
    assert main(["report", "--quick", "--quiet", "--sections", "formats", "--out", str(tmp_path / "r")]) == 0
    assert json.loads((tmp_path / "r" / "results.json").read_text())["meta"]["sections"] == ["formats"]
    assert main(["report", "--quick", "--seed", "x1", "--out", str(tmp_path / "s")]) == 2
    assert "--seed" in capsys.readouterr().err
    assert main(["report", "--quick", "--sections", "formats,nonsense", "--out", str(tmp_path / "t")]) == 2
    assert "sections" in capsys.readouterr().err and "nonsense" not in os.listdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    assert main(["report", "--quick", "--out", str(tmp_path / "afile")]) == 2
    assert "out" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["report", "--quick", "--full"])
    assert e.value.code == 2


def test_context_rejects_bad_mode_and_seed():
    with pytest.raises(ValueError, match="mode"):
        Context("fast", 0)
    with pytest.raises(ValueError, match="seed"):
        Context("quick", -1)


def test_hardware_section_checks_traces_when_a_folder_has_them(tmp_path, monkeypatch):
    golden = pytest.importorskip("fp8lab.golden")
    # A stand-in for a GPU trace: recorded by the emulator itself, so the verdict must be bit-identical;
    # a corrupt file next to it is reported as an error without stopping the section.
    trace = golden.record("cast", None, 3)
    trace.write(tmp_path / "a_cast.safetensors")
    monkeypatch.setenv("FP8LAB_HARDWARE_TRACES", str(tmp_path))
    from fp8lab.report import sec_hardware

    s = sec_hardware.run(Context("quick", 0)).to_json()
    assert s["status"] == "ok" and s["data"]["traces"] == ["a_cast.safetensors"]
    assert s["data"]["checked"][0]["verdict"] == "bit-identical"
    assert s["conclusion"].startswith("1 of 1 recorded GPU trace(s) are reproduced bit for bit")
    (tmp_path / "b_broken.safetensors").write_bytes(b"not a trace")
    s = sec_hardware.run(Context("quick", 0)).to_json()
    assert [c["verdict"] for c in s["data"]["checked"]] == ["bit-identical", "error"]
    assert s["conclusion"].startswith("1 of 2")


def test_bf16_gemm_error_matches_ml_dtypes_and_a_float64_matmul(quick):
    import ml_dtypes

    _, res = quick
    d = section(res, "granularity")["data"]
    a, b = operands("llm_outliers", d["M"], d["N"], d["K"], Context("quick", SEED).rng("granularity", "llm_outliers"))
    ref = a.astype(np.float64) @ b.astype(np.float64).T
    a16 = a.astype(ml_dtypes.bfloat16).astype(np.float64)
    b16 = b.astype(ml_dtypes.bfloat16).astype(np.float64)
    err = a16 @ b16.T - ref
    assert d["results"]["llm_outliers"]["bf16|none"]["normwise"] == pytest.approx(
        np.linalg.norm(err) / np.linalg.norm(ref), rel=1e-9)


def test_deepseek_scale_rule_error_matches_a_numpy_reformulation(quick):
    """DeepSeek-V3 act_quant (inference/kernel.py): s = max(amax, 1e-4) / 448 in FP32, q = e4m3(x / s)."""
    import ml_dtypes

    _, res = quick
    s = section(res, "scales")
    if s["status"] == "unavailable":
        pytest.skip("no quantiser in this build: the section says so")
    d = s["data"]
    from fp8lab.report.inputs import sample

    x = sample("llm_outliers", (d["rows"], d["K"]), Context("quick", SEED).rng("scales", "llm_outliers"))
    t = x.reshape(d["rows"], d["K"] // 128, 128)
    amax = np.maximum(np.abs(t).max(axis=2, keepdims=True), np.float32(1e-4))
    scale = (amax / np.float32(448.0)).astype(np.float32)
    q = (t / scale).astype(np.float32).astype(ml_dtypes.float8_e4m3fn).astype(np.float64)
    deq = (q * scale.astype(np.float64)).reshape(x.shape)
    x64 = x.astype(np.float64)
    want = np.linalg.norm(deq - x64) / np.linalg.norm(x64)
    assert d["quant_error"]["llm_outliers"]["deepseek"]["normwise"] == pytest.approx(want, rel=1e-12)


def test_mla_cache_bytes_match_the_published_layouts(quick):
    _, res = quick
    s = section(res, "mla")
    if s["status"] == "unavailable":
        pytest.skip("no MLA emulator in this build: the section says so")
    kv = s["data"]["kv_bytes_per_token"]
    heads, nope, rope, v, kv_lora = 128, 128, 64, 128, 512  # DeepSeek-V3 config (REFERENCE.md, MLA)
    assert kv["mha_bf16"] == heads * (nope + rope + v) * 2
    assert kv["mla_bf16"] == (kv_lora + rope) * 2
    # FlashMLA FP8 cache: 512 E4M3 bytes + 4 FP32 scales (one per 128) + 64 BF16 RoPE values.
    assert kv["mla_fp8"] == kv_lora + 4 * (kv_lora // 128) + rope * 2


# --- the summary, the seeds, the figures, the page (issue 20) ------------------------------------


def test_summary_has_one_row_per_trick_with_numbers_or_a_plain_not_measured(quick):
    _, res = quick
    sm = res["results"]["summary"]
    assert sm["columns"][0] == "trick" and len(sm["columns"]) == 6
    tricks = [r["trick"].split(":")[0] for r in sm["rows"]]
    assert tricks == ["FP8 GEMMs", "Promotion", "Power-of-two (UE8M0) scales",
                      "FP8 activation cache and BF16 AdamW moments", "MLA", "DeepSeekMoE",
                      "Multi-token prediction (one extra depth)", "Blackwell block-scaled recipes"]
    for r in sm["rows"]:
        assert set(r) == {"trick", "saves", "costs", "claim", "ours", "verdict"}
        assert re.search(r"\d", r["saves"]) and r["verdict"], r["trick"]
        # A measured cost is a number with its spread over seeds, or the words "not measured".
        assert ("±" in r["costs"] and "seeds" in r["costs"]) or "not measured" in r["costs"], r["trick"]
    if sm["training"] is None:  # no training lab in this build: said plainly, no placeholder number
        fp8 = sm["rows"][0]
        assert fp8["ours"].startswith("not measured") and "not measured" in fp8["costs"]
    q = sm["question"]
    assert q.startswith("Is DeepSeek-V3 cheap") and len(q) > 400
    assert ("do not say" in q) if sm["training"] is None else ("The training lab measured the loss cost" in q)
    html = (quick[0] / "index.html").read_text()
    assert html.index("class='summary'") < html.index("<h2>Conclusions</h2>")
    assert html.count("<tr>") > 7 and escape(sm["rows"][4]["saves"]) in html


def test_cost_model_in_results_json_with_formula_and_source_for_every_figure(quick):
    out, _ = quick
    cm = json.loads((out / "results.json").read_text())["cost_model"]
    assert len(cm["figures"]) > 100
    for name, f in cm["figures"].items():
        assert set(f) == {"value", "unit", "formula", "inputs", "source", "note"}, name
        assert f["source"] in cm["sources"] and (f["formula"] is None) == (f["source"] != "derived"), name
    assert cm["figures"]["kv_mla_bf16_model"]["value"] == 70272
    assert cm["figures"]["weights_bytes_bf16"]["formula"] == "elem_bytes_bf16*total_params"


def test_headlines_have_spread_over_seeds_and_replicate_zero_is_the_section(quick):
    _, res = quick
    from fp8lab.report import headlines

    h = res["results"]["headlines"]
    assert h["replicates"] == 3  # quick; default mode runs 5 (headlines.replicates)
    assert headlines.replicates(Context("default", 0)) >= 5
    ctx = Context("quick", SEED)
    for name in ("scales", "routing", "granularity"):
        m = h["measurements"][name]
        assert m["status"] == "ok"
        fn, first = headlines.MEASUREMENTS[name]
        sec = section(res, name)
        # The headline measurement run at replicate 0 reproduces the section's own number exactly.
        assert fn(ctx, 0) == first(sec["data"])
        for fig, st in m["figures"].items():
            vals = st["values"]
            assert len(vals) == 3 and st["mean"] == pytest.approx(np.mean(vals), rel=1e-12)
            assert st["sd"] == pytest.approx(np.std(vals, ddof=1), rel=1e-12)
            assert st["noisy"] == (st["sd"] > 0.10 * abs(st["mean"]))
            assert len(set(vals)) == 3, (name, fig)  # independent inputs per seed
        assert sec["blocks"][-1]["caption"].startswith("Seed-to-seed spread")
    noisy = res["results"]["summary"]["noisy"]
    flagged = {(n["measurement"], n["name"]) for n in noisy}
    for (meas, fig) in flagged:
        assert h["measurements"][meas]["figures"][fig]["noisy"]
    html = (quick[0] / "index.html").read_text()
    assert ("Too noisy to quote at this run" in html) == bool(noisy)


def test_every_figure_was_inspected_one_legend_off_the_data_labels_on_every_panel(quick):
    _, res = quick
    figures = [b for s in res["results"]["sections"] for b in s["blocks"] if b["kind"] == "figure"]
    assert any(f["file"].startswith("mla_") for f in figures), "an MLA figure"
    for f in figures:
        ins = f["inspected"]
        assert ins["legends"] == 1 and not ins["legend_covers_data"], f["file"]
        assert ins["axes"] and all(a["xlabel"] and a["ylabel"] for a in ins["axes"]), f["file"]


def test_figure_inspection_refuses_bad_figures():
    import matplotlib.pyplot as plt

    from fp8lab.report import plots

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [1, 2, 3], label="a")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    with pytest.raises(ValueError, match="0 legends"):
        plots.inspect(fig)
    ax.legend(loc="center")  # sits on the point (2, 2)
    with pytest.raises(ValueError, match="covers data"):
        plots.inspect(fig)
    ax.get_legend().remove()
    fig.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0))
    ax.set_xlabel("")
    with pytest.raises(ValueError, match="lacks an axis label"):
        plots.inspect(fig)
    ax.set_xlabel("x")
    assert plots.inspect(fig)["legends"] == 1
    plt.close(fig)


def test_screenshot_at_1400px_renders_the_page(quick, tmp_path):
    """Headless Chromium (tools/screenshot.sh) renders the page at 1400 px; the PNG has that width and
    a page's worth of height. A missing browser fails under CI (tools/install-deps.sh installs it)."""
    import shutil
    import subprocess
    import struct
    from pathlib import Path

    if not any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")):
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI (tools/install-deps.sh) but is not installed")
        pytest.skip("chromium is not installed here; tools/install-deps.sh installs it")
    out, _ = quick
    script = Path(__file__).resolve().parents[2] / "tools" / "screenshot.sh"
    png = tmp_path / "page.png"
    subprocess.run(["bash", str(script), str(out), str(png)], check=True, timeout=120,
                   env={**os.environ, "WIDTH": "1400", "HEIGHT": "2400"}, capture_output=True)
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    assert (width, height) == (1400, 2400)
    assert png.stat().st_size > 50_000  # text and tables, not a blank page
    # The DOM as the browser built it: the summary table with one row per trick, and every figure.
    browser = next(b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b))
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          (out / "index.html").resolve().as_uri()], check=True, timeout=120, capture_output=True,
                         text=True).stdout
    table = dom[dom.index('<table class="summary">'):]
    table = table[:table.index("</table>")]
    assert table.count("<tr>") == 1 + len(quick[1]["results"]["summary"]["rows"])
    figures = [b for s in quick[1]["results"]["sections"] for b in s["blocks"] if b["kind"] == "figure"]
    assert dom.count('src="data:image/png;base64,') == len(figures)
