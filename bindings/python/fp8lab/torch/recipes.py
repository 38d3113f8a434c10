"""Training recipes as rows of data: how each of a Linear's three GEMMs quantises its operands and
accumulates, what is cached for the backward pass, and what the optimizer keeps.

A row is a plain dict (``recipe(name)`` returns a deep copy a user may edit and pass back, e.g. to
``convert(model, my_row)``); ``recipes()`` lists the names. Every row cites its source and says, in
``choices``, what fp8lab decided where the source is silent.

The GEMMs, in DeepGEMM's NT layout ``D = A @ B.T`` (``fp8lab.gemm``), for ``y = x @ W.T`` with
``x`` [T, in] and ``W`` [out, in]:

=======  ==========================  ==========================  ===========
pass     A (M x K)                   B (N x K)                   D
=======  ==========================  ==========================  ===========
fprop    x        [T, in]            W        [out, in]          y  [T, out]
dgrad    dy       [T, out]           W.T      [in, out]          dx [T, in]
wgrad    dy.T     [out, T]           x.T      [in, T]            dW [out, in]
=======  ==========================  ==========================  ===========

So a tile ``(1, 128)`` on an operand always runs along that pass's K: the wgrad row's ``(1, 128)``
on ``x.T`` is the paper's 128x1 tile of ``x`` (128 tokens of one channel, §3.3 "re-tiled ... for the
backward pass").

A pass names a row of the emulator's GEMM recipe table (``fp8lab.recipes()``: per operand format,
tile and scale rule, plus the GEMM spec), ``{"gemm_recipe": "deepseek_v3_fp8_linear"}``, or such a
row with the fields the pass changes, ``{"gemm_recipe": {"base": "deepseek_v3_fp8_linear", "gemm":
{"out": "fp32"}}}``; the GEMM row's ``a`` is the pass's A and ``b`` its B. ``resolve(row)`` gives
each pass as ``{"a", "b", "gemm"}`` (operands ``{"fmt", "tile", "rule"}``, ``fp8lab.quantize``'s
arguments; ``gemm``, ``fp8lab.gemm``'s keywords). A pass may also be written that way directly;
the ``bf16`` row's operands are ``{"fmt": "bf16"}`` (round to BF16, nearest-even, no scale), which
is not a block-scaled GEMM row. ``kind: "torch"`` (the ``fp32`` row) runs torch's own FP32
matmul instead of the emulator. ``cache`` says how the input ``x`` is kept for Wgrad:
``{"from": "input"}`` quantises x itself with the wgrad operand's rule; ``{"from": "cached", "fmt",
"tile", "rule"}`` quantises x once as the cached copy (the paper's FP8 activation cache), dequantises
it and quantises that with the wgrad operand's tile and rule (``fp8lab.retile``'s definition);
``cache_attn_out`` overrides it for the Linear after attention (``role="attn_out"``).

Ragged shapes need no padding by the caller: ``fp8lab.quantize`` takes a ragged edge tile's amax over
its valid elements (the rest count as zeros) and the GEMM's last K block holds the remaining
``K mod 128`` products (zero-padded to the instruction's K = 32, exact zeros).
"""
from __future__ import annotations

import copy

from .. import _core

_PAPER = "DeepSeek-V3 technical report, arXiv 2412.19437"


def _operand_spec(op: dict) -> dict:
    """An emulator recipe operand ({"format", "tile", "rule"}) as fp8lab.quantize's arguments."""
    return {"fmt": op["format"], "tile": list(op["tile"]), "rule": op["rule"]}


def _g(base: str, **edits) -> dict:
    """A pass that names a GEMM recipe row, with the fields it changes."""
    return {"gemm_recipe": dict(base=base, **edits) if edits else base}


_FP32_OUT = {"out": "fp32"}


def _deepseek(linear="deepseek_v3_fp8_linear", wgrad=None, dgrad_edits=None):
    return {"fprop": _g(linear),
            "dgrad": _g(linear, **(dgrad_edits or {})),
            "wgrad": _g(wgrad) if isinstance(wgrad, str) else _g(linear, b={"tile": [1, 128]}, gemm=_FP32_OUT)}


