"""The headline figures, measured over several seeds so the page can say how sure it is.

Each headline re-runs the measurement behind one number the summary quotes, at the size its section
uses, on independent inputs per replicate. Replicate 0 draws the very inputs of its section (the
same named random stream), so the section's number is the first of the replicates; replicate r > 0
adds ("replicate", r) to the stream's keys. The summary then shows mean, standard deviation and
range, and flags a figure as too noisy at this size when its seed-to-seed spread is large.
"""
from __future__ import annotations

import math

import numpy as np

from .. import gemm, quantize
from ..moe import route
from .context import Context
from .inputs import DISTRIBUTIONS, operands, sample
from .metrics import relative_errors

# A figure whose sample standard deviation over seeds exceeds this fraction of its mean is "too
# noisy at this size": its second significant digit is not reproducible.
NOISY_CV = 0.10


def replicates(ctx: Context) -> int:
    return ctx.pick(3, 5, 10)


def _rng(ctx: Context, r: int, *keys):
    return ctx.rng(*keys) if r == 0 else ctx.rng(*keys, "replicate", r)


def accumulation(ctx: Context, r: int) -> dict:
    """E4M3 GEMM at K = 4096 without promotion (every input distribution) and promoted every 128
    (Gaussian): the section's inputs and arithmetic (sec_accumulation)."""
    from .sec_accumulation import PAPER_K, Fp8Path, to_e4m3_rows

    m = n = ctx.pick(16, 64)
    fp8 = Fp8Path()
    out = {}
    for dist in DISTRIBUTIONS:
        a, b = operands(dist, m, n, PAPER_K, _rng(ctx, r, "accumulation", dist, PAPER_K))
        va, vb = to_e4m3_rows(a), to_e4m3_rows(b)
        ex = fp8.exact(va, vb)
        tc = relative_errors(fp8.tensorcore(va, vb), ex)
        for x in ("max_rel", "max_rel_top_half", "normwise"):
            out[f"tc_{dist}_{x}"] = tc[x]
        if dist == "gaussian":
            p = relative_errors(fp8.promoted(va, vb, 128), ex)
            out["p128_gaussian_normwise"] = p["normwise"]
            out["p128_gaussian_max_rel_top_half"] = p["max_rel_top_half"]
            out["promotion_gain_normwise"] = tc["normwise"] / p["normwise"] if p["normwise"] > 0 else math.inf
    return out


def granularity(ctx: Context, r: int) -> dict:
    """The DeepSeek-V3 recipe end to end (sec_granularity.RECIPE: 1x128 / 128x128 E4M3, promoted) and plain BF16
    operands, against the FP64 product of the unquantised outlier-heavy inputs (sec_granularity)."""
    from ..formats import decode, encode

    m, n, k = ctx.pick((64, 128, 512), (256, 512, 2048))
    a, b = operands("llm_outliers", m, n, k, _rng(ctx, r, "granularity", "llm_outliers"))
    ref = a.astype(np.float64) @ b.astype(np.float64).T
    a16 = decode(encode(a, "bf16"), "bf16")
    b16 = decode(encode(b, "bf16"), "bf16")
    from .sec_granularity import RECIPE

    qa = quantize(a, recipe=RECIPE, operand="a")
    qb = quantize(b, recipe=RECIPE, operand="b")
    out = gemm(qa, qb, recipe=RECIPE)
    return {"recipe_normwise": relative_errors(np.asarray(out, np.float64), ref)["normwise"],
            "bf16_normwise": relative_errors(a16 @ b16.T, ref)["normwise"]}


