"""Section: Blackwell and microscaling — what the new recipes cost. The same operands as the
granularity section, quantised by every 2026 recipe fp8lab holds as rows (scale rules and GEMM
recipes), against the FP64 product of the unquantised inputs:

- quantisation alone (the exactly dequantised operands multiplied in float64): MXFP8 with each E8M0
  scale-rounding mode in use, NVFP4 with and without TransformerEngine's random Hadamard transform
  and 4over6;
- the whole GEMM (quantisers, tensor-core instruction, accumulation, BF16 output) for DeepSeek-V3's
  Hopper recipe, DeepGEMM's SM100 recipe, MXFP8 on tcgen05 kind::mxf8f6f4 and NVFP4 on
  kind::mxf4nvf4 (TransformerEngine's global-scale epilogue), and its error as K grows.
The loss cost of the training recipes built on these rows (DeepGEMM SM100, MXFP8, NVFP4) is measured
by the training lab on a tiny model (report/loss_cost.py)."""
from __future__ import annotations

import numpy as np

from .. import gemm, quantize, rht16
from . import loss_cost, plots
from .context import Context
from .inputs import DESCRIPTIONS, operands
from .metrics import pct, relative_errors
from .section import Section

DISTS = ("llm_outliers", "gaussian")

#: (label, GEMM recipe) measured end to end with fp8lab.gemm(..., recipe=...)
GEMM_RECIPES = [
    ("DeepSeek-V3 Hopper: FP32 scales 1x128 / 128x128, promoted every 128", "deepseek_v3_fp8_linear"),
    ("DeepGEMM SM100: UE8M0 1x128 / 128x128, tcgen05 block-scaled, no promotion", "deepgemm_sm100_fp8"),
    ("MXFP8 (TransformerEngine): 1x32 E8M0 round-up, tcgen05 block-scaled", "mxfp8_te"),
    ("NVFP4 (TransformerEngine): E2M1, E4M3 scales 1x16 / 16x16, FP32 tensor scale, tcgen05 mxf4nvf4", "nvfp4_te"),
]

#: (label, scale rule) for E4M3 1x32 blocks on both operands
MX_RULES = [
    ("OCP floor (= torchao FLOOR)", "mx"),
    ("torchao RCEIL", "mx_rceil"),
    ("torchao CEIL", "mx_ceil"),
    ("torchao EVEN", "mx_even"),
    ("TransformerEngine MXFP8 (round up, NaN skipped)", "te_mxfp8"),
]

#: (label, scale rule, with RHT)
NVFP4 = [
    ("NVFP4 (1x16 activations, 16x16 weights)", "nvfp4", False),
    ("NVFP4 + 4over6", "nvfp4_4over6", False),
    ("NVFP4 + RHT (both operands 1x16, as TE's Wgrad)", "nvfp4", True),
    ("NVFP4 + RHT + 4over6", "nvfp4_4over6", True),
]


def _dequantised_product(a, b, ta, tb, fmt, rule):
    da = np.asarray(quantize(a, tile=ta, fmt=fmt, rule=rule).dequantize(), np.float64)
    db = np.asarray(quantize(b, tile=tb, fmt=fmt, rule=rule).dequantize(), np.float64)
    return da @ db.T


def _nvfp4_product(a, b, rule, rht):
    if rht:  # x -> x @ T along K, T orthonormal, so A Bᵀ = (A T)(B T)ᵀ exactly before quantisation
        return _dequantised_product(rht16(a), rht16(b), (1, 16), (1, 16), "e2m1", rule)
    return _dequantised_product(a, b, (1, 16), (16, 16), "e2m1", rule)


def _gemm_error(a, b, recipe, ref):
    qa = quantize(a, recipe=recipe, operand="a")
    qb = quantize(b, recipe=recipe, operand="b")
    return relative_errors(np.asarray(gemm(qa, qb, recipe=recipe), np.float64), ref)