_DEEPSEEK_CHOICES = [
    "Output formats: fprop and dgrad write BF16 (the activations and activation gradients the next "
    "operator reads), wgrad writes FP32 (the paper keeps weight gradients in FP32); the paper says "
    "'BF16 or FP32' without naming each GEMM.",
    "Scale rule 'deepseek' (DeepSeek-V3 inference act_quant: amax floored at 1e-4, s = amax/448 in "
    "FP32, x / s, satfinite) for every operand; the paper computes amax online and does not state a "
    "floor.",
    "The Wgrad activation is the FP8 copy cached by the forward (1x128), dequantised and re-tiled to "
    "128x1 with the same rule (a second rounding where scales are not powers of two; the paper "
    "avoids it with power-of-two scales only for the attention-output Linear's input, which "
    "cache_attn_out models: E5M6, power-of-two scales). The re-tiled E5M6 values are quantised to "
    "E4M3 for the GEMM, since the paper does not say how an E5M6 tile enters the FP8 Wgrad GEMM.",
    "The activation gradient is quantised from the BF16 dgrad output of the layer above, once per "
    "pass with that pass's tile (1x128 along out for Dgrad, along tokens for Wgrad).",
    "Weights: the FP32 master weight is quantised directly (128x128) for Fprop and its transpose for "
    "Dgrad (the same blocks, so the same scales and bits).",
    "SwiGLU inputs are not cached in FP8 (the paper does): its backward uses the FP32 values.",
    "promote_every = 128 (N_C = 128, four WGMMAs of K = 32); combine 'deepgemm' = "
    "fma(sa*sb, p, acc) (DeepGEMM sm90_fp8_gemm_1d2d).",
]

def _cached(gemm_recipe: str, **edits) -> dict:
    """The FP8 activation cache as the named GEMM row quantises its activations (operand ``a``),
    with the fields the row changes: formats, tiles and rules are the emulator table's."""
    return {"from": "cached", **_operand_spec(_core.gemm_recipe(gemm_recipe)["a"]), **edits}


_CACHE_DEEPSEEK = _cached("deepseek_v3_fp8_linear")
# §3.3.3: the attention-output Linear's input is cached in E5M6 with power-of-two scales; the
# rule is the UE8M0 row's (deepseek_v31_fp8_ue8m0), the element format the paper's.
_CACHE_ATTN_OUT = _cached("deepseek_v31_fp8_ue8m0", fmt="e5m6")

_OPT_FP8 = {"master_weights": "fp32", "weight_grads": "fp32", "adam_moments": "bf16",
            "source": _PAPER + " §3.3.3 (FP32 master weights and gradients, BF16 AdamW moments)"}


def _row(name, source, passes, cache, choices, kind="emulated", optimizer=None, cache_attn_out=None):
    r = {"name": name, "source": source, "kind": kind, "passes": passes, "cache": cache,
         "optimizer": optimizer or dict(_OPT_FP8), "choices": list(choices)}
    if cache_attn_out is not None:
        r["cache_attn_out"] = cache_attn_out
    return r