def scales(ctx: Context, r: int) -> dict:
    """1x128 E4M3 activation quantisation error with FP32 scales and with their UE8M0 rounding
    (sec_scales; the activations an FP8 training run caches for the backward pass)."""
    rows_n, k = ctx.pick((256, 1024), (2048, 2048))
    x = sample("llm_outliers", (rows_n, k), _rng(ctx, r, "scales", "llm_outliers"))
    x64 = x.astype(np.float64)
    e = {}
    for rule in ("deepseek", "deepseek_ue8m0"):
        q = quantize(x, tile=(1, 128), fmt="e4m3", rule=rule)
        e[rule] = relative_errors(np.asarray(q.dequantize(), np.float64).reshape(x.shape), x64)["normwise"]
    return {"fp32_scale_normwise": e["deepseek"], "ue8m0_normwise": e["deepseek_ue8m0"],
            "ue8m0_penalty": e["deepseek_ue8m0"] / e["deepseek"] if e["deepseek"] > 0 else math.inf}


def routing(ctx: Context, r: int) -> dict:
    """Tokens whose expert set differs between the BF16 gate (DeepSeek reference) and the FP32 gate
    (HF), no bias (sec_routing)."""
    tokens = ctx.pick(4096, 65536)
    logits = _rng(ctx, r, "routing", "logits").standard_normal((tokens, 256)).astype(np.float32)
    sets = [np.sort(np.asarray(route(logits, bias=None, spec=s)[0], np.int64), axis=1)
            for s in ("deepseek_v3", "deepseek_v3_hf")]
    return {"gate_flip_fraction": float(np.count_nonzero(np.any(sets[0] != sets[1], axis=1))) / tokens}


def mla(ctx: Context, r: int) -> dict:
    """Decode output of the FP8 latent cache against the BF16 cache (fp8lab.mla.report_numbers'
    measurement, without the absorbed-vs-naive part)."""
    from .. import mla as M

    tokens, heads, hidden = ctx.pick((64, 4, 256), (256, 16, 512), (1024, 16, 512))
    seed = int(_rng(ctx, r, "mla").integers(0, 2**31))
    spec = M.MlaSpec(hidden=hidden, heads=heads)
    w = M.init_weights(spec, seed)
    x = np.random.default_rng(seed).uniform(-3 ** 0.5, 3 ** 0.5, (tokens, hidden)).astype(np.float32)
    fw = M.forward(x, w, spec, "absorbed")
    q = fw["q_absorbed"][-1:]
    outs = {}
    for cache in ("bf16", "fp8"):
        s = spec.replace(cache=cache)
        c, table, lens = M.build_cache([fw["latent"]], [fw["k_pe"]], s)
        outs[cache] = np.asarray(M.decode(q, c, table, lens, s)[0], np.float64)
    return {"fp8_cache_normwise": float(np.linalg.norm(outs["fp8"] - outs["bf16"]) / np.linalg.norm(outs["bf16"]))}


def _acc0(d: dict) -> dict:
    s, k = d["series"], "4096"
    out = {}
    for dist in DISTRIBUTIONS:
        for x in ("max_rel", "max_rel_top_half", "normwise"):
            out[f"tc_{dist}_{x}"] = s["fp8_tensorcore"][dist][k][x]
    p, g = s["fp8_promoted_128"]["gaussian"][k], s["fp8_tensorcore"]["gaussian"][k]
    out["p128_gaussian_normwise"] = p["normwise"]
    out["p128_gaussian_max_rel_top_half"] = p["max_rel_top_half"]
    out["promotion_gain_normwise"] = g["normwise"] / p["normwise"] if p["normwise"] > 0 else math.inf
    return out


def _gran0(d: dict) -> dict:
    r = d["results"]["llm_outliers"]
    return {"recipe_normwise": r["e4m3|DeepSeek-V3 recipe end to end"]["normwise"],
            "bf16_normwise": r["bf16|none"]["normwise"]}


def _scales0(d: dict) -> dict:
    e = d["quant_error"]["llm_outliers"]
    a, b = e["deepseek"]["normwise"], e["deepseek_ue8m0"]["normwise"]
    return {"fp32_scale_normwise": a, "ue8m0_normwise": b, "ue8m0_penalty": b / a if a > 0 else math.inf}


