"""The top of the page: one row per trick (what it saves, from the cost model; what it costs, measured
over seeds; the paper's claim beside ours; a verdict), the paragraph that answers the project's
question, and the list of figures too noisy to quote at this run's size.

Everything here is read from the cost model, the seed replicates and the sections' data; nothing is
measured or assumed here. A cell with no measurement says "not measured" and why."""
from __future__ import annotations

from .inputs import DISTRIBUTIONS
from .metrics import METRIC_LABELS, pct

COLUMNS = ["trick", "what it saves (cost model)", "what it costs (measured)", "paper's claim", "ours",
           "verdict"]

# Figures the summary quotes: (measurement, figure) -> words for the noisy list.
LABELS = {
    ("accumulation", "tc_gaussian_max_rel_top_half"): "FP8 accumulation without promotion, K = 4096, Gaussian: "
                                                      "max over the larger half of |exact|",
    ("accumulation", "tc_gaussian_normwise"): "FP8 accumulation without promotion, K = 4096, Gaussian: normwise",
    ("accumulation", "tc_gaussian_max_rel"): "FP8 accumulation without promotion, K = 4096, Gaussian: "
                                             "elementwise max",
    ("accumulation", "p128_gaussian_normwise"): "FP8 accumulation promoted every 128, K = 4096: normwise",
    ("accumulation", "promotion_gain_normwise"): "what promotion every 128 buys (normwise error ratio)",
    ("accumulation", "p128_gaussian_max_rel_top_half"): "FP8 accumulation promoted every 128, K = 4096: max over "
                                                        "the larger half of |exact|",
    ("scales", "ue8m0_normwise"): "1x128 E4M3 activation quantisation (UE8M0 scales): normwise",
    ("granularity", "recipe_normwise"): "DeepSeek-V3 FP8 GEMM recipe end to end, outlier-heavy activations: normwise",
    ("granularity", "bf16_normwise"): "BF16 GEMM, outlier-heavy activations: normwise",
    ("scales", "fp32_scale_normwise"): "1x128 E4M3 activation quantisation (FP32 scales): normwise",
    ("scales", "ue8m0_penalty"): "UE8M0 (power-of-two) scale penalty: normwise error ratio",
    ("routing", "gate_flip_fraction"): "tokens whose expert set differs between the BF16 and FP32 gates",
    ("mla", "fp8_cache_normwise"): "MLA decode output, FP8 vs BF16 latent cache: normwise",
}


def spread(st: dict | None, kind: str = "pct") -> str:
    """mean ± sd (min-max, n seeds) of one replicated figure, in one format for the whole page."""
    if not st or st.get("mean") is None:
        return "not measured"
    f = pct if kind == "pct" else (lambda x: f"{x:.3g}x")
    return f"{f(st['mean'])} ± {f(st['sd'])} (range {f(st['min'])} to {f(st['max'])}; {st['n']} seeds)"


# The figure each section's conclusion leads with, re-stated with its spread over seeds.
KEY_FIGURE = {"accumulation": ("tc_gaussian_normwise", "pct"), "granularity": ("recipe_normwise", "pct"),
              "scales": ("ue8m0_penalty", "x"), "routing": ("gate_flip_fraction", "pct"),
              "mla": ("fp8_cache_normwise", "pct")}


def conclusion_spread(meas: str, m: dict) -> str:
    """One sentence for a section's conclusion: its key figure over all seeds."""
    name, kind = KEY_FIGURE[meas]
    st = m["figures"].get(name)
    if not st:
        return ""
    tail = " — too noisy at this size to quote more than its order of magnitude" if st["noisy"] else ""
    return f" Over {st['n']} seeds, {LABELS[(meas, name)]}: {spread(st, kind)}{tail}."


