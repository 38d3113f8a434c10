"""The loss cost of the Blackwell-era training recipes (DeepGEMM SM100, MXFP8, NVFP4), for the
"Blackwell and microscaling" section and the summary table: the training lab (``fp8lab.torch.train``)
run once per (recipe, seed) as the training section does — the references ``bf16`` at every seed (its
seed-to-seed spread is the noise floor) and ``deepseek_fp8`` and each new recipe at the first seed —
and each recipe's final validation loss against ``bf16`` and against ``deepseek_fp8`` (paired by seed).

Sized for the report's budget, not for the training section's model: on the tiny model a step of
4 x 32 tokens costs 0.17-0.25 CPU-s for the block-scaled recipes and 0.22 for ``bf16`` (instruction by
instruction), against 0.09 for ``deepseek_fp8`` (bench/bench_train.py), so every mode trains the ``tiny``
model, with few steps. Runs come from the training
lab's cache when every input is identical; no wall-clock figure enters the results."""
from __future__ import annotations

import importlib

from .sec_training import _pct, _verdict  # the training section's wording of figures and noise

#: (label, training recipe of fp8lab.torch.recipes()); a recipe this build lacks is listed as not measured.
RECIPES = [
    ("DeepGEMM SM100 FP8", "deepgemm_sm100_fp8"),
    ("MXFP8 (TransformerEngine)", "mxfp8_te"),
    ("MXFP8 (torchao RCEIL)", "mxfp8_torchao_rceil"),
    ("NVFP4 (NVIDIA's pretraining recipe)", "nvfp4"),
]
REFERENCES = ("bf16", "deepseek_fp8")

# Per mode: model, steps, batch, seq, eval interval and batches, GEMM sampling, seeds of bf16.
# quick is a smoke run (the tests run it twice); default is the page's measurement.
PLANS = {
    "quick": dict(model="tiny", steps=8, batch=2, seq=16, eval_every=8, eval_batches=1, gemm_sample_every=0, seeds=3),
    "default": dict(model="tiny", steps=48, batch=4, seq=32, eval_every=16, eval_batches=2, gemm_sample_every=16,
                    seeds=3),
    "full": dict(model="tiny", steps=200, batch=4, seq=32, eval_every=25, eval_batches=4, gemm_sample_every=50,
                 seeds=5),
}


def _rel(a, b):
    return None if a is None or b is None else (a - b) / b


def measure(ctx) -> dict:
    """Train the plan's jobs and return the section's ``loss_cost`` data (JSON-ready)."""
    try:
        tm = importlib.import_module("fp8lab.torch.train")
        ft = importlib.import_module("fp8lab.torch")
    except ImportError as err:
        return {"available": False, "why": f"no training lab in this build (fp8lab.torch: {err})"}
    plan = dict(PLANS[ctx.mode])
    seeds = [ctx.seed + i for i in range(plan.pop("seeds"))]
    model = plan.pop("model")
    known = set(ft.recipes())
    names = [n for _, n in RECIPES if n in known]
    jobs = [("bf16", s) for s in seeds] + [(n, seeds[0]) for n in ("deepseek_fp8", *names)]
    ctx.progress.stage("microscaling training", len(jobs))
    runs = []
    for name, seed in jobs:
        runs.extend(tm.train([name], seeds=[seed], model=model, progress=False, **plan)["runs"])
        ctx.progress.step(f"{name} seed {seed}")
    ctx.progress.finish()
    s = tm.summarise(runs)
    finals = {r["recipe"]: r["final_val"] for r in runs if r["seed"] == seeds[0]}
    losses = {r["recipe"]: r["train_loss"] for r in runs if r["seed"] == seeds[0]}
    bf16_finals = [r["final_val"] for r in runs if r["recipe"] == "bf16" and r["final_val"] is not None]
    out = {"available": True, "plan": dict(plan, model=model, seeds=seeds), "noise_floor_bf16": s["noise_floor"]["bf16"],
           "bf16_final_val": bf16_finals, "recipes": {},
           "not_measured": [n for _, n in RECIPES if n not in known]}
    for name in ("deepseek_fp8", *names):
        r = s["recipes"][name]
        same = [o for o in ("deepseek_fp8", *names) if o != name and losses[o] == losses[name]]
        out["recipes"][name] = {
            "final_val": finals[name], "rel_error_vs_bf16": r["rel_error_vs_bf16"],
            "exceeds_bf16_noise": r["exceeds_bf16_noise"],
            "rel_error_vs_deepseek_fp8": _rel(finals[name], finals["deepseek_fp8"]) if name != "deepseek_fp8" else None,
            "diverged": [d["step"] for d in r["diverged"]], "gemm_error_mean": r["gemm_error_mean"],
            "same_train_loss_bits_as": same}
    return out