def _routing0(d: dict) -> dict:
    return {"gate_flip_fraction": d["flips"]["no bias"] / d["tokens"]}


def _mla0(d: dict) -> dict:
    return {"fp8_cache_normwise": d["fp8_vs_bf16_cache"]["normwise_rel_error"]}


def _size(ctx: Context, name: str) -> str:
    if name == "accumulation":
        return f"{ctx.pick(16, 64)} x {ctx.pick(16, 64)} outputs, K = 4096"
    if name == "granularity":
        return "M x N x K = {} x {} x {}".format(*ctx.pick((64, 128, 512), (256, 512, 2048)))
    if name == "scales":
        return "{} x {} activations".format(*ctx.pick((256, 1024), (2048, 2048)))
    if name == "routing":
        return f"{ctx.pick(4096, 65536)} tokens"
    return "{} cached tokens, {} heads, hidden {}".format(*ctx.pick((64, 4, 256), (256, 16, 512), (1024, 16, 512)))


# name -> (measurement, fp8lab APIs it needs, replicate 0 read from the section's own data)
MEASUREMENTS = {
    "accumulation": (accumulation, _acc0),
    "granularity": (granularity, _gran0),
    "scales": (scales, _scales0),
    "routing": (routing, _routing0),
    "mla": (mla, _mla0),
}


def _replicate(mode: str, seed: int, name: str, r: int) -> dict:
    """One replicate of one measurement, from plain arguments (picklable for an executor)."""
    return MEASUREMENTS[name][0](Context(mode, seed), r)


def stats(values: list[float]) -> dict:
    v = np.asarray(values, dtype=np.float64)
    finite = bool(np.all(np.isfinite(v)))
    mean = float(v.mean()) if finite else math.inf
    sd = float(v.std(ddof=1)) if finite and v.size > 1 else 0.0
    cv = sd / abs(mean) if finite and mean != 0 else (0.0 if sd == 0 else math.inf)
    return {"values": [float(x) if math.isfinite(x) else None for x in v], "n": int(v.size),
            "mean": mean if finite else None, "sd": sd, "min": float(v.min()) if finite else None,
            "max": float(v.max()) if finite else None, "cv": cv if math.isfinite(cv) else None,
            "noisy": (not finite) or cv > NOISY_CV}


def run(ctx: Context, sections: dict) -> dict:
    """{"measurements": {name: {"figures": {figure: stats}, "status", "size"}}} for the sections
    computed (``sections``: id -> the section's JSON). Replicate 0 is read from the section when it
    measured it (the same inputs and arithmetic; a test checks that), the others are computed here."""
    n = replicates(ctx)
    chosen = [k for k in MEASUREMENTS if k in sections]
    out: dict = {"replicates": n, "noisy_cv": NOISY_CV, "measurements": {}}
    ctx.progress.stage("seeds", max(n - 1, 1) * len(chosen))
    for name in chosen:
        fn, first = MEASUREMENTS[name]
        sec = sections[name]
        if sec.get("status") == "unavailable":
            out["measurements"][name] = {"status": "unavailable", "figures": {}}
            continue
        try:
            reps = [first(sec["data"])]
        except (KeyError, TypeError):  # the section could not measure it in this build: measure here
            reps = [fn(ctx, 0)]
        # Replicates are independent cells (a pure function of mode, seed and replicate), so a sweep
        # executor may run them elsewhere with the same bits (Context.map).
        reps += ctx.map(_replicate, [(ctx.mode, ctx.seed, name, r) for r in range(1, n)],
                        label=lambda c: f"{c[2]} seed {c[3] + 1}/{n}")
        out["measurements"][name] = {"status": "ok", "size": _size(ctx, name),
                                     "figures": {k: stats([rep[k] for rep in reps]) for k in reps[0]}}
    ctx.progress.finish()
    return out