def spread_table(meas: str, m: dict, n: int) -> dict:
    """A table block for a section: its headline figures over n seeds (this page's seed first)."""
    rows = []
    for name, st in m["figures"].items():
        kind = "x" if name.endswith(("penalty", "gain_normwise")) else "pct"
        f = pct if kind == "pct" else (lambda x: f"{x:.3g}x")
        label = LABELS.get((meas, name))
        if label is None and name.startswith("tc_"):
            dist, metric = next((d, name[len("tc_" + d) + 1:]) for d in DISTRIBUTIONS
                                if name.startswith(f"tc_{d}_") and name[len("tc_" + d) + 1:] in METRIC_LABELS)
            label = f"FP8 accumulation without promotion, K = 4096, {dist}: {METRIC_LABELS[metric]}"
        label = label or name.replace("_", " ")
        if st["mean"] is None:
            rows.append([label, "unbounded", "", "", "", ""])
            continue
        rows.append([label, f(st["values"][0]), f(st["mean"]), f(st["sd"]), f"{f(st['min'])} to {f(st['max'])}",
                     "too noisy at this size" if st["noisy"] else "stable"])
    return {"kind": "table", "caption": f"Seed-to-seed spread of this section's headline figures ({m['size']}; "
                                        f"{n} seeds, this page's seed first; 'too noisy' = standard deviation above "
                                        f"10% of the mean)",
            "columns": ["figure", "this seed", "mean", "standard deviation", "range", "at this size"],
            "rows": rows}


def _fig(headlines: dict, meas: str, name: str) -> dict | None:
    m = headlines.get("measurements", {}).get(meas)
    return None if not m or m.get("status") != "ok" else m["figures"].get(name)


def noisy(headlines: dict) -> list[dict]:
    out = []
    for (meas, name), label in LABELS.items():
        st = _fig(headlines, meas, name)
        if st and st["noisy"]:
            out.append({"figure": label, "cv": st["cv"], "measurement": meas, "name": name})
    return out


def size_note(mode: str) -> str:
    """Seeds are not the only source of variation: several figures depend on the problem size, so
    pages of different modes differ by more than their seed spread. Said on every page."""
    base = ("Figures depend on problem size as well as on the seed (the UE8M0 penalty, for one, grows with "
            "the number of 1x128 tiles that hold an outlier channel; elementwise maxima grow with the number of "
            "outputs), so pages made in different modes differ by more than the spread shown; each section's "
            "spread table names the size it measured.")
    if mode == "quick":
        return ("This is the --quick page: its inputs are smaller and it runs 3 seeds, not 5, so quote the default "
                "page (`fp8lab report`) rather than this one. " + base)
    return base


def _section(results_sections: dict, sid: str) -> dict:
    s = results_sections.get(sid)
    return s["data"] if s and s.get("status") != "unavailable" else {}


# The named GEMM recipe of the DeepSeek-V3 Linear (fp8lab.recipes()): the one the granularity section
# and its seed replicates run.
FP8_RECIPE = "deepseek_v3_fp8_linear"  # = sec_granularity.RECIPE (a test checks they agree)


def gemm_recipe_name() -> str | None:
    """FP8_RECIPE when this build's recipe table (fp8lab.recipes()) has it, else None."""
    import fp8lab

    fn = getattr(fp8lab, "recipes", None)
    try:
        table = fn() if callable(fn) else None
    except Exception:  # noqa: BLE001 - a build without the table simply has no name to show
        return None
    return FP8_RECIPE if isinstance(table, dict) and FP8_RECIPE in table else None


