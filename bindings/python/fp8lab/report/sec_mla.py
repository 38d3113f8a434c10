"""Section 6: serving with Multi-head Latent Attention — KV-cache bytes per token (MHA with the same
dims vs MLA with a BF16 or an FP8 latent cache) and what the cheap forms cost: the attention-output
error of the FP8 latent cache against the BF16 cache, and the absorbed-vs-naive discrepancy against
its certified bound. The measurement itself is fp8lab.mla.report_numbers (emulator/mla:
FlashMLA cache layout, split-KV decode, pinned exp)."""
from __future__ import annotations

from ..mla import report_numbers
from . import cost_model, plots
from .context import Context
from .metrics import pct
from .section import Section


_AGREES = {"bit-identical": "is bit-identical to", "within-bound": "agrees within its certified bound with",
           "violation": "VIOLATES its certified bound against"}


def run(ctx: Context) -> Section:
    sec = Section("mla", 6, "Serving: the MLA latent cache and its FP8 form")
    tokens, heads, hidden = ctx.pick((64, 4, 256), (256, 16, 512), (1024, 16, 512))
    seed = int(ctx.rng("mla").integers(0, 2**31))
    ctx.progress.stage("mla", 1)
    r = report_numbers(tokens=tokens, heads=heads, hidden=hidden, seed=seed)
    ctx.progress.step()
    ctx.progress.finish()
    kv, c8, forms = r["kv_bytes_per_token"], r["fp8_vs_bf16_cache"], r["absorbed_vs_naive"]
    forms8 = r["absorbed_vs_naive_fp8_wkv_b"]
    sec.data = {"tokens": tokens, "heads": heads, "hidden": hidden, "seed": seed, **r}
    sec.conclusion = (f"Caching the 512-wide latent plus the 64-wide RoPE key takes {kv['mla_bf16']} bytes per token and "
                      f"layer in BF16 ({kv['mha_bf16'] / kv['mla_bf16']:.3g}x less than MHA's {kv['mha_bf16']}) and "
                      f"{kv['mla_fp8']} in FlashMLA's FP8 layout ({kv['mha_bf16'] / kv['mla_fp8']:.3g}x less); the FP8 "
                      f"cache moves the decode output by {pct(c8['normwise_rel_error'])} (normwise, against the BF16 "
                      f"cache), and the absorbed form {_AGREES.get(forms['verdict'], forms['verdict'] + ' against')} the naive "
                      f"one (max relative difference {pct(forms['max_rel_difference'])}, "
                      f"{pct(forms['max_observed_over_bound'])} of its certified bound; "
                      f"{pct(forms8['max_rel_difference'])} with wkv_b an FP8 checkpoint, "
                      f"{pct(forms8['max_observed_over_bound'])} of that bound).")
    sec.table("KV-cache bytes per token and layer (DeepSeek-V3 dims: 128 heads, nope 128, rope 64, v 128, "
              "kv_lora 512)", ["cache", "bytes", "vs MHA"],
              [["MHA, BF16 keys and values", kv["mha_bf16"], "1x"],
               ["MLA, BF16 latent + RoPE key", kv["mla_bf16"], f"{kv['mha_bf16'] / kv['mla_bf16']:.3g}x smaller"],
               ["MLA, FP8 latent (per-128 power-of-two scales) + BF16 RoPE key", kv["mla_fp8"],
                f"{kv['mha_bf16'] / kv['mla_fp8']:.3g}x smaller"]])
    cm = cost_model.build()
    kinds = [("MHA", "mha"), ("GQA, 8 KV heads", "gqa"), ("MLA", "mla")]
    sec.figure("kv_bytes", plots.bars(
        [k for k, _ in kinds], {fmt: [cm[f"kv_{key}_{fmt}_model"] / 1e3 for _, key in kinds] for fmt in ("bf16", "fp8")},
        "KV cache per token, all 61 layers, DeepSeek-V3 dims", "kilobytes per token (log scale)", logy=True,
        xlabel="attention form (128 query heads, keys 192 wide, values 128 wide)"),
        f"KV-cache bytes per token over DeepSeek-V3's 61 layers (the cost-model section): MLA caches "
        f"{cm['kv_mla_bf16_model'] / 1e3:.4g} kB in BF16 and {cm['kv_mla_fp8_model'] / 1e3:.4g} kB in FlashMLA's FP8 "
        f"layout; FP8 for MHA and GQA means E4M3 with one FP32 scale per 128 elements.")
    sec.para(f"Accuracy measured on DeepSeek-V3 cache dims with a reduced model ({heads} heads, hidden {hidden}) so it runs "
             f"in seconds: decode of the last token over {tokens} cached tokens whose latents and queries come from the "
             "emulated projections of deterministic weights; absorbed vs naive prefill on the first 16 tokens.")
    sec.table("What the cheap forms cost", ["comparison", "figure", "value"],
              [["FP8 vs BF16 latent cache (decode output)", "normwise relative difference", pct(c8["normwise_rel_error"])],
               ["", "max |difference| / max |output|", pct(c8["max_abs_over_max_out"])],
               ["", "max |lse difference|", f"{c8['max_lse_diff']:.3g}"],
               ["absorbed vs naive (prefill)", "verdict against the certified bound", forms["verdict"]],
               ["", "max relative difference", pct(forms["max_rel_difference"])],
               ["", "observed / certified bound", f"{pct(forms['max_observed_over_bound'])}"],
               ["absorbed vs naive, wkv_b an FP8 checkpoint (naive: FP8 linear; absorbed: dequantised "
                "weights, as DeepSeek-V3 inference runs them)", "verdict against the certified bound", forms8["verdict"]],
               ["", "max relative difference", pct(forms8["max_rel_difference"])],
               ["", "observed / certified bound", f"{pct(forms8['max_observed_over_bound'])}"]])
    return sec