_ROWS = [
    _row("fp32", "the reference: torch's FP32 matmul (torch.nn.functional.linear) for every GEMM",
         {p: None for p in ("fprop", "dgrad", "wgrad")}, {"from": "input"},
         ["Not emulated: torch's own CPU FP32 GEMM, so it is the fastest run and the upper reference.",
          "FP32 master weights and FP32 AdamW moments."], kind="torch",
         optimizer={"master_weights": "fp32", "weight_grads": "fp32", "adam_moments": "fp32",
                    "source": "reference"}),
    _row("bf16",
         _PAPER + " §3.3 / App. B.1 baseline (BF16 training); Hopper BF16 wgmma model (fp8lab.tensor_cores(): "
         "hopper_wgmma_m64nNk16_f32_bf16)",
         {p: {"a": {"fmt": "bf16"}, "b": {"fmt": "bf16"},
              "gemm": {"accumulate": "tensorcore", "instruction": "hopper_bf16", "out": out}}
          for p, out in (("fprop", "bf16"), ("dgrad", "bf16"), ("wgrad", "fp32"))},
         {"from": "input"},
         ["Operands rounded to BF16 (nearest-even), the whole K chained through the Hopper BF16 "
          "tensor-core model (25 alignment bits, FP32 accumulator truncated to 24 bits): the "
          "hardware keeps BF16 GEMMs in the tensor core, with no promotion.",
          "Fprop and dgrad write BF16, wgrad writes FP32 (Megatron-style gradient accumulation in FP32); "
          "the paper does not describe its BF16 baseline's GEMMs.",
          "Optimizer: FP32 master weights and FP32 AdamW moments (standard BF16 mixed precision; the "
          "paper does not say what its baseline keeps)."],
         optimizer={"master_weights": "fp32", "weight_grads": "fp32", "adam_moments": "fp32",
                    "source": "choice: standard BF16 mixed precision (Megatron-LM)"}),
    _row("deepseek_fp8", _PAPER + " §3.3 (fine-grained FP8 training), §3.3.2 (promotion, N_C = 128); "
         "DeepGEMM sm90_fp8_gemm_1d2d (combine)", _deepseek(wgrad="deepseek_v3_fp8_wgrad"), _CACHE_DEEPSEEK,
         _DEEPSEEK_CHOICES,
         cache_attn_out=_CACHE_ATTN_OUT),
    _row("deepseek_fp8_no_promotion",
         _PAPER + " §3.3.2 (the limited accumulation precision promotion fixes)",
         {"fprop": _g("deepseek_v3_fp8_no_promotion"), "dgrad": _g("deepseek_v3_fp8_no_promotion"),
          "wgrad": _g("deepseek_v3_fp8_no_promotion", gemm=_FP32_OUT)},
         _cached("deepseek_v3_fp8_no_promotion"),
         ["Without promotion the whole K is one tensor-core chain (14-bit truncated running sum), and "
          "a chain can apply only one scale per row: fine-grained 1x128 / 128x128 scales need the "
          "promotion step to be applied at all. This row therefore scales per row along K (per token "
          "for activations and gradients, per channel for weights) and accumulates without promotion; "
          "it changes granularity as well as accumulation (compare deepseek_fp8 and tensorwise_fp8)."]
         + _DEEPSEEK_CHOICES[:1] + _DEEPSEEK_CHOICES[4:6]),
    _row("deepseek_fp8_act_grad_128x128",
         _PAPER + " App. B.2 (block-wise quantisation of activation gradients, which made a 16B MoE diverge)",
         _deepseek(wgrad="deepseek_v3_fp8_wgrad", dgrad_edits={"a": {"tile": [128, 128]}}), _CACHE_DEEPSEEK,
         ["As deepseek_fp8, except that Dgrad's activation-gradient operand takes 128x128 blocks "
          "(tokens x out) instead of 1x128 tiles; Wgrad keeps its per-token-column tiles."]
         + _DEEPSEEK_CHOICES, cache_attn_out=_CACHE_ATTN_OUT),
    _row("deepseek_fp8_ue8m0",
         "DeepSeek-V3.1 model card (UE8M0 scales on weights and activations); V3.2 inference act_quant "
         "scale_fmt='ue8m0' (scale 2^ceil(log2(amax/448)))",
         _deepseek(linear="deepseek_v31_fp8_ue8m0"), _cached("deepseek_v31_fp8_ue8m0"),
         ["As deepseek_fp8 with rule 'deepseek_ue8m0' (power-of-two scales) on every operand and on the "
          "cache, so re-tiling 1x128 -> 128x1 adds no rounding unless an element leaves the normal range."]
         + _DEEPSEEK_CHOICES[:1] + _DEEPSEEK_CHOICES[3:]),
    _row("tensorwise_fp8",
         "NVIDIA TransformerEngine Float8CurrentScaling (one scale per tensor from its current amax; "
         "fprop with cuBLAS fast accumulation, dgrad/wgrad with split accumulation)",
         {"fprop": _g("te_tensorwise_fp8", gemm={"accumulate": "tensorcore"}), "dgrad": _g("te_tensorwise_fp8"),
          "wgrad": _g("te_tensorwise_fp8", gemm=_FP32_OUT)},
         {"from": "input"},
         ["Scale rule 'te_fp32' (448/amax in FP32, x * scale, satfinite): current scaling does not "
          "round scales to powers of two by default.",
          "E4M3 for gradients too: TE's default HYBRID format puts gradients in E5M2, but fp8lab's Hopper "
          "FP8 models take one operand format per instruction (E4M3 x E5M2 is not modelled).",
          "Fprop without promotion (TE's fast accumulation for fprop); dgrad and wgrad promoted every "
          "128 elements (cuBLAS's split-accumulation interval is undocumented; 128 is a choice), "
          "combine fma(p*sa, sb, acc).",
          "Wgrad quantises x afresh (per tensor) rather than re-tiling a cached copy; with per-tensor "
          "scales there is no re-tiling.",
          "FP32 master weights and gradients, BF16 AdamW moments, as the DeepSeek rows, so the "
          "comparison isolates the GEMMs."]),
]