def rows(cm: dict, headlines: dict, sections: dict, training: dict | None) -> list[dict]:
    """The summary rows as data; ``cm`` is the cost model's figures (name -> entry)."""
    v = {k: e["value"] for k, e in cm.items()}
    out = []

    # 1. FP8 GEMMs.
    rec, bf = _fig(headlines, "granularity", "recipe_normwise"), _fig(headlines, "granularity", "bf16_normwise")
    if training and training.get("rel_loss_error_vs_bf16") is not None:
        loss = training["rel_loss_error_vs_bf16"]
        noise = training.get("bf16_seed_spread")
        ours = f"{pct(loss)} relative loss error vs BF16" + (f" (BF16 seed-to-seed spread {pct(noise)})"
                                                            if noise is not None else "")
        verdict = training.get("verdict", "see the training section")
    else:
        ours = "not measured: this build has no training run (the training lab's section is absent)"
        verdict = "not checked (needs the training lab)"
    out.append({
        "trick": "FP8 GEMMs: E4M3, 1x128 activation / 128x128 weight FP32 scales"
                 + (f" (recipe `{recipe}`)" if (recipe := gemm_recipe_name()) else ""),
        "saves": (f"{v['H800_fp8_over_bf16_peak']:.3g}x tensor-core peak on H800, H100 and H200 "
                  f"({v['H800_fp8_tflops']:.0f} vs {v['H800_bf16_tflops']:.1f} dense TFLOP/s); weights "
                  f"{pct(v['weight_bytes_ratio'])} and activations {pct(v['act_bytes_ratio'])} of BF16's bytes "
                  f"(the whole model: {v['weights_bytes_fp8'] / 1e9:.0f} GB instead of {v['weights_bytes_bf16'] / 1e9:.0f} GB); "
                  f"a memory-bound decode GEMM {v['H800_gemm_decode_speedup']:.3g}x faster on the roofline"),
        "costs": (f"GEMM output error (normwise, outlier-heavy activations): {spread(rec)}, against "
                  f"{spread(bf)} for BF16 operands; "
                  + (f"training loss (training section): {training['sentence']}" if training and training.get("sentence")
                     else "training-loss cost: not measured")),
        "claim": "training-loss error vs BF16 below 0.25% (paper §3.3, App. B.1)",
        "ours": ours, "verdict": verdict})

    # 2. Promotion.
    tc_th = _fig(headlines, "accumulation", "tc_gaussian_max_rel_top_half")
    tc_nw = _fig(headlines, "accumulation", "tc_gaussian_normwise")
    tc_max = _fig(headlines, "accumulation", "tc_gaussian_max_rel")
    p_nw = _fig(headlines, "accumulation", "p128_gaussian_normwise")
    verdict = "not measured"
    if tc_th:
        hits = {}
        for metric, st in (("elementwise max", tc_max), ("max over the larger half", tc_th), ("normwise", tc_nw)):
            vals = [x for x in st["values"] if x is not None]
            hits[metric] = sum(0.01 <= x <= 0.03 for x in vals)
        n = tc_th["n"]
        verdict = "; ".join(f"{m}: in [1%, 3%] for {h} of {n} seeds" for m, h in hits.items())
        verdict = ("partly reproduced on Gaussian inputs (" if any(hits.values()) else
                   "not reproduced on Gaussian inputs (") + verdict + ")"
        # Which inputs would "reproduce" it, and how reliably: the same band on every distribution.
        always, sometimes = [], []
        for dist in DISTRIBUTIONS:
            for metric in ("normwise", "max_rel_top_half", "max_rel"):
                st = _fig(headlines, "accumulation", f"tc_{dist}_{metric}")
                if not st:
                    continue
                h = sum(x is not None and 0.01 <= x <= 0.03 for x in st["values"])
                words = f"{dist} ({METRIC_LABELS[metric]}, {h} of {st['n']} seeds)"
                (always if h == st["n"] else sometimes if h else []).append(words)
        verdict += ("; in the band for every seed: " + ", ".join(always)) if always else \
            "; no input distribution is in the band for every seed"
        if sometimes:
            verdict += "; for some seeds only: " + ", ".join(sometimes)
    out.append({
        "trick": "Promotion: FP32 accumulation on CUDA cores every N_C = 128",
        "saves": (f"accuracy, not time: it costs {v['ffma_per_promotion']} FFMA per output per {v['n_c']} K "
                  f"({pct(v['cuda_flops_share'])} of the FLOPs, but {pct(v['H800_promotion_time_share'])} of the "
                  f"tensor-core time if serialised, at 67 vs 1979 TFLOP/s); DeepGEMM hides it behind the other "
                  f"warpgroup's {v['wgmma_per_promotion']:.0f} WGMMAs"),
        "costs": (f"without promotion, K = 4096 (Gaussian): {spread(tc_nw)} normwise, {spread(tc_th)} max over the "
                  f"larger half of |exact|; promoted every 128: {spread(p_nw)} normwise"),
        "claim": "without promotion, max relative error nearly 2% at K = 4096 (§3.3.2)",
        "ours": f"max over the larger half: {spread(tc_th)}; elementwise max: {spread(tc_max)}",
        "verdict": verdict})

    # 3. UE8M0 scales.
    pen, fp32s = _fig(headlines, "scales", "ue8m0_penalty"), _fig(headlines, "scales", "fp32_scale_normwise")
    out.append({
        "trick": "Power-of-two (UE8M0) scales",
        "saves": (f"1 scale byte per 128 elements instead of 4 ({pct((v['elem_bytes_fp8'] + 1 / 128) / 2)} vs "
                  f"{pct(v['act_bytes_ratio'])} of BF16's bytes); scaling becomes an exact exponent add, so "
                  "re-tiling 1x128 to 128x1 for the backward pass adds no error"),
        "costs": (f"activation quantisation error (rule `deepseek_ue8m0`) {spread(pen, 'x')} that of FP32 scales "
                  f"(rule `deepseek`: {spread(fp32s)} normwise)"),
        "claim": "none quantified (DeepSeek-V3.1 trains with UE8M0 scales, model card)",
        "ours": f"{spread(pen, 'x')} the error of FP32 scales" if pen else "not measured",
        "verdict": "cost measured; no published figure to check it against"})

    # 4. FP8 activation cache and BF16 moments.
    out.append({
        "trick": "FP8 activation cache and BF16 AdamW moments",
        "saves": (f"cached Linear inputs at {pct(v['act_cache_ratio'])} of BF16's bytes; optimizer moments "
                  f"{v['moments_bytes_bf16']:.0f} instead of {v['moments_bytes_fp32']:.0f} bytes per parameter "
                  f"({v['state_bytes_deepseek']:.0f} vs {v['state_bytes_fp32_adam']:.0f} bytes of state per parameter, "
                  f"{v['moments_saving_total_tb']:.3g} TB less for 671B parameters)"),
        "costs": (f"the cached activations' quantisation error: {spread(fp32s)} normwise (1x128, E4M3, FP32 scales); "
                  + ("BF16 moments: measured only jointly, in the training loss of deepseek_fp8 (first row)" if training
                     else "BF16 moments: not measured (needs the training lab)")),
        "claim": "part of the < 0.25% training-loss claim (§3.3.3)",
        "ours": ("not measured separately; both are part of the deepseek_fp8 recipe whose loss error vs BF16 is "
                 f"{pct(training['rel_loss_error_vs_bf16'])}" if training else "not measured separately"),
        "verdict": ("saving computed; loss cost checked only jointly (training section)" if training
                    else "saving computed; loss cost not checked")})

    # 5. MLA.
    c8 = _fig(headlines, "mla", "fp8_cache_normwise")
    mla = _section(sections, "mla")
    forms = mla.get("absorbed_vs_naive", {}) if mla else {}
    same = v["kv_mla_bf16_model"] == v["paper_kv_bytes_per_token"]
    out.append({
        "trick": "MLA: cache a 512-wide latent + 64-wide RoPE key per token",
        "saves": (f"{v['kv_mla_bf16']:.0f} bytes per token and layer in BF16: {v['mla_vs_mha']:.3g}x less than MHA "
                  f"({v['kv_mha_bf16']:.0f} B) and {v['mla_vs_gqa']:.3g}x less than GQA with 8 KV heads "
                  f"({v['kv_gqa_bf16']:.0f} B) at DeepSeek's dims; {v['kv_mla_fp8']:.0f} B in FlashMLA's FP8 layout "
                  f"({v['mla_fp8_vs_bf16']:.3g}x less again); a 128K-token sequence needs "
                  f"{v['kv_128k_gb_mla_bf16']:.3g} GB instead of {v['kv_128k_gb_mha_bf16']:.0f} GB"),
        "costs": (f"FP8 latent cache moves the decode output by {spread(c8)} (normwise, against the BF16 cache)"
                  + (f"; the absorbed form agrees with the naive one ({forms.get('verdict')}, "
                     f"{pct(forms.get('max_observed_over_bound', 0))} of its certified bound)" if forms else "")),
        "claim": f"{v['paper_kv_bytes_per_token']:.0f} bytes per token over 61 layers (70.272 KB, ISCA 2025 Table 1)",
        "ours": f"{v['kv_mla_bf16_model']:.0f} bytes per token (61 x {v['kv_mla_bf16']:.0f})",
        "verdict": "reproduced" if same else "not reproduced"})

    # 6. MoE.
    flips = _fig(headlines, "routing", "gate_flip_fraction")
    rt = _section(sections, "routing")
    bal = ""
    if rt:
        fin = list(rt["stream"]["final_mean_of_last_10pct"].values())
        bal = f"; the balancing bias takes the max/mean expert load from {fin[0]:.3g} to {fin[1]:.3g}"
    act_ok = abs(v["active_params"] - v["paper_active_params"]) / v["paper_active_params"] < 0.05
    tot_ok = abs(v["total_params"] - v["paper_total_params"]) / v["paper_total_params"] < 0.01
    fl_ok = abs(v["train_flops_per_token"] / 1e9 - v["paper_train_gflops_per_token"]) / \
        v["paper_train_gflops_per_token"] < 0.05
    out.append({
        "trick": "DeepSeekMoE: 256 routed experts (top-8) + 1 shared, auxiliary-loss-free balancing",
        "saves": (f"{v['active_params'] / 1e9:.1f}B of {v['total_params'] / 1e9:.1f}B parameters active per token "
                  f"({pct(v['active_fraction'])}); {v['train_flops_per_token'] / 1e9:.0f} GFLOP per training token "
                  f"against {v['dense_train_flops_per_token'] / 1e12:.2f} TFLOP for a dense model of the same size "
                  f"({v['moe_flops_saving']:.3g}x less)"),
        "costs": (f"the BF16 gate (router recipe `deepseek_v3`) picks a different expert set than an FP32 gate "
                  f"(`deepseek_v3_hf`) for {spread(flips)} of tokens" + bal),
        "claim": (f"{v['paper_total_params'] / 1e9:.0f}B total, {v['paper_active_params'] / 1e9:.0f}B active; "
                  f"{v['paper_train_gflops_per_token']:.0f} GFLOP per token (ISCA 2025 Table 2)"),
        "ours": (f"{v['total_params'] / 1e9:.2f}B total, {v['active_params'] / 1e9:.2f}B active; "
                 f"{v['train_flops_per_token'] / 1e9:.1f} GFLOP per token"),
        "verdict": "reproduced" if (act_ok and tot_ok and fl_ok) else "not reproduced"})

    # 7. MTP.
    out.append({
        "trick": "Multi-token prediction (one extra depth)",
        "saves": (f"as a speculative-decoding draft: at most {v['mtp_tokens_per_step_lo']:.3g} to "
                  f"{v['mtp_tokens_per_step_hi']:.3g} tokens per decode step at the paper's 85-90% acceptance"),
        "costs": (f"+{pct(v['mtp_train_overhead'])} training FLOPs per token and {v['mtp_params'] / 1e9:.1f}B more "
                  "parameters (cost model); its accuracy is not measured (fp8lab has no MTP emulator)"),
        "claim": f"{v['paper_mtp_tps']:.3g}x tokens per second (§5.4.3)",
        "ours": f"upper bound {v['mtp_tokens_per_step_lo']:.3g}x to {v['mtp_tokens_per_step_hi']:.3g}x (cost model)",
        "verdict": "consistent (the claim lies below the bound)"
        if v["paper_mtp_tps"] <= v["mtp_tokens_per_step_hi"] else "inconsistent"})

    # 8. Blackwell block-scaled recipes (the microscaling section's loss cost, report/loss_cost.py).
    out.append(_blackwell_row(v, _section(sections, "microscaling").get("loss_cost") or {}))
    return out


