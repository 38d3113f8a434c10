"""Section 2: quantisation granularity and element format — GEMM output error against the FP64
product of the *unquantised* inputs, on outlier-heavy activations (and Gaussian ones for contrast).

The quantised product is formed from the exactly dequantised operands in float64 (its own rounding,
~1e-16, is negligible), so the table isolates what the quantisation costs; the DeepSeek-V3 row at the
end adds the emulated promoted FP8 GEMM with BF16 output, i.e. the whole recipe (paper §3.3)."""
from __future__ import annotations

import numpy as np

from .. import gemm, quantize
from . import plots
from .context import Context
from .inputs import DESCRIPTIONS, operands
from .metrics import pct, relative_errors
from .section import Section
from .._recipes import recipe

DISTS = ("llm_outliers", "gaussian")


#: the GEMM recipe (fp8lab.recipes()) whose operands and product the section measures end to end
RECIPE = "deepseek_v3_fp8_linear"


def tilings(m: int, n: int, k: int) -> list[tuple[str, tuple, tuple, str]]:
    """(label, A tile, B tile, rule). B is N x K (NT layout), so its tiles run along K too."""
    ra, rb = recipe(RECIPE)["a"], recipe(RECIPE)["b"]
    rule = ra["rule"]
    return [
        ("per-tensor", (m, k), (n, k), rule),
        ("per-row (per token / per output channel)", (1, k), (1, k), rule),
        (f"{ra['tile'][0]}x{ra['tile'][1]} activations, {rb['tile'][0]}x{rb['tile'][1]} weights (DeepSeek-V3)",
         tuple(ra["tile"]), tuple(rb["tile"]), rule),
        ("MX 1x32, UE8M0 shared exponent (OCP MX)", (1, 32), (1, 32), "mx"),
    ]


FORMATS = ("e4m3", "e5m2")


def run(ctx: Context) -> Section:
    sec = Section("granularity", 2, "Quantisation granularity and element format")
    m, n, k = ctx.pick((64, 128, 512), (256, 512, 2048))
    configs = tilings(m, n, k)
    ctx.progress.stage("granularity", len(DISTS) * (len(configs) * len(FORMATS) + 2))
    results: dict = {d: {} for d in DISTS}
    errors: dict = {}
    from ..formats import decode, encode

    for dist in DISTS:
        a, b = operands(dist, m, n, k, ctx.rng("granularity", dist))
        ref = a.astype(np.float64) @ b.astype(np.float64).T
        a16 = decode(encode(a, "bf16"), "bf16")
        b16 = decode(encode(b, "bf16"), "bf16")
        results[dist]["bf16|none"] = relative_errors(a16 @ b16.T, ref)
        ctx.progress.step(f"{dist} bf16")
        for label, ta, tb, rule in configs:
            for fmt in FORMATS:
                key = f"{fmt}|{label}"
                try:
                    qa = quantize(a, tile=ta, fmt=fmt, rule=rule)
                    qb = quantize(b, tile=tb, fmt=fmt, rule=rule)
                    da = np.asarray(qa.dequantize(), dtype=np.float64).reshape(a.shape)
                    db = np.asarray(qb.dequantize(), dtype=np.float64).reshape(b.shape)
                    results[dist][key] = relative_errors(da @ db.T, ref)
                except (ValueError, TypeError, RuntimeError) as err:
                    errors[key] = f"{type(err).__name__}: {err}"
                ctx.progress.step(f"{dist} {fmt} {label[:12]}")
        try:
            qa = quantize(a, recipe=RECIPE, operand="a")
            qb = quantize(b, recipe=RECIPE, operand="b")
            out = gemm(qa, qb, recipe=RECIPE)
            results[dist]["e4m3|DeepSeek-V3 recipe end to end"] = relative_errors(np.asarray(out, np.float64), ref)
        except (ValueError, TypeError, RuntimeError) as err:
            errors["e4m3|DeepSeek-V3 recipe end to end"] = f"{type(err).__name__}: {err}"
        ctx.progress.step(f"{dist} recipe")
    ctx.progress.finish()
    sec.data = {"M": m, "N": n, "K": k, "distributions": {d: DESCRIPTIONS[d] for d in DISTS},
                "results": results, "errors": errors}
    sec.para(f"A: {m} x {k} activations, B: {n} x {k} weights. Reference: the float64 product of the unquantised "
             "float32 inputs. Scales: DeepSeek's rule (amax / max finite, FP32) except MX (OCP shared exponent). "
             "Activations: " + DESCRIPTIONS["llm_outliers"] + ".")
    for key, msg in errors.items():
        sec.para(f"Not measured: {key.replace('|', ', ')} — the emulator refused it ({msg}).")
    keys = [k_ for k_ in results[DISTS[0]]]
    rows = []
    for key in keys:
        fmt, label = key.split("|")
        row = [label if label != "none" else "no scale (plain cast)", fmt]
        for dist in DISTS:
            mt = results[dist].get(key)
            row += ["–", "–"] if mt is None else [pct(mt["normwise"]), pct(mt["max_rel_top_half"])]
        rows.append(row)
    sec.table("GEMM output error against the unquantised FP64 product",
              ["scaling", "format", "outliers: normwise", "outliers: max (larger half)", "Gaussian: normwise",
               "Gaussian: max (larger half)"], rows)
    fp8_keys = [x for x in keys if x.startswith("e4m3|")]
    if fp8_keys:
        groups = {dist: [results[dist][x]["normwise"] for x in fp8_keys] for dist in DISTS}
        sec.figure("e4m3_normwise", plots.bars([x.split("|")[1].split(" (")[0] for x in fp8_keys], groups,
                                               "E4M3 GEMM output error by scaling granularity", "normwise relative error",
                                               logy=False),
                   "Normwise GEMM error with E4M3 operands, by scaling granularity.")
    sec.conclusion = _conclusion(results, configs)
    return sec


def _conclusion(results: dict, configs) -> str:
    r = results["llm_outliers"]
    bf = r["bf16|none"]["normwise"]
    pt = r.get(f"e4m3|{configs[0][0]}")
    ds = r.get(f"e4m3|{configs[2][0]}")
    if not pt or not ds:
        return (f"With this build only BF16 can be measured: casting both operands to BF16 gives a normwise GEMM "
                f"error of {pct(bf)} on outlier-heavy activations; FP8 granularities are not available.")
    e5 = r.get(f"e5m2|{configs[2][0]}")
    mx = r.get(f"e4m3|{configs[3][0]}")
    gain = pt["normwise"] / ds["normwise"] if ds["normwise"] > 0 else float("inf")
    s = (f"On outlier-heavy activations, E4M3 with one per-tensor scale gives a normwise GEMM error of "
         f"{pct(pt['normwise'])}; DeepSeek-V3's 1x128/128x128 tiles bring it to {pct(ds['normwise'])} "
         f"({gain:.3g}x {'better' if gain >= 1 else 'worse'})")
    if mx:
        s += f", MX 1x32 to {pct(mx['normwise'])}"
    if e5:
        s += f"; E5M2 on the same tiles costs {pct(e5['normwise'])}"
    return s + f", and BF16 without scales {pct(bf)}."