def _same_row(gemm_recipe: str) -> dict:
    """Every pass on one GEMM recipe row, each quantising its own operands afresh along its own K
    (MXFP8: TransformerEngine keeps a rowwise and a columnwise copy of each tensor, quantised from the
    high-precision values, so Dgrad's W and Wgrad's x and dy are 1x32 blocks along that GEMM's K);
    Wgrad writes FP32 like every emulated row here."""
    return {"fprop": _g(gemm_recipe), "dgrad": _g(gemm_recipe), "wgrad": _g(gemm_recipe, gemm=_FP32_OUT)}


_BLACKWELL_CHOICES = [
    "Output formats as the DeepSeek rows: fprop and dgrad BF16 (the GEMM row's out), wgrad FP32.",
    "FP32 master weights and gradients, BF16 AdamW moments, as the DeepSeek rows, so the comparison with "
    "deepseek_fp8 isolates the GEMMs.",
    "The block scales enter each tcgen05 block_scale instruction and the FP32 accumulator stays in tensor "
    "memory for the whole K (no promotion); a tile's K extent must be a multiple of the instruction's scale "
    "block (Fp8Linear checks it per layer).",
]
_MXFP8_CHOICES = [
    "E4M3 for activations, weights and gradients (MXFP8BlockScaling's default fp8_format is E4M3).",
    "Every GEMM quantises both operands from their FP32 values in 1x32 blocks along its own K (TE's rowwise "
    "and columnwise MXFP8 copies), so cache.from = 'input': the columnwise copy of x kept for Wgrad is x "
    "quantised along tokens, the same bits.",
] + _BLACKWELL_CHOICES

_ROWS += [
    _row("deepgemm_sm100_fp8",
         "DeepGEMM sm100_fp8_gemm_1d1d (GEMM recipe row deepgemm_sm100_fp8: UE8M0 1x128 activations, 128x128 "
         "weights, tcgen05 kind::mxf8f6f4 block_scale, no promotion); Wgrad as DeepGEMM's k-grouped 1D1D "
         "GEMM (1x128 scales on both operands along K, FP32 D)",
         _deepseek(linear="deepgemm_sm100_fp8"), _cached("deepgemm_sm100_fp8"),
         ["As deepseek_fp8 with DeepGEMM's SM100 GEMM for every pass: rule 'deepgemm_ue8m0' (power-of-two "
          "scales, so re-tiling the cached 1x128 copy to 128x1 adds no rounding unless an element leaves the "
          "normal range; no separate E5M6 cache for the attention output)."]
         + _DEEPSEEK_CHOICES[3:5] + _BLACKWELL_CHOICES),
    _row("mxfp8_te", "TransformerEngine MXFP8BlockScaling (GEMM recipe row mxfp8_te) for Fprop, Dgrad and Wgrad",
         _same_row("mxfp8_te"), {"from": "input"}, ["E8M0 scales rounded up (TE float_to_e8m0)."] + _MXFP8_CHOICES),
    _row("mxfp8_torchao_rceil", "torchao MXLinear, ScaleCalculationMode.RCEIL (GEMM recipe row mxfp8_torchao_rceil) "
         "for all three GEMMs", _same_row("mxfp8_torchao_rceil"), {"from": "input"},
         ["E8M0 scales by torchao's RCEIL mode; torchao's MXLinear writes the weight gradient in the input's "
          "dtype, here FP32 as every row."] + _MXFP8_CHOICES),
]