def _blackwell_row(v: dict, loss: dict) -> dict:
    row = {"trick": "Blackwell block-scaled recipes: DeepGEMM SM100 (UE8M0), MXFP8, NVFP4",
           "saves": (f"operands at {pct(v['mxfp8_bytes_ratio'])} (MXFP8: E4M3 + one E8M0 byte per {v['mx_block']:.0f}) "
                     f"and {pct(v['nvfp4_bytes_ratio'])} (NVFP4: E2M1 + one E4M3 byte per {v['nvfp4_block']:.0f}) of "
                     f"BF16's bytes, against {pct(v['act_bytes_ratio'])} for DeepSeek-V3's 1x128 FP32 scales; scales "
                     "applied inside the tensor-core instruction, so no CUDA-core promotion"),
           "claim": ("NVFP4: a 12B model on 10T tokens reaches training loss and accuracy comparable to its FP8 "
                     "baseline (MMLU-Pro 62.58% vs 62.62%, arXiv 2509.25149); no published loss figure for MXFP8 "
                     "or DeepGEMM SM100"),
           "verdict": "loss cost not measured"}
    if not loss.get("available"):
        row.update(costs="training-loss cost: not measured (" + loss.get("why", "no microscaling section") + ")",
                   ours="not measured")
        return row
    bf = loss["bf16_final_val"]
    mean = sum(bf) / len(bf)
    sd = (sum((x - mean) ** 2 for x in bf) / max(1, len(bf) - 1)) ** 0.5
    recs = {n: r for n, r in loss["recipes"].items() if n != "deepseek_fp8"}
    row["costs"] = (f"final validation loss vs bf16 after {loss['plan']['steps']} steps of a tiny model: "
                    + ", ".join(f"{n} {pct(r['rel_error_vs_bf16'])} ({pct(r['rel_error_vs_deepseek_fp8'])} vs "
                                "deepseek_fp8)" for n, r in recs.items() if r["rel_error_vs_bf16"] is not None)
                    + f"; bf16 itself {mean:.4f} ± {sd:.2g} nats/byte over {len(bf)} seeds")
    row["ours"] = "; ".join(f"{n}: {pct(r['rel_error_vs_bf16'])} vs BF16" for n, r in recs.items()
                            if r["rel_error_vs_bf16"] is not None) or "not measured"
    above = [n for n, r in recs.items() if r["exceeds_bf16_noise"]]
    row["verdict"] = ("above the bf16 seed noise: " + ", ".join(above) if above else
                      "every recipe within the bf16 seed noise") + " (a tiny model: the ranking, not the scale, carries over)"
    return row


