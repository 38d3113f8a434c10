"""fp8lab.torch training lab: the model, data, loop, cache, CLI and bad-input errors, on tiny runs
(the real runs are `fp8lab train` and the report's training section)."""
import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fp8lab.torch as ft  # noqa: E402
from fp8lab.cli import main  # noqa: E402
import importlib  # noqa: E402

tm = importlib.import_module("fp8lab.torch.train")
TINY = dict(model="tiny", steps=3, batch=2, seq=16, eval_every=3, eval_batches=1, progress=False, gemm_sample_every=2)


def test_same_seed_same_loss_bits_and_recipes_are_paired(tmp_path):
    a = ft.train(["deepseek_fp8"], seeds=[1], cache_dir=False, **TINY)["runs"][0]
    b = ft.train(["deepseek_fp8"], seeds=[1], cache_dir=False, **TINY)["runs"][0]
    for key in ("train_loss", "grad_norm", "val", "expert_load_max_over_mean", "gemm_error"):
        assert a[key] == b[key], key
    assert len(a["train_loss"]) == 3 and all(math.isfinite(v) for v in a["train_loss"])
    # Another seed: another initialisation and other batches.
    c = ft.train(["deepseek_fp8"], seeds=[2], cache_dir=False, **TINY)["runs"][0]
    assert c["train_loss"][0] != a["train_loss"][0]
    # Per-GEMM error sampled at steps 0 and 2, each of the three passes; FP8 costs percent-level error.
    for p in ("fprop", "dgrad", "wgrad"):
        assert [e[0] for e in a["gemm_error"][p]] == [0, 2]
        assert all(0.001 < e[1] < 0.2 for e in a["gemm_error"][p])