_NVFP4_PAPER = "NVIDIA, Pretraining Large Language Models with NVFP4, arXiv 2509.25149"
_ROWS.append(_row(
    "nvfp4", _NVFP4_PAPER + " §4 (1x16 activations and gradients, 16x16 weights, RHT on Wgrad's inputs, stochastic "
    "rounding of gradients) as TransformerEngine NVFP4BlockScaling runs it: every pass on the GEMM recipe row nvfp4_te",
    {"fprop": _g("nvfp4_te"), "dgrad": dict(_g("nvfp4_te"), stochastic_rounding=["a"]),
     "wgrad": dict(_g("nvfp4_te", b={"tile": [1, 16]}, gemm=_FP32_OUT), rht16=True, stochastic_rounding=["a"])},
    {"from": "input"},
    ["Every converted Linear in NVFP4; the paper keeps a few final layers in BF16 (about 15% of a 12B model), which "
     "a 2-layer model cannot mirror. The head, router gate, norms and attention core are FP32 as in every row.",
     "Stochastic rounding on the gradient dy only (Dgrad's and Wgrad's A operand, §4.3); activations and weights "
     "round to nearest. Random bits: 8 per element (cvt.rs.satfinite.e2m1x4), from numpy's PCG64 seeded with "
     "(run seed, crc32 of the layer's name), drawn afresh each backward, so a run is a function of its seed.",
     "The RHT (TransformerEngine's fixed 16-entry sign vector, fp8lab.rht16) on both Wgrad operands along tokens; "
     "tokens are zero-padded to a multiple of 16 (MoE experts see ragged counts), which leaves dy^T x unchanged.",
     "16x16 weight blocks: Dgrad quantises W^T afresh, which gives the Fprop's blocks, scales and bits (a block's "
     "amax and the tensor amax do not depend on orientation). x for Wgrad is quantised from its FP32 values "
     "(1x16 along tokens after the RHT), as TE's columnwise copy.",
     ] + _BLACKWELL_CHOICES[:2] + ["Scales: per-16 E4M3 block scales inside tcgen05 kind::mxf4nvf4, the tensor "
     "scales in the GEMM's epilogue (GEMM row nvfp4_te)."]))

_BY_NAME = {r["name"]: r for r in _ROWS}
PASSES = ("fprop", "dgrad", "wgrad")
#: Steps a pass may add before quantising, beside its GEMM row (NVIDIA's NVFP4 recipe):
#: ``"rht16": True`` multiplies both operands along K by fp8lab.rht16 (K zero-padded to a multiple of 16,
#: which leaves A B^T unchanged: the transform is orthogonal); ``"stochastic_rounding": ["a"]`` rounds the
#: named operands' elements stochastically (fp8lab.quantize's rbits), with random bits drawn from the
#: layer's seeded generator (Fp8Linear.seed_rounding).
PASS_STEPS = ("rht16", "stochastic_rounding")


def recipes() -> list[str]:
    """The names of the built-in training recipes."""
    return [r["name"] for r in _ROWS]


def recipe(name) -> dict:
    """A deep copy of the named row (or, given a dict, the dict validated and copied)."""
    if isinstance(name, dict):
        return validate(copy.deepcopy(name))
    if not isinstance(name, str):
        raise TypeError(f"recipe: expected a recipe name or a recipe dict, got {type(name).__name__}")
    if name not in _BY_NAME:
        raise ValueError(f"recipe: unknown recipe {name!r}; known recipes: {', '.join(recipes())}")
    return copy.deepcopy(_BY_NAME[name])


_OPERAND_FMTS_UNSCALED = ("bf16", "fp32")


def resolve_pass(spec: dict, where: str = "pass") -> dict:
    """A pass as ``{"a", "b", "gemm"}``: a named GEMM recipe row (with its edits) looked up in the
    emulator's table, or the explicit form as given. ``gemm_recipe`` records the row's name."""
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: expected a dict ({{'gemm_recipe': name}} or 'a', 'b', 'gemm'), got {spec!r}")
    if "gemm_recipe" not in spec:
        return spec
    import fp8lab

    try:
        r = fp8lab.recipe(spec["gemm_recipe"])
    except (ValueError, TypeError) as err:
        raise type(err)(f"{where}.gemm_recipe: {err}") from None
    out = {"a": _operand_spec(r["a"]), "b": _operand_spec(r["b"]), "gemm": dict(r["gemm"]), "gemm_recipe": r["name"]}
    return dict(out, **{k: spec[k] for k in PASS_STEPS if k in spec})


