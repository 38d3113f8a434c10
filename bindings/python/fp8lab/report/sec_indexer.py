"""Sparse attention (DeepSeek-V3.2 DSA): how many of the 2048 tokens the FP8 lightning indexer selects
differ from what the exact indexer selects, over context lengths 4k-128k, and the attention-output
error those changed selections cause. The indexer is fp8lab.mla.index (emulator/mla/indexer.hpp:
DeepSeek-V3.2-Exp's Indexer and fp8_index on the Hopper FP8 wgmma model); the change count is the
tie-aware one of fp8lab.mla.selection_changes.

Sampling, so the section takes seconds: one long synthetic sequence at V3.2's indexer dims (64 heads,
head dim 128, top-2048) whose tokens' logits are computed once per query; a decode query at context
length L sees tokens [0, L) — a token's logit does not depend on L (per-token key quantisation), so
every context length reuses them and each L's selection is the top-2048 of the first L logits."""
from __future__ import annotations

import numpy as np

from ..mla import index, index_exact, indexer_spec, selection_changes, sparse_decode, sparse_kv_quantize
from . import plots
from .context import Context
from .metrics import pct
from .section import Section

HEADS, TOPK, LATENT = 64, 2048, 512


def _bf16(x: np.ndarray) -> np.ndarray:
    import ml_dtypes

    return np.asarray(x, dtype=np.float32).astype(ml_dtypes.bfloat16).astype(np.float32)


def _inputs(rng: np.random.Generator, queries: int, tokens: int):
    """Synthetic activations after RoPE: Gaussian queries and head weights, LayerNorm-ed Gaussian keys
    (the indexer's k_norm), all BF16."""
    q = _bf16(rng.standard_normal((queries, HEADS, 128), dtype=np.float32))
    k = rng.standard_normal((tokens, 128), dtype=np.float32)
    k = _bf16((k - k.mean(axis=1, keepdims=True)) / k.std(axis=1, keepdims=True))
    w = _bf16(rng.standard_normal((queries, HEADS), dtype=np.float32))
    return q, k, w


def _top(row: np.ndarray, L: int, topk: int) -> np.ndarray:
    """The emulator's tie rule (largest first, lower token on ties) on float64 logits."""
    ids = np.arange(L)
    return ids[np.lexsort((ids, -row[:L]))][:topk]


def _attention_error(exact_row: np.ndarray, a_sel: np.ndarray, f_sel: np.ndarray, rng: np.random.Generator):
    """Relative output error of attention over the FP8 selection f_sel against the exact one a_sel,
    float64. Proxy model (stated in the section): attention logits = the exact indexer logits,
    standardised over the context; values = Gaussian 512-wide latents."""
    union = np.union1d(a_sel, f_sel)
    v = rng.standard_normal((len(union), LATENT))
    pos = {int(t): i for i, t in enumerate(union)}
    z = exact_row[union]
    z = (z - z.mean()) / (z.std() or 1.0)

    def out(sel):
        idx = np.array([pos[int(t)] for t in sel])
        p = np.exp(z[idx] - z[idx].max())
        p /= p.sum()
        return p @ v[idx], p

    oa, pa = out(a_sel)
    of, _ = out(f_sel)
    lost = np.isin(a_sel, f_sel, invert=True)
    return float(np.linalg.norm(of - oa) / np.linalg.norm(oa)), float(pa[lost].sum())