def test_results_files_summary_and_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    res = ft.train(["fp32", "deepseek_fp8"], seeds=[0, 1], cache_dir=cache, out=tmp_path / "o", **TINY)
    on_disk = json.loads((tmp_path / "o" / "results.json").read_text())
    assert {r["recipe"] for r in on_disk["runs"]} == {"fp32", "deepseek_fp8"}
    assert on_disk["recipes"]["deepseek_fp8"]["passes"]["fprop"] == {"gemm_recipe": "deepseek_v3_fp8_linear"}
    assert on_disk["recipes"]["deepseek_fp8"]["resolved"]["fprop"]["b"]["tile"] == [128, 128]
    assert (tmp_path / "o" / "loss_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "deepseek_fp8" in (tmp_path / "o" / "summary.md").read_text()
    s = res["summary"]
    runs = {(r["recipe"], r["seed"]): r for r in res["runs"]}
    # Relative error vs fp32 is the mean of the per-seed paired differences; the noise floor is the
    # seed spread of fp32 itself.
    want = np.mean([(runs["deepseek_fp8", k]["final_val"] - runs["fp32", k]["final_val"]) / runs["fp32", k]["final_val"]
                    for k in (0, 1)])
    assert s["recipes"]["deepseek_fp8"]["rel_error_vs_fp32"] == pytest.approx(want, rel=1e-12)
    f = [runs["fp32", k]["final_val"] for k in (0, 1)]
    assert s["noise_floor"]["fp32"] == pytest.approx((max(f) - min(f)) / np.mean(f), rel=1e-12)
    # Identical inputs: every run comes from the cache, no training.
    monkeypatch.setattr(tm, "run_one", lambda *a, **k: pytest.fail("trained although cached"))
    again = ft.train(["fp32", "deepseek_fp8"], seeds=[0, 1], cache_dir=cache, **TINY)
    assert [r["train_loss"] for r in again["runs"]] == [r["train_loss"] for r in res["runs"]]
    # Any input changed (a recipe row's detail, the steps, the torch thread count): retrained.
    row = ft.recipe("deepseek_fp8")
    row["passes"]["wgrad"] = {"gemm_recipe": {"base": "deepseek_v3_fp8_wgrad", "gemm": {"out": "bf16"}}}
    for args in (dict(recipes=[row]), dict(recipes=["fp32"], threads=2), dict(recipes=["fp32"], lr=1e-3)):
        kw = dict(TINY, **{k: v for k, v in args.items() if k != "recipes"})
        with pytest.raises(pytest.fail.Exception):
            ft.train(args["recipes"], seeds=[0], cache_dir=cache, **kw)


def test_divergence_is_detected_with_its_step():
    r = ft.train(["fp32"], seeds=[0], cache_dir=False, **dict(TINY, steps=30, eval_every=30), lr=50.0,
                 warmup=0, clip=1e9)["runs"][0]
    assert r["diverged"] and r["divergence_step"] is not None and r["divergence_step"] < 30
    assert len(r["train_loss"]) <= r["divergence_step"] + 1
    s = tm.summarise([r])
    assert s["recipes"]["fp32"]["diverged"][0]["step"] == r["divergence_step"]


def test_nan_in_an_emulated_gemm_is_a_divergence_record():
    torch.manual_seed(0)
    model = ft.Transformer(ft.sized("tiny"))
    ft.convert(model, "deepseek_fp8")
    with torch.no_grad():
        model.layers[0].attn.wq.weight[0, 0] = float("nan")
    with pytest.raises(ft.NonFiniteError, match=r"layers\.0\.attn\.wq: weight holds nan at \[0, 0\]"):
        model(torch.zeros(1, 4, dtype=torch.int64))


def test_convert_keeps_head_and_gate_and_marks_attention_output():
    model = ft.Transformer(ft.sized("tiny"))
    ft.convert(model, "deepseek_fp8")
    assert type(model.head) is torch.nn.Linear
    assert type(model.layers[1].ffn.gate.gate) is torch.nn.Linear
    assert isinstance(model.layers[1].ffn.experts[0].w1, ft.Fp8Linear)
    assert model.layers[0].attn.wo.role == "attn_out" and model.layers[0].attn.wq.role == ""
    every = ft.convert(ft.Transformer(ft.sized("tiny")), "bf16", skip=())
    assert isinstance(every.head, ft.Fp8Linear) and isinstance(every.layers[1].ffn.gate.gate, ft.Fp8Linear)
    # A user's own model.
    mine = torch.nn.Sequential(torch.nn.Linear(32, 48), torch.nn.GELU(), torch.nn.Linear(48, 8))
    x = torch.randn(5, 32)
    want = mine(x)
    ft.convert(mine, "fp32")
    assert isinstance(mine[0], ft.Fp8Linear)
    torch.testing.assert_close(mine(x), want, rtol=0, atol=0)


def test_bias_update_follows_the_load():
    moe = ft.model.MoE(ft.sized("tiny"))
    moe.last_load = torch.tensor([10, 0, 3, 3])
    moe.update_bias(0.5)
    assert moe.gate.bias.tolist() == [-0.5, 0.5, 0.5, 0.5]  # mean 4: above -> down, below -> up
    # The bias selects but does not weigh: a large bias on expert 3 makes every token pick it, with
    # weights from the unbiased affinities.
    moe.gate.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 10.0]))
    x = torch.randn(6, 64)
    w, idx = moe.gate(x)
    assert (idx == 3).any(dim=1).all()
    s = torch.sigmoid(moe.gate.gate(x))
    torch.testing.assert_close(w, s.gather(1, idx) / s.gather(1, idx).sum(1, keepdim=True))