def resolve(row: dict) -> dict:
    """The row's passes, each as ``{"a", "b", "gemm"}`` (``{}`` for the ``torch`` kind)."""
    if row["kind"] != "emulated":
        return {}
    return {p: resolve_pass(row["passes"][p], f"recipe {row['name']!r}: passes.{p}") for p in PASSES}


def _check_operand(where, op):
    if not isinstance(op, dict) or "fmt" not in op:
        raise ValueError(f"{where}: expected a dict with 'fmt' (and 'tile', 'rule' for scaled formats), got {op!r}")
    if op["fmt"] in _OPERAND_FMTS_UNSCALED:
        return
    for key in ("tile", "rule"):
        if key not in op:
            raise ValueError(f"{where}: scaled format {op['fmt']!r} needs {key!r}")
    t = op["tile"]
    if (not isinstance(t, (list, tuple)) or len(t) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in t)):
        raise ValueError(f"{where}.tile: expected [rows, cols] of ints >= 0 (0 = whole dimension), got {t!r}")


def _check_steps(where, spec):
    if not isinstance(spec.get("rht16", False), bool):
        raise ValueError(f"{where}.rht16: expected True or False, got {spec['rht16']!r}")
    sr = spec.get("stochastic_rounding", [])
    if not isinstance(sr, (list, tuple)) or not set(sr) <= {"a", "b"} or len(set(sr)) != len(sr):
        raise ValueError(f"{where}.stochastic_rounding: expected a list of operands 'a' / 'b', got {sr!r}")
    for side in sr:
        if spec[side]["fmt"] in _OPERAND_FMTS_UNSCALED:
            raise ValueError(f"{where}.stochastic_rounding: operand {side!r} is {spec[side]['fmt']}, not a scaled format")


def validate(row: dict) -> dict:
    """Check a recipe row's structure (the shapes it can tile are checked per layer by Fp8Linear)."""
    if not isinstance(row, dict):
        raise TypeError(f"recipe: expected a dict, got {type(row).__name__}")
    for key in ("name", "kind", "passes"):
        if key not in row:
            raise ValueError(f"recipe: missing key {key!r} (see fp8lab.torch.recipe('deepseek_fp8') for a full row)")
    if row["kind"] not in ("torch", "emulated"):
        raise ValueError(f"recipe {row['name']!r}: kind must be 'torch' or 'emulated', got {row['kind']!r}")
    row.setdefault("cache", {"from": "input"})
    row.setdefault("optimizer", dict(_OPT_FP8))
    if row["kind"] == "emulated":
        for p in PASSES:
            spec = row["passes"].get(p) if isinstance(row["passes"], dict) else None
            if not isinstance(spec, dict):
                raise ValueError(f"recipe {row['name']!r}: passes.{p} must be a dict: {{'gemm_recipe': name}} or "
                                 "'a', 'b', 'gemm'")
            spec = resolve_pass(spec, f"recipe {row['name']!r}: passes.{p}")
            _check_operand(f"recipe {row['name']!r}: passes.{p}.a", spec.get("a"))
            _check_operand(f"recipe {row['name']!r}: passes.{p}.b", spec.get("b"))
            if not isinstance(spec.get("gemm"), dict):
                raise ValueError(f"recipe {row['name']!r}: passes.{p}.gemm must be a dict of fp8lab.gemm keywords")
            _check_steps(f"recipe {row['name']!r}: passes.{p}", spec)
    for key in ("cache", "cache_attn_out"):
        c = row.get(key)
        if c is None:
            continue
        if c.get("from") not in ("input", "cached"):
            raise ValueError(f"recipe {row['name']!r}: {key}.from must be 'input' or 'cached', got {c.get('from')!r}")
        if c["from"] == "cached":
            _check_operand(f"recipe {row['name']!r}: {key}", c)
    moments = row["optimizer"].get("adam_moments", "fp32")
    if moments not in ("fp32", "bf16"):
        raise ValueError(f"recipe {row['name']!r}: optimizer.adam_moments must be 'fp32' or 'bf16', got {moments!r}")
    return row


__all__ = ["PASSES", "PASS_STEPS", "recipe", "recipes", "resolve", "resolve_pass", "validate"]