def run(ctx: Context) -> Section:
    sec = Section("microscaling", 0, "Blackwell and microscaling: what the new recipes cost")
    m, n, k = ctx.pick((32, 64, 512), (64, 128, 1024))
    ks = ctx.pick((128, 512, 2048), (256, 1024, 4096))
    ctx.progress.stage("microscaling", len(DISTS) * (len(MX_RULES) + len(NVFP4) + len(GEMM_RECIPES)) + len(ks))
    quant: dict = {d: {} for d in DISTS}
    e2e: dict = {d: {} for d in DISTS}
    errors: dict = {}
    for dist in DISTS:
        a, b = operands(dist, m, n, k, ctx.rng("microscaling", dist))
        ref = a.astype(np.float64) @ b.astype(np.float64).T
        for label, rule in MX_RULES:
            quant[dist][label] = relative_errors(_dequantised_product(a, b, (1, 32), (1, 32), "e4m3", rule), ref)
            ctx.progress.step(f"{dist} {rule}")
        for label, rule, rht in NVFP4:
            quant[dist][label] = relative_errors(_nvfp4_product(a, b, rule, rht), ref)
            ctx.progress.step(f"{dist} {label[:14]}")
        for label, recipe in GEMM_RECIPES:
            try:
                e2e[dist][label] = _gemm_error(a, b, recipe, ref)
            except (ValueError, TypeError, RuntimeError) as err:
                errors[label] = f"{type(err).__name__}: {err}"
            ctx.progress.step(f"{dist} {recipe}")
    # Error vs K (outlier-heavy activations, M = N = 16): every GEMM recipe end to end, NVFP4's quantisation.
    vs_k: dict = {label: [] for label, _ in GEMM_RECIPES}
    vs_k["NVFP4 + RHT (quantisation only)"] = []
    for kk in ks:
        a, b = operands("llm_outliers", 16, 16, kk, ctx.rng("microscaling", "k", kk))
        ref = a.astype(np.float64) @ b.astype(np.float64).T
        for label, recipe in GEMM_RECIPES:
            if label not in errors:
                vs_k[label].append(_gemm_error(a, b, recipe, ref)["normwise"])
        vs_k["NVFP4 + RHT (quantisation only)"].append(relative_errors(_nvfp4_product(a, b, "nvfp4", True), ref)["normwise"])
        ctx.progress.step(f"K = {kk}")
    ctx.progress.finish()
    loss = loss_cost.measure(ctx)
    vs_k = {label: v for label, v in vs_k.items() if len(v) == len(ks)}
    sec.data = {"M": m, "N": n, "K": k, "K_sweep": list(ks), "distributions": {d: DESCRIPTIONS[d] for d in DISTS},
                "quantisation": quant, "gemm": e2e, "gemm_error_vs_k": vs_k, "errors": errors,
                "loss_cost": loss}
    _write(sec, m, n, k, ks, quant, e2e, vs_k, errors, loss)
    return sec


def _write(sec, m, n, k, ks, quant, e2e, vs_k, errors, loss) -> None:
    sec.para(f"A: {m} x {k} activations, B: {n} x {k} weights, the granularity section's distributions. Reference: "
             "the float64 product of the unquantised float32 inputs. 'Quantisation only' multiplies the exactly "
             "dequantised operands in float64; 'end to end' runs the named GEMM recipe (fp8lab.recipes()): its "
             "quantisers, tensor-core model, accumulation and BF16 output.")
    for key, msg in errors.items():
        sec.para(f"Not measured: {key} — the emulator refused it ({msg}).")

    def rows(table):
        out = []
        for label in table[DISTS[0]]:
            row = [label]
            for dist in DISTS:
                mt = table[dist].get(label)
                row += ["–", "–"] if mt is None else [pct(mt["normwise"]), pct(mt["max_rel_top_half"])]
            out.append(row)
        return out

    cols = ["recipe", "outliers: normwise", "outliers: max (larger half)", "Gaussian: normwise",
            "Gaussian: max (larger half)"]
    sec.table("End-to-end GEMM error against the unquantised FP64 product", cols, rows(e2e), text_columns=[0])
    sec.table("Quantisation alone: MXFP8 (E4M3, 1x32) by E8M0 rounding mode, and NVFP4 variants", cols, rows(quant),
              text_columns=[0])
    if vs_k:
        sec.figure("error_vs_k", plots.lines({label: (list(ks), v) for label, v in vs_k.items()},
                                             "GEMM error vs K (outlier-heavy activations, M = N = 16)", "K",
                                             "normwise relative error"),
                   "Normwise GEMM error against the FP64 product of the unquantised inputs as K grows.")
    loss_cost.write(sec, loss)
    sec.conclusion = _conclusion(quant, e2e, loss)


def _conclusion(quant, e2e, loss) -> str:
    r, g = quant["llm_outliers"], e2e["llm_outliers"]
    mx = {label: r[label]["normwise"] for label, _ in MX_RULES}
    best = min(mx, key=mx.get)
    worst = max(mx, key=mx.get)
    nv = {label: r[label]["normwise"] for label, _, _ in NVFP4}
    s = (f"On outlier-heavy activations MXFP8's E8M0 rounding modes span {pct(mx[best])} ({best}) to "
         f"{pct(mx[worst])} ({worst}) normwise from quantisation alone; NVFP4 costs {pct(nv[NVFP4[0][0]])}, "
         f"{pct(nv[NVFP4[1][0]])} with 4over6 and {pct(nv[NVFP4[2][0]])} with the RHT")
    if g:
        s += "; end to end, " + ", ".join(f"{label.split(':')[0]} {pct(v['normwise'])}" for label, v in g.items())
    return s + ". " + loss_cost.sentence(loss)