def test_bf16_moments_are_stored_in_bf16_and_update_in_fp32():
    p = torch.nn.Parameter(torch.tensor([[1.0, -2.0]]))
    opt = ft.AdamW([p], moments="bf16", weight_decay=0.0)
    p.grad = torch.tensor([[0.1, 1.0 / 3.0]])
    opt.step(0.01)
    assert opt.m[0].dtype == torch.bfloat16
    assert opt.m[0][0, 1].item() == float(torch.tensor(0.1 / 3.0).to(torch.bfloat16))
    # First step: m_hat / sqrt(v_hat) = sign(g), so each weight moves by lr (eps aside).
    torch.testing.assert_close(p.detach(), torch.tensor([[0.99, -2.01]]), rtol=0, atol=1e-6)


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match=r"unknown recipe 'fp4_magic'; known recipes: fp32, bf16, deepseek_fp8"):
        ft.train(["fp4_magic"], cache_dir=False, **TINY)
    with pytest.raises(ValueError, match="no nn.Linear layer to convert"):
        ft.convert(torch.nn.Sequential(torch.nn.ReLU()), "deepseek_fp8")
    with pytest.raises(ValueError, match="skip=.*keeps them all"):
        ft.convert(torch.nn.Sequential(torch.nn.Linear(4, 4)), "deepseek_fp8", skip=lambda n, m: True)
    short = tmp_path / "short.txt"
    short.write_bytes(b"too short")
    with pytest.raises(ValueError, match=r"short.txt.*too short for one sequence of 16 tokens"):
        ft.train(["fp32"], text=short, cache_dir=False, **TINY)
    with pytest.raises(ValueError, match="--text: .* not a readable file"):
        ft.train(["fp32"], text=tmp_path / "missing.txt", cache_dir=False, **TINY)
    with pytest.raises(ValueError, match=r"data: element 2 is nan"):
        ft.ByteData(np.array([65.0, 66.0, np.nan]), "array")
    with pytest.raises(ValueError, match=r"values must lie in 0..255"):
        ft.ByteData(np.array([65, 300]), "array")
    with pytest.raises(ValueError, match="steps: expected a positive int"):
        ft.train(["fp32"], cache_dir=False, **dict(TINY, steps=0))
    with pytest.raises(ValueError, match="seq: 100 exceeds"):
        ft.train(["fp32"], cache_dir=False, **dict(TINY, seq=100))


def test_text_file_and_cli(tmp_path, capsys):
    text = tmp_path / "corpus.txt"
    text.write_bytes(bytes(range(32, 127)) * 20)
    out = tmp_path / "run"
    rc = main(["train", "--recipes", "fp32,deepseek_fp8", "--model", "tiny", "--steps", "2", "--batch", "2",
               "--seq", "16", "--eval-every", "2", "--eval-batches", "1", "--text", str(text), "--out", str(out),
               "--no-cache", "--quiet"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert res["meta"]["data"]["name"] == "corpus.txt" and res["meta"]["data"]["bytes"] == 95 * 20
    assert "| deepseek_fp8 |" in capsys.readouterr().out
    assert main(["train", "--recipes", "nope", "--out", str(out), "--no-cache", "--quiet"]) == 2
    assert "unknown recipe 'nope'" in capsys.readouterr().err


def test_runs_without_the_bias_update_are_their_own_group(tmp_path):
    res = ft.train(["fp32"], seeds=[0], cache_dir=False, out=tmp_path, bias_update=False,
                   extra_runs=[("fp32", 0, {"bias_update": True})], **TINY)
    assert set(res["summary"]["recipes"]) == {"fp32 (no bias update)", "fp32"}
    assert [r["bias_update"] for r in res["summary"]["router"]] == [False, True]
    assert (tmp_path / "loss_curves.png").stat().st_size > 0


def test_a_corrupt_cache_entry_is_recomputed_and_no_temporary_is_left(tmp_path):
    """A cache file cut off mid-write (or not a run record) is treated as absent: the run trains
    again and the entry is rewritten whole; temporaries are per process and replaced, never left."""
    cache = tmp_path / "cache"
    first = ft.train(["fp32"], seeds=[0], cache_dir=cache, **TINY)["runs"][0]
    (entry,) = cache.glob("*.json")
    for junk in (entry.read_text()[:40], "[1, 2]", "\xff"):
        entry.write_text(junk)
        again = ft.train(["fp32"], seeds=[0], cache_dir=cache, **TINY)["runs"][0]
        assert again["train_loss"] == first["train_loss"]
        assert json.loads(entry.read_text())["final_val"] == first["final_val"]
    assert not list(cache.glob("*.tmp"))
