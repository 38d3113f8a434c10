"""Section: what each trick saves — the cost model (cost_model.py) as tables, one per group, every
figure with its formula or its source. Nothing here is measured; results.json holds the same
figures under this section's data and at the top level ("cost_model")."""
from __future__ import annotations

from . import cost_model, plots
from .context import Context
from .metrics import pct
from .section import Section


def fmt(value, unit: str) -> str:
    """One figure as the page writes it: fractions as percentages (the page's one format for
    fractions and relative errors), integers with thousands separators, the rest to 4 digits."""
    if unit.startswith("fraction"):
        return pct(value)
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e15):
        return f"{int(value):,}"
    return f"{value:.6g}"


def run(ctx: Context) -> Section:
    sec = Section("costs", 0, "Savings: the cost model, from first principles and datasheets")
    ctx.progress.stage("cost model", 1)
    m = cost_model.build()
    sec.data = {"figures_in": "results.json: cost_model (every figure with value, unit, formula, inputs, source)",
                "count": len(m.figures)}
    f = m.figures
    v = {k: e["value"] for k, e in f.items()}
    sec.conclusion = (
        f"On paper FP8 doubles Hopper's tensor-core peak ({v['H800_fp8_tflops']:.0f} vs {v['H800_bf16_tflops']:.1f} "
        f"dense TFLOP/s on H800, H100 and H200) and halves weight bytes ({pct(v['weights_fp8_over_bf16'])} of BF16 "
        f"for the whole model), its promotion would take {pct(v['H800_promotion_time_share'])} of the tensor-core "
        f"time if not overlapped, MoE cuts training FLOPs per token {v['moe_flops_saving']:.3g}-fold against a dense "
        f"model of the same size ({v['train_flops_per_token'] / 1e9:.0f} GFLOP), MLA caches {v['kv_mla_bf16_model']:,.0f} "
        f"bytes per token ({v['mla_vs_mha']:.3g}x less than MHA) and MTP adds {pct(v['mtp_train_overhead'])} to the "
        f"training FLOPs.")
    sec.para("Every figure below is an input with its source or a formula over the figures it names; the formula "
             "shown is the expression the report evaluated. Dense peaks are half the datasheets' with-sparsity "
             "figures. The sources are listed after the tables.")
    for group, names in m.groups.items():
        rows = []
        for n in names:
            e = f[n]
            how = e["formula"] if e["formula"] else f"given ({e['source']})"
            rows.append([f"`{n}`", fmt(e["value"], e["unit"]), e["unit"], how + (f" — {e['note']}" if e["note"] else "")])
        sec.table(group, ["figure", "value", "unit", "formula or source"], rows, text_columns=[2, 3])
    sec.table("Sources", ["key", "source"], [[k, s] for k, s in m.to_json()["sources"].items()], text_columns=[1])
    ncs = [32, 64, 128, 256, 512]
    share = v["H800_promotion_time_share"]
    sec.figure("promotion_cost", plots.lines(
        {"promotion time / tensor-core time (serialised)": (ncs, [share * 128 / nc for nc in ncs])},
        "What promotion costs on H800 vs how often it runs", "promotion interval N_C (elements of K)",
        "fraction of tensor-core time", logy=True, hlines={"fully hidden by a second warpgroup up to 1.0": 1.0}),
        "CUDA-core time of promotion (one FFMA per output element per N_C) over the tensor-core time of the "
        "FP8 WGMMAs it follows, at datasheet peaks; the accumulation section shows what each N_C buys in error.")
    ctx.progress.step()
    ctx.progress.finish()
    return sec
