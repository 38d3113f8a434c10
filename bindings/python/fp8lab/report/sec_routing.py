"""Section 4: routing — how often the BF16 gate of the DeepSeek reference picks a different expert
set than an FP32 gate (HF), how often exact ties decide a selection, and what the auxiliary-loss-free
balancing bias does to expert loads over a synthetic stream (paper §2.1.2; REFERENCE.md "MoE routing").

Ties are detected without looking inside the router: the gate is elementwise and group scores are
permutation-invariant within a group, so reversing the expert order (group g becomes group 7 - g) can
change a token's expert set only through the tie policy (lowest index first). A token whose set
changes under reversal had an exact tie at its selection boundary."""
from __future__ import annotations

import numpy as np

from ..moe import gate_scores, route, update_bias
from . import plots
from .context import Context
from .metrics import pct
from .section import Section

EXPERTS = 256
SPECS = ("deepseek_v3", "deepseek_v3_hf")


def _sets(ids: np.ndarray) -> np.ndarray:
    return np.sort(np.asarray(ids, dtype=np.int64), axis=1)


def run(ctx: Context) -> Section:
    sec = Section("routing", 4, "Routing: gate precision, ties and the balancing bias")
    tokens = ctx.pick(4096, 65536)
    ctx.progress.stage("routing", 6)
    rng = ctx.rng("routing", "logits")
    logits = rng.standard_normal((tokens, EXPERTS)).astype(np.float32)
    bias = (0.05 * rng.standard_normal(EXPERTS)).astype(np.float32)
    flips, ties = {}, {}
    for label, b in (("no bias", None), ("bias N(0, 0.05^2)", bias)):
        sets = {}
        for spec in SPECS:
            ids, _ = route(logits, bias=b, spec=spec)
            sets[spec] = _sets(ids)
            rids, _ = route(np.ascontiguousarray(logits[:, ::-1]), bias=None if b is None else
                            np.ascontiguousarray(b[::-1]), spec=spec)
            rsets = _sets(EXPERTS - 1 - np.asarray(rids, dtype=np.int64))
            ties[f"{spec}|{label}"] = int(np.count_nonzero(np.any(rsets != sets[spec], axis=1)))
            ctx.progress.step(f"{spec} {label}")
        flips[label] = int(np.count_nonzero(np.any(sets[SPECS[0]] != sets[SPECS[1]], axis=1)))
    near = {}
    # Exact equalities among each token's 9 largest gate scores (the 8 chosen and the runner-up).
    for spec in SPECS:
        top = -np.sort(-np.asarray(gate_scores(logits, spec=spec)), axis=1)[:, :9]
        near[spec] = int(np.count_nonzero(np.any(top[:, 1:] == top[:, :-1], axis=1)))
    # The balancing bias over a synthetic stream: some experts are systematically favoured.
    steps, batch = ctx.pick((60, 1024), (300, 4096))
    gamma = ctx.pick(0.004, 0.001)
    srng = ctx.rng("routing", "stream")
    skew = (0.5 * srng.standard_normal(EXPERTS)).astype(np.float32)
    imbalance = {"static (no update)": [], f"bias update, gamma = {gamma}": []}
    b = np.zeros(EXPERTS, dtype=np.float32)
    for step in range(steps):
        x = (srng.standard_normal((batch, EXPERTS)) + skew).astype(np.float32)
        ids0, _ = route(x, bias=None, spec="deepseek_v3")
        ids1, _ = route(x, bias=b, spec="deepseek_v3")
        for key, ids in zip(imbalance, (ids0, ids1)):
            load = np.bincount(np.asarray(ids, dtype=np.int64).ravel(), minlength=EXPERTS)
            imbalance[key].append(float(load.max() / load.mean()))
        b = np.asarray(update_bias(b, ids1, gamma), dtype=np.float32)
        if step % max(steps // 2, 1) == 0:
            ctx.progress.step(f"stream {step}/{steps}")
    ctx.progress.finish()
    tail = max(steps // 10, 1)
    final = {k: float(np.mean(v[-tail:])) for k, v in imbalance.items()}
    sec.data = {"tokens": tokens, "experts": EXPERTS, "flips": flips, "ties": ties, "equal_top9_scores": near,
                "stream": {"steps": steps, "batch": batch, "gamma": gamma, "max_over_mean_load": imbalance,
                           "final_mean_of_last_10pct": final}}
    sec.para(f"{tokens} tokens of N(0, 1) gate logits over {EXPERTS} experts, routed with the `deepseek_v3` spec "
             "(the DeepSeek reference: BF16 gate arithmetic) and `deepseek_v3_hf` (FP32 logits, epsilon 1e-20); "
             "8 groups, top-4 groups, top-8 experts.")
    sec.table("Tokens whose expert set differs between the BF16 and the FP32 gate",
              ["bias", "tokens differing", "fraction"],
              [[k, v, pct(v / tokens)] for k, v in flips.items()])
    sec.table("Tokens whose expert set is decided by an exact tie (set changes when expert order is reversed)",
              ["spec", "bias", "tokens", "fraction"],
              [[k.split("|")[0], k.split("|")[1], v, pct(v / tokens)] for k, v in ties.items()])
    if near:
        sec.table("Tokens with two equal gate scores among their 9 largest (no bias)", ["spec", "tokens", "fraction"],
                  [[k, v, pct(v / tokens)] for k, v in near.items()])
    sec.para(f"Balancing stream: {steps} steps of {batch} tokens; logits N(0, 1) plus a fixed per-expert offset "
             f"N(0, 0.5^2) so some experts are favoured; after each step the bias moves by gamma = {gamma} against "
             "each expert's overload (sign rule). Imbalance = max expert load / mean load (1 is perfect).")
    sec.figure("load_imbalance", plots.lines({k: (list(range(1, steps + 1)), v) for k, v in imbalance.items()},
                                             "Expert load imbalance over a synthetic stream", "step",
                                             "max load / mean load", logx=False, logy=False),
               "Max/mean expert load per step, without and with the bias update.")
    keys = list(imbalance)
    f = flips["no bias"]
    t = ties[f"{SPECS[0]}|no bias"]
    sec.conclusion = (f"The BF16 gate of the DeepSeek reference picks a different expert set than an FP32 gate for "
                      f"{pct(f / tokens)} of tokens ({f} of {tokens}), for {pct(t / tokens)} of tokens its choice is decided "
                      f"by an exact tie between BF16 scores, and the balancing bias takes the max/mean expert load from "
                      f"{final[keys[0]]:.3g} to {final[keys[1]]:.3g} within {steps} steps.")
    return sec
