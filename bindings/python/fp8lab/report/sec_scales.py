"""Section 3: scale conventions — the accuracy cost of power-of-two / UE8M0 scales against FP32
scales, and how often the named recipes (DeepSeek, DeepGEMM, TransformerEngine) disagree bit for bit
on the same inputs (1x128 activation tiles, E4M3). The conventions are listed in REFERENCE.md
("Quantisers"); emulator/quant/scale_rule.cpp implements each as a named row."""
from __future__ import annotations

import numpy as np

from .. import quantize
from . import plots
from .context import Context
from .inputs import DESCRIPTIONS, sample
from .metrics import pct, relative_errors
from .section import Section

RULES = ("deepseek", "deepseek_ue8m0", "deepgemm", "deepgemm_ue8m0", "te", "te_fp32", "vllm")
POW2 = {"deepseek_ue8m0", "deepgemm_ue8m0", "te"}
# Pairs a user would swap one for the other and expect the same bits.
PAIRS = (("deepseek", "deepgemm"), ("deepseek", "te_fp32"), ("deepgemm", "te_fp32"), ("deepseek", "vllm"),
         ("deepseek_ue8m0", "deepgemm_ue8m0"), ("deepseek_ue8m0", "te"), ("deepgemm_ue8m0", "te"))
DISTS = ("llm_outliers", "gaussian")


