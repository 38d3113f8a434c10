"""``fp8lab moe``: router recipes, their specs, and the BF16-vs-FP32 gate disagreement figure."""
from __future__ import annotations

import json

import numpy as np

from . import moe


def _recipes(args) -> int:
    for name in moe.recipes():
        s = moe.spec(name)
        print(f"{name:22s} {s['score']:8s} gate {s['gate_format']:5s} bias {s['bias_format']:5s} "
              f"{s['experts']} experts top-{s['topk']}, {s['groups']} groups / top-{s['topk_groups']} "
              f"({s['group_score']}), scale {s['routed_scale']:g} on {s['scale_target']}")
    return 0


def _spec(args) -> int:
    print(json.dumps(json.loads(moe.spec_json(args.name)), indent=2, sort_keys=True))
    return 0


def disagreement(tokens: int, std: float, bias_std: float, seed: int, a: str, b: str) -> dict:
    """Fraction of tokens whose expert *set* differs between recipes a and b on N(0, std^2) logits."""
    if tokens < 1:
        raise ValueError(f"--tokens: expected >= 1, got {tokens}")
    if not (std > 0 and np.isfinite(std)):
        raise ValueError(f"--std: expected a finite value > 0, got {std}")
    if not (bias_std >= 0 and np.isfinite(bias_std)):
        raise ValueError(f"--bias-std: expected a finite value >= 0, got {bias_std}")
    experts = moe.spec(a)["experts"]
    if moe.spec(b)["experts"] != experts:
        raise ValueError(f"recipes {a} and {b} route over different expert counts")
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((tokens, experts)) * std).astype(np.float32)
    bias = (rng.standard_normal(experts) * bias_std).astype(np.float32) if bias_std > 0 else None
    ia, _ = moe.route(logits, bias, a)
    ib, _ = moe.route(logits, bias, b)
    differ = int(np.sum(np.any(np.sort(ia, 1) != np.sort(ib, 1), axis=1)))
    return {"a": a, "b": b, "tokens": tokens, "logit_std": std, "bias_std": bias_std, "seed": seed,
            "differing_tokens": differ, "fraction": differ / tokens}


def _figure(args) -> int:
    r = disagreement(args.tokens, args.std, args.bias_std, args.seed, args.a, args.b)
    if args.json:
        print(json.dumps(r, sort_keys=True))
    else:
        print(f"{r['a']} vs {r['b']}: {r['differing_tokens']} / {r['tokens']} tokens "
              f"({100 * r['fraction']:.2f}%) choose a different expert set "
              f"(logits N(0, {r['logit_std']:g}^2), bias std {r['bias_std']:g}, seed {r['seed']})")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("moe", help="MoE router recipes and the BF16-vs-FP32 gate figure")
    msub = p.add_subparsers(dest="moe_command", metavar="SUBCOMMAND", required=True)
    r = msub.add_parser("recipes", help="list the router recipes")
    r.set_defaults(func=_recipes)
    s = msub.add_parser("spec", help="print a recipe's full RouterSpec as JSON")
    s.add_argument("name", choices=moe.recipes())
    s.set_defaults(func=_spec)
    f = msub.add_parser("figure", help="fraction of tokens whose expert set differs between two recipes")
    f.add_argument("--tokens", type=int, default=8192)
    f.add_argument("--std", type=float, default=1.0, help="logit standard deviation")
    f.add_argument("--bias-std", type=float, default=0.0, help="selection-bias standard deviation (0: no bias)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--a", default="deepseek_v3")
    f.add_argument("--b", default="deepseek_v3_hf")
    f.add_argument("--json", action="store_true")
    f.set_defaults(func=_figure)