def seed_paragraph(cm: dict, headlines: dict, training: dict | None) -> str:
    """The project's question in one paragraph: is DeepSeek-V3 cheap because of these tricks?"""
    v = {k: e["value"] for k, e in cm.items()}
    rec = _fig(headlines, "granularity", "recipe_normwise")
    bf = _fig(headlines, "granularity", "bf16_normwise")
    tc = _fig(headlines, "accumulation", "tc_gaussian_normwise")
    p = _fig(headlines, "accumulation", "p128_gaussian_normwise")
    c8 = _fig(headlines, "mla", "fp8_cache_normwise")
    measured = []
    if rec and bf:
        measured.append(f"the FP8 GEMM recipe's output error is {pct(rec['mean'])} normwise on outlier-heavy "
                        f"activations, {rec['mean'] / bf['mean']:.3g}x BF16's {pct(bf['mean'])}")
    if tc and p:
        measured.append(f"without promotion the accumulation alone would add {pct(tc['mean'])} at K = 4096, "
                        f"{tc['mean'] / p['mean']:.3g}x more than with it")
    if c8:
        measured.append(f"the FP8 latent cache moves attention outputs by {pct(c8['mean'])}")
    n = headlines.get("replicates", 0)
    meas = ("; ".join(measured) + f" (means over {n} seeds)") if measured else \
        "no operation-level accuracy could be measured in this build"
    if training and training.get("sentence"):
        loss = (f"The training lab measured the loss cost: {training['sentence'].rstrip('.')}. What the numbers do "
                "not say: whether that holds at DeepSeek-V3's scale (the lab trains a small DeepSeek-shaped model"
                + (f" for {training['steps']} steps" if training.get("steps") else "") + "), nor the wall-clock "
                "speed on a GPU")
    else:
        loss = ("What they do not say: the training-loss cost (no training run in this build, so the paper's < 0.25% "
                "is neither confirmed nor refuted), nor the wall-clock speed on a GPU")
    return (
        "Is DeepSeek-V3 cheap to train and serve because of these tricks? By the cost model, most of the saving "
        f"is structural and costs no accuracy at all: MoE activates {pct(v['active_fraction'])} of the weights, "
        f"{v['moe_flops_saving']:.3g}x fewer training FLOPs per token than a dense model of the same size, and MLA "
        f"caches {v['mla_vs_mha']:.3g}x fewer bytes per token than MHA. FP8 adds at most "
        f"{v['H800_fp8_over_bf16_peak']:.3g}x on tensor-core peak and halves the bytes of weights and activations. "
        f"The numerical tricks are where the accuracy goes, and what we measured is its price per operation: "
        f"{meas}. {loss}: DeepSeek's reported {v['pretrain_gpu_hours'] / 1e6:.3g}M "
        f"H800 GPU hours for {v['pretrain_tokens'] / 1e12:.3g}T tokens imply {pct(v['implied_util_fp8_peak'])} of "
        f"the FP8 dense peak ({pct(v['implied_util_bf16_peak'])} of BF16's), so the 2x that FP8 offers on paper is "
        "not visible in their hours, and how much of it they realised is not something a CPU emulator can tell.")