def _sparse_decode_error(z_row: np.ndarray, a_sel: np.ndarray, f_sel: np.ndarray, rng: np.random.Generator) -> float:
    """The same proxy through fp8lab.mla.sparse_decode (FlashMLA's sparse decode on its V32 FP8 KV layout,
    656 bytes per token): each selected token's cached 576-vector is [512 Gaussian latents | z_j, 0, ...]
    and the query [0, ..., 0 | 1, 0, ...] with softmax_scale 1, so its attention score is z_j (BF16)
    and its value the FP8 latent. Returns ||out(FP8 sel.) - out(exact sel.)|| / ||out(exact sel.)||."""
    union = np.union1d(a_sel, f_sel)
    page = 64
    blocks = -(-len(union) // page)
    vals = np.zeros((blocks * page, 576), dtype=np.float32)
    vals[:len(union), :LATENT] = rng.standard_normal((len(union), LATENT))
    z = z_row[union]
    vals[:len(union), LATENT] = (z - z.mean()) / (z.std() or 1.0)
    cache = sparse_kv_quantize(_bf16(vals).reshape(blocks, page, 576), "v32")
    q = np.zeros((1, 1, 8, 576), dtype=np.float32)
    q[..., LATENT] = 1.0
    pos = np.searchsorted(union, np.stack([a_sel, f_sel]))
    outs = [sparse_decode(q, cache, pos[s][None, None, :].astype(np.int32), layout="v32", softmax_scale=1.0)[0][0, 0, 0]
            for s in range(2)]
    outs = [o.astype(np.float64) for o in outs]
    return float(np.linalg.norm(outs[1] - outs[0]) / np.linalg.norm(outs[0]))


def measure(ctx: Context, lengths: list[int], queries: int, topk: int = TOPK) -> list[dict]:
    """Per context length: mean changed tokens per query against the two exact indexers, the
    largest count, and the proxy attention-output error and lost mass (see the module docstring)."""
    q, k, w = _inputs(ctx.rng("indexer"), queries, lengths[-1])
    spec = {"topk": topk}
    fp8 = index(q, k, w, spec=spec)["logits"].astype(np.float64)
    ref = {which: index_exact(q, k, w, spec=spec, inputs=which) for which in ("unquantised", "quantised")}
    rows = []
    for L in lengths:
        ends = np.full(queries, L, dtype=np.int32)
        flips = {which: selection_changes(fp8, r, topk, ends=ends) for which, r in ref.items()}
        errs, mass, sparse_errs = [], [], []
        for i in range(queries):
            a_sel, f_sel = _top(ref["unquantised"][i], L, topk), _top(fp8[i], L, topk)
            e, m = _attention_error(ref["unquantised"][i], a_sel, f_sel, ctx.rng("indexer-v", L, i))
            errs.append(e)
            mass.append(m)
            sparse_errs.append(_sparse_decode_error(ref["unquantised"][i], a_sel, f_sel, ctx.rng("indexer-s", L, i)))
        rows.append({"context": L, "queries": queries,
                     "changed_vs_exact": flips["unquantised"]["total_changed"] / queries,
                     "changed_vs_exact_quantised": flips["quantised"]["total_changed"] / queries,
                     "max_changed_vs_exact": int(flips["unquantised"]["changed"].max()),
                     "attention_rel_error": float(np.mean(errs)), "lost_attention_mass": float(np.mean(mass)),
                     "sparse_decode_rel_error": float(np.mean(sparse_errs))})
    return rows


def _share(row: dict) -> float:
    """The part of the changes against exact that the same-FP8-input reference does not show."""
    u = row["changed_vs_exact"]
    return 1.0 - row["changed_vs_exact_quantised"] / u if u else 0.0


def run(ctx: Context) -> Section:
    sec = Section("indexer", 7, "Sparse attention: the FP8 lightning indexer's top-2048")
    lengths = ctx.pick([4096, 16384], [4096, 8192, 16384, 32768, 65536, 131072])
    queries = ctx.pick(1, 1, 4)
    ctx.progress.stage("indexer", 1)
    rows = measure(ctx, lengths, queries)
    ctx.progress.step("FP8 and exact indexers")
    ctx.progress.finish()
    sec.data = {"heads": HEADS, "topk": TOPK, "queries": queries, "spec": indexer_spec(),
                "rows": rows, "attention_output": "numpy float64 over the two selected sets (proxy model); and "
                "fp8lab.mla.sparse_decode on FlashMLA's V32 FP8 cache"}
    lo, hi = rows[0], rows[-1]
    sec.conclusion = (
        f"Of the {TOPK} tokens DeepSeek-V3.2's FP8 indexer selects, {lo['changed_vs_exact']:.3g} differ from the exact "
        f"indexer's choice at {lo['context'] // 1024}k tokens of context and {hi['changed_vs_exact']:.3g} at "
        f"{hi['context'] // 1024}k ({pct(lo['changed_vs_exact'] / TOPK)} and {pct(hi['changed_vs_exact'] / TOPK)}; "
        f"synthetic activations). Against float64 on the same quantised inputs {hi['changed_vs_exact_quantised']:.3g} "
        f"token{'' if hi['changed_vs_exact_quantised'] == 1 else 's'} change at {hi['context'] // 1024}k, so the E4M3/UE8M0 quantisation, not the FP8 accumulation, causes "
        f"{pct(_share(hi))} of the changes there. Under a proxy attention model the changed tokens move the attention "
        f"output by {pct(lo['attention_rel_error'])} at {lo['context'] // 1024}k and {pct(hi['attention_rel_error'])} "
        f"at {hi['context'] // 1024}k ({pct(lo['sparse_decode_rel_error'])} and "
        f"{pct(hi['sparse_decode_rel_error'])} through the sparse MLA decode emulator on FlashMLA's FP8 cache).")
    sec.table(f"Selected tokens that change (tie-aware, per query, mean over {queries} "
              f"quer{'y' if queries == 1 else 'ies'}), and what that does to attention",
              ["context", "vs exact (BF16 inputs)", "vs exact (same FP8 inputs)", "fraction of 2048",
               "attention output rel. error (float64)", "attention mass on lost tokens",
               "same, sparse_decode on the FP8 cache"],
              [[f"{r['context'] // 1024}k", f"{r['changed_vs_exact']:.4g}", f"{r['changed_vs_exact_quantised']:.4g}",
                pct(r["changed_vs_exact"] / TOPK), pct(r["attention_rel_error"]), pct(r["lost_attention_mass"]),
                pct(r["sparse_decode_rel_error"])] for r in rows])
    xs = [r["context"] for r in rows]
    sec.figure("flips", plots.lines(
        {"vs exact indexer (BF16 inputs, float64)": (xs, [max(r["changed_vs_exact"], 0.1) for r in rows]),
         "vs exact on the same FP8 inputs": (xs, [max(r["changed_vs_exact_quantised"], 0.1) for r in rows])},
        "FP8 lightning indexer: selected tokens that change (of 2048)", "context length (tokens)",
        "changed tokens per query (0 drawn at 0.1)"),
        "Tokens of the top-2048 that the FP8 indexer selects differently from the exact one, by context length.")
    sec.para(
        "What is measured: fp8lab.mla.index at DeepSeek-V3.2's indexer dims (64 heads, head dim 128, top-2048, spec "
        "reduction v32_tilelang: DeepSeek-V3.2-Exp's rotate_activation in BF16, act_quant with UE8M0 scales, FP8 q.k on "
        "the Hopper wgmma model, ReLU, head weights, key scale after the head sum) against two float64 indexers: the "
        "exact one on the same BF16 activations (exact Hadamard, no FP8) and the exact one on the same E4M3 elements "
        "and scales (only the kernel's accumulation and rounding differ). A change is a token in one selection and "
        "not in the other, counted tie-aware (a swap between exactly equal logits is not a change). Sampling: one "
        f"synthetic sequence of {lengths[-1] // 1024}k tokens (Gaussian queries and weights, LayerNorm-ed Gaussian "
        f"keys, BF16); {queries} decode quer{'y' if queries == 1 else 'ies'} at each context length L attending to "
        "tokens [0, L). Real activations have more structure (outlier channels, which the Hadamard rotation exists "
        "to spread), so the counts are indicative, not DeepSeek-V3.2's.")
    sec.para(
        "Attention-output error, under a stated proxy model: each token's attention logit is its exact indexer "
        "logit standardised over the two selections' tokens, values are Gaussian 512-wide latents; the error is "
        "||out(FP8 selection) - out(exact selection)|| / ||out(exact selection)||, and the lost mass is the exact "
        "selection's softmax weight on tokens the FP8 selection dropped. Computed in numpy float64 over the two "
        "selected sets, and again through fp8lab.mla.sparse_decode (FlashMLA's sparse decode arithmetic on its "
        "V32 FP8 cache, 656 bytes per token: the latents cached as E4M3 with power-of-two scales, the score carried "
        "in the BF16 RoPE part, softmax_scale 1).")
    return sec