def run(ctx: Context) -> Section:
    sec = Section("scales", 3, "Scale conventions: FP32 vs power-of-two scales, and the recipes' bits")
    rows_n, k = ctx.pick((256, 1024), (2048, 2048))
    ctx.progress.stage("scales", len(DISTS) * (len(RULES) + len(PAIRS)))
    rules = list(RULES)
    err_data: dict = {d: {} for d in DISTS}
    dis_data: dict = {d: {} for d in DISTS}
    refused: dict = {}
    for dist in DISTS:
        x = sample(dist, (rows_n, k), ctx.rng("scales", dist))
        x64 = x.astype(np.float64)
        q = {}
        for rule in rules:
            try:
                q[rule] = quantize(x, tile=(1, 128), fmt="e4m3", rule=rule)
                deq = np.asarray(q[rule].dequantize(), dtype=np.float64).reshape(x.shape)
                err_data[dist][rule] = relative_errors(deq, x64)
            except (ValueError, TypeError, RuntimeError) as err:
                refused[rule] = f"{type(err).__name__}: {err}"
            ctx.progress.step(f"{dist} {rule}")
        for ra, rb in PAIRS:
            if ra in q and rb in q:
                ba, bb = np.asarray(q[ra].bits).ravel(), np.asarray(q[rb].bits).ravel()
                da = np.asarray(q[ra].dequantize(), dtype=np.float64).ravel()
                db = np.asarray(q[rb].dequantize(), dtype=np.float64).ravel()
                tiles_a = ((ba != bb) | (da != db)).reshape(rows_n, k // 128, 128).any(axis=2)
                diff = da != db
                # How far apart two recipes' values are where they differ, relative to the input.
                rel = np.abs(da[diff] - db[diff]) / np.maximum(np.abs(x64.ravel()[diff]), np.finfo(np.float64).tiny)
                dis_data[dist][f"{ra} vs {rb}"] = {
                    "elements": int(ba.size), "bits_differ": int(np.count_nonzero(ba != bb)),
                    "values_differ": int(np.count_nonzero(da != db)),
                    "tiles": int(tiles_a.size), "tiles_with_a_difference": int(np.count_nonzero(tiles_a)),
                    "max_rel_value_difference": float(rel.max()) if rel.size else 0.0,
                    "median_rel_value_difference": float(np.median(rel)) if rel.size else 0.0,
                    "normwise_value_difference": float(np.linalg.norm(da - db) / np.linalg.norm(x64))}
            ctx.progress.step(f"{dist} {ra}/{rb}")
    ctx.progress.finish()
    sec.data = {"rows": rows_n, "K": k, "tile": [1, 128], "format": "e4m3", "quant_error": err_data,
                "disagreement": dis_data, "refused": refused}
    sec.para(f"{rows_n} x {k} activations cut into 1x128 tiles, E4M3 elements. Error: the dequantised tensor against "
             "the float32 input. Disagreement: elements whose E4M3 bit patterns differ between two recipes, and "
             "elements whose dequantised values differ (a different scale can give different bits but the same "
             "value, or the reverse). Activations: " + DESCRIPTIONS["llm_outliers"] + ".")
    for rule, msg in refused.items():
        sec.para(f"Rule `{rule}` not measured — the quantiser refused it ({msg}).")
    rows = []
    for rule in rules:
        if rule in err_data[DISTS[0]]:
            r = [rule, "power of two" if rule in POW2 else "FP32"]
            for d in DISTS:
                r += [pct(err_data[d][rule]["normwise"]), pct(err_data[d][rule]["max_rel_top_half"])]
            rows.append(r)
    sec.table("Quantisation error by scale rule (1x128 tiles, E4M3)",
              ["rule", "scale", "outliers: normwise", "outliers: max (larger half)", "Gaussian: normwise",
               "Gaussian: max (larger half)"], rows)
    rows = []
    for pair in dis_data[DISTS[0]]:
        r = [pair]
        for d in DISTS:
            v = dis_data[d][pair]
            r += [f"{v['bits_differ']} ({pct(v['bits_differ'] / v['elements'])})",
                  f"{v['values_differ']} ({pct(v['values_differ'] / v['elements'])}; by at most "
                  f"{pct(v['max_rel_value_difference'])})",
                  f"{v['tiles_with_a_difference']} / {v['tiles']}"]
        rows.append(r)
    sec.table("How often two recipes disagree on the same inputs: count (fraction)",
              ["recipes", "outliers: bits differ", "outliers: values differ", "outliers: tiles with any difference",
               "Gaussian: bits differ", "Gaussian: values differ", "Gaussian: tiles with any difference"], rows)
    if rows and err_data[DISTS[0]]:
        rl = [r for r in rules if r in err_data[DISTS[0]]]
        sec.figure("quant_error_by_rule", plots.bars(rl, {d: [err_data[d][r]["normwise"] for r in rl] for d in DISTS},
                                                     "Quantisation error by scale rule (1x128, E4M3)",
                                                     "normwise relative error", logy=False),
                   "Normwise quantisation error per scale rule.")
    sec.conclusion = _conclusion(err_data, dis_data)
    return sec


def _conclusion(err: dict, dis: dict) -> str:
    e = err["llm_outliers"]
    parts = []
    if "deepseek" in e and "deepseek_ue8m0" in e:
        a, b = e["deepseek"]["normwise"], e["deepseek_ue8m0"]["normwise"]
        parts.append(f"Rounding DeepSeek's 1x128 scales up to powers of two (UE8M0) moves the normwise E4M3 "
                     f"quantisation error of outlier-heavy activations from {pct(a)} to {pct(b)} "
                     f"({b / a:.3g}x)" if a > 0 else "")
    d = dis["llm_outliers"]
    if d:
        n = next(iter(d.values()))["elements"]
        wb = max(d, key=lambda p: d[p]["bits_differ"])
        wv = max(d, key=lambda p: d[p]["values_differ"])
        bits_part = (f"no two of the {len(d)} recipe pairs compared produce different E4M3 bits on these {n} elements"
                     if d[wb]["bits_differ"] == 0 else
                     f"{wb} produce different E4M3 bits for {d[wb]['bits_differ']} of {n} elements "
                     f"({pct(d[wb]['bits_differ'] / n)})")
        if d[wv]["values_differ"] > 0:
            who = "they" if wv == wb and d[wb]["bits_differ"] > 0 else wv
            v = d[wv]
            bits_part += (f", but {who} dequantise to different values for {v['values_differ']} of the {n} elements "
                          f"({pct(v['values_differ'] / n)}), by {pct(v['median_rel_value_difference'])} of the input "
                          f"typically and {pct(v['max_rel_value_difference'])} at most (normwise "
                          f"{pct(v['normwise_value_difference'])})"
                          + (" — same bits, so their dequantisation scales differ" if d[wv]["bits_differ"] == 0 else ""))
        parts.append(bits_part)
    if not parts:
        return "No scale rule could be measured in this build."
    s = "; ".join(p for p in parts if p)
    return s[0].upper() + s[1:] + "."
