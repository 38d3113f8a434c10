"""``fp8lab mla-numbers``: the MLA figures the report quotes (KV bytes per token, FP8-vs-BF16 cache
error, absorbed-vs-naive discrepancy), computed by the emulator on deterministic weights."""
from __future__ import annotations

import json


def _numbers(args) -> int:
    from .mla import report_numbers

    if args.tokens <= 0 or args.heads <= 0 or args.hidden <= 0:
        print("fp8lab mla-numbers: --tokens, --heads and --hidden must be positive")
        return 2
    n = report_numbers(tokens=args.tokens, heads=args.heads, hidden=args.hidden, seed=args.seed)
    if args.json:
        print(json.dumps(n, indent=2, sort_keys=True))
        return 0
    b = n["kv_bytes_per_token"]
    c = n["fp8_vs_bf16_cache"]
    print(f"KV cache bytes per token per layer (DeepSeek-V3 dims): MHA {b['mha_bf16']}, MLA BF16 {b['mla_bf16']} "
          f"({b['mha_bf16'] / b['mla_bf16']:.1f}x less), MLA FP8 {b['mla_fp8']} ({b['mha_bf16'] / b['mla_fp8']:.1f}x less)")
    print(f"FP8 vs BF16 latent cache, decode over {c['tokens']} tokens, {c['heads']} heads: output normwise rel. error "
          f"{c['normwise_rel_error']:.3g}, max abs / max |out| {c['max_abs_over_max_out']:.3g}, "
          f"max |lse diff| {c['max_lse_diff']:.3g}")
    for label, f in (("absorbed vs naive prefill", n["absorbed_vs_naive"]),
                     ("  the same, wkv_b an FP8 checkpoint", n["absorbed_vs_naive_fp8_wkv_b"])):
        print(f"{label}: {f['verdict']}, max |diff| {f['max_abs_difference']:.3g} "
              f"({f['max_rel_difference']:.3g} of max |attn|), observed/bound {f['max_observed_over_bound']:.3f}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("mla-numbers", help="print the MLA figures for the report")
    p.add_argument("--tokens", type=int, default=256, help="cached tokens of the decode comparison")
    p.add_argument("--heads", type=int, default=16, help="attention heads (DeepSeek-V3: 128)")
    p.add_argument("--hidden", type=int, default=512, help="hidden size (DeepSeek-V3: 7168)")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_numbers)