def label(name: str) -> str:
    return dict((n, lab) for lab, n in RECIPES).get(name, name)


def write(sec, data: dict) -> None:
    """The section's loss-cost table and the words around it."""
    if not data.get("available"):
        sec.para(f"Loss cost: not measured — {data.get('why', 'the training lab did not run')}.")
        return
    p, floor = data["plan"], data["noise_floor_bf16"]
    rows = []
    for name, r in data["recipes"].items():
        rows.append([label(name) if name != "deepseek_fp8" else "DeepSeek-V3 Hopper (deepseek_fp8)", name,
                     "n/a" if r["final_val"] is None else f"{r['final_val']:.4f}", _pct(r["rel_error_vs_bf16"]),
                     _verdict(r["rel_error_vs_bf16"], floor), _pct(r["rel_error_vs_deepseek_fp8"]),
                     " / ".join(_pct(r["gemm_error_mean"][g], False) for g in ("fprop", "dgrad", "wgrad")),
                     ", ".join(f"step {s}" for s in r["diverged"]) or "no"])
    sec.table(f"Loss cost: final validation loss (nats/byte) after {p['steps']} steps of the tiny DeepSeek-shaped "
              f"model ({p['batch']} x {p['seq']} byte tokens per step), seed {p['seeds'][0]}; relative to bf16 and to "
              f"deepseek_fp8 of the same seed; bf16 noise floor {_pct(floor, False)} over seeds {p['seeds']}",
              ["recipe", "training row", "final val", "vs bf16", "", "vs deepseek_fp8",
               "GEMM error fprop / dgrad / wgrad", "diverged"], rows, text_columns=[0, 1, 4, 6])
    words = ("Every Linear's Fprop, Dgrad and Wgrad run through the recipe's quantisers and GEMM rows "
             "(fp8lab.torch.recipe(name)); everything else, the initialisation and the batches are the same for "
             "every recipe of one seed. The noise floor is (max - min) / mean of bf16's final validation loss over "
             "its seeds; a difference is called one only above it, for deepseek_fp8 too, whose own spread was not "
             "measured. GEMM error: normwise, against the float64 product of the pass's unquantised operands, "
             f"sampled every {p['gemm_sample_every']} steps (n/a when not sampled). The size is the report's budget, not a statement about scale: {p['steps']} steps of a "
             "tiny model, so that the section fits the report's time.")
    groups = _identical_groups(data["recipes"])
    if groups:
        words += (" Bit-identical training-loss curves: " + "; ".join(" = ".join(g) for g in groups) + ". With "
                  "power-of-two scales an element's E4M3 bits do not depend on which power of two scales it unless it "
                  "leaves E4M3's normal range, so 1x32 and 1x128 UE8M0 blocks and the E8M0 rounding modes give the same "
                  "products whenever no element falls into E4M3's subnormal range after scaling.")
    for name in data["not_measured"]:
        words += f" {label(name)} ({name}): not measured, this build has no such training recipe."
    sec.para(words)


def _identical_groups(recipes: dict) -> list[list[str]]:
    seen, groups = set(), []
    for name, r in recipes.items():
        if name in seen or not r["same_train_loss_bits_as"]:
            continue
        g = [name, *r["same_train_loss_bits_as"]]
        seen.update(g)
        groups.append(g)
    return groups


def sentence(data: dict) -> str:
    """One sentence for the section's conclusion and the summary table."""
    if not data.get("available"):
        return "Their loss cost was not measured."
    parts = [f"{name} {_pct(r['rel_error_vs_bf16'])}" for name, r in data["recipes"].items() if name != "deepseek_fp8"]
    ds = data["recipes"]["deepseek_fp8"]["rel_error_vs_bf16"]
    return (f"Loss cost after {data['plan']['steps']} steps of the tiny model, final validation loss vs bf16: "
            + ", ".join(parts) + f" (deepseek_fp8 {_pct(ds)}; bf16 seed spread "
            f"{_pct(data['noise_floor_bf16'], False)} over {len(data['plan']['seeds'])} seeds).")
