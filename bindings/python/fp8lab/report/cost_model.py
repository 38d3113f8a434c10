"""The savings half of the report: what each DeepSeek-V3 trick saves, from first principles and
published figures. Nothing here is measured; every figure is either an input with its source or
a formula over earlier figures, and results.json carries both (value, unit, formula, inputs,
source) so a reader can recompute any of them.

The formula string *is* the computation: ``derive`` evaluates it over the figures it names, so
the text on the page cannot drift from the number next to it.
"""
from __future__ import annotations

import ast
import math

# Where each input comes from. Datasheet peaks for Hopper are quoted "with sparsity"; the dense
# peak a GEMM can reach is half of it (the datasheets' own footnote).
SOURCES = {
    "v3_config": "DeepSeek-V3 model config (deepseek-ai/DeepSeek-V3 inference/configs/config_671B.json; "
                 "HF config.json) and the technical report arXiv 2412.19437 §4.2",
    "v3_report": "DeepSeek-V3 technical report, arXiv 2412.19437",
    "v3_fp8": "DeepSeek-V3 technical report arXiv 2412.19437 §3.3.2-§3.3.3 (FP8 training: 1x128 / 128x128 "
              "tiles, FP32 scales, N_C = 128, FP8 activation cache, BF16 AdamW moments, FP32 master weights "
              "and gradients)",
    "v3_cost": "DeepSeek-V3 technical report arXiv 2412.19437 Table 1 (2664K H800 GPU hours of pre-training "
               "on 14.8T tokens)",
    "v3_mtp": "DeepSeek-V3 technical report arXiv 2412.19437 §2.2 (MTP, D = 1) and §5.4.3 (second-token "
              "acceptance 85-90%, 1.8x tokens per second)",
    "isca25": "Zhao et al., Insights into DeepSeek-V3: Scaling Challenges and Reflections on Hardware for AI "
              "Architectures, ISCA 2025 (arXiv 2505.09343), Table 1 (KV cache per token) and Table 2 "
              "(training GFLOPs per token, sequence length 4096)",
    "flashmla": "deepseek-ai/FlashMLA FP8 KV cache layout: 512 E4M3 + 4 FP32 scales + 64 BF16 RoPE values "
                "per token (656 B)",
    "deepgemm": "deepseek-ai/DeepGEMM sm90_fp8_gemm_1d2d.cuh: every 128 K the WGMMA partial sum is added "
                "into the FP32 accumulator as final += (sa*sb) * partial, one FFMA per output element "
                "(sa*sb formed once per row)",
    "ocp_mx": "OCP Microscaling Formats (MX) Specification v1.0 §5 (blocks of 32 elements sharing one 8-bit "
              "E8M0 scale)",
    "nvfp4": "NVIDIA, Pretraining Large Language Models with NVFP4, arXiv 2509.25149 §2 (E2M1 elements in "
             "blocks of 16 sharing one E4M3 scale, plus one FP32 scale per tensor)",
    "h100": "NVIDIA H100 Tensor Core GPU datasheet (SXM5): FP8 3,958 and BF16 1,979 TFLOPS with sparsity, "
            "FP32 67 TFLOPS, HBM3 3.35 TB/s",
    "h800": "NVIDIA H800 SXM5 product brief: FP8 3,958 and BF16 1,979 TFLOPS with sparsity, FP32 67 TFLOPS, "
            "HBM3 3.35 TB/s, NVLink 400 GB/s",
    "h200": "NVIDIA H200 Tensor Core GPU datasheet (SXM): FP8 3,958 and BF16 1,979 TFLOPS with sparsity, "
            "FP32 67 TFLOPS, HBM3e 4.8 TB/s",
    "hopper_isa": "PTX ISA, wgmma.mma_async: FP8 (e4m3/e5m2) shapes m64nNk32 (K = 32 per instruction)",
    "mixed_precision": "Micikevicius et al., Mixed Precision Training (ICLR 2018) and Rajbhandari et al., "
                       "ZeRO (SC 2020): FP32 master weights, gradients and Adam moments (4 B each)",
    "assumption": "an assumption of this cost model, stated in the figure's name and formula",
    "derived": "derived: the formula over the figures it names",
}

GPUS = ("H800", "H100", "H200")


class CostModel:
    """An ordered set of figures; each is an input (value + source) or a formula over earlier ones."""

    def __init__(self):
        self.figures: dict[str, dict] = {}
        self.groups: dict[str, list[str]] = {}
        self._group = "inputs"

    def group(self, name: str) -> None:
        self._group = name
        self.groups.setdefault(name, [])

    def given(self, name: str, value, unit: str, source: str, note: str = "") -> float:
        if name in self.figures:
            raise ValueError(f"cost model: figure {name!r} defined twice")
        if source not in SOURCES:
            raise ValueError(f"cost model: figure {name!r} cites unknown source {source!r}")
        self.figures[name] = {"value": value, "unit": unit, "formula": None, "inputs": [], "source": source,
                              "note": note}
        self.groups.setdefault(self._group, []).append(name)
        return value

    def derive(self, name: str, formula: str, unit: str, note: str = "") -> float:
        if name in self.figures:
            raise ValueError(f"cost model: figure {name!r} defined twice")
        names = sorted({n.id for n in ast.walk(ast.parse(formula, mode="eval")) if isinstance(n, ast.Name)}
                       - {"ceil", "max", "min"})
        unknown = [n for n in names if n not in self.figures]
        if unknown:
            raise ValueError(f"cost model: formula of {name!r} names undefined figures {unknown}")
        env = {n: self.figures[n]["value"] for n in names}
        value = eval(formula, {"__builtins__": {}, "ceil": math.ceil, "max": max, "min": min}, env)  # noqa: S307
        self.figures[name] = {"value": value, "unit": unit, "formula": formula, "inputs": names,
                              "source": "derived", "note": note}
        self.groups.setdefault(self._group, []).append(name)
        return value

    def __getitem__(self, name: str):
        return self.figures[name]["value"]

    def to_json(self) -> dict:
        return {"figures": self.figures, "groups": self.groups,
                "sources": {k: v for k, v in SOURCES.items()
                            if any(f["source"] == k for f in self.figures.values())}}


def _config(m: CostModel) -> None:
    m.group("DeepSeek-V3 configuration")
    src = "v3_config"
    for name, v, unit in (("vocab", 129280, "tokens"), ("dim", 7168, "elements"), ("inter_dim", 18432, "elements"),
                          ("moe_inter_dim", 2048, "elements"), ("n_layers", 61, "layers"),
                          ("n_dense_layers", 3, "layers"), ("n_heads", 128, "heads"),
                          ("n_routed_experts", 256, "experts"), ("n_shared_experts", 1, "experts"),
                          ("n_activated_experts", 8, "experts"), ("q_lora_rank", 1536, "elements"),
                          ("kv_lora_rank", 512, "elements"), ("qk_nope_head_dim", 128, "elements"),
                          ("qk_rope_head_dim", 64, "elements"), ("v_head_dim", 128, "elements"),
                          ("mtp_depth", 1, "modules")):
        m.given(name, v, unit, src)
    m.given("paper_total_params", 671e9, "parameters", "v3_report", "abstract: 671B total")
    m.given("paper_active_params", 37e9, "parameters", "v3_report", "abstract: 37B activated per token")


def _moe(m: CostModel) -> None:
    m.group("MoE: parameters and FLOPs per token")
    m.derive("attn_linear_params", "dim*q_lora_rank + q_lora_rank*n_heads*(qk_nope_head_dim + qk_rope_head_dim)"
             " + dim*(kv_lora_rank + qk_rope_head_dim) + kv_lora_rank*n_heads*(qk_nope_head_dim + v_head_dim)"
             " + n_heads*v_head_dim*dim", "parameters per layer", "wq_a, wq_b, wkv_a, wkv_b, wo")
    m.derive("norm_params_per_layer", "2*dim + q_lora_rank + kv_lora_rank", "parameters per layer",
             "attention and FFN RMSNorms, q and kv latent norms")
    m.derive("expert_params", "3*dim*moe_inter_dim", "parameters per expert", "w1, w2, w3 (SwiGLU)")
    m.derive("dense_ffn_params", "3*dim*inter_dim", "parameters per layer")
    m.derive("gate_params", "n_routed_experts*dim + n_routed_experts", "parameters per layer",
             "router weight and its balancing bias")
    m.derive("embed_params", "vocab*dim", "parameters", "input embedding; the output head is the same size")
    m.derive("n_moe_layers", "n_layers - n_dense_layers", "layers")
    m.derive("total_params", "2*embed_params + dim + n_layers*(attn_linear_params + norm_params_per_layer)"
             " + n_dense_layers*dense_ffn_params"
             " + n_moe_layers*((n_routed_experts + n_shared_experts)*expert_params + gate_params)", "parameters",
             "main model, MTP module excluded")
    m.derive("active_params", "2*embed_params + dim + n_layers*(attn_linear_params + norm_params_per_layer)"
             " + n_dense_layers*dense_ffn_params"
             " + n_moe_layers*((n_activated_experts + n_shared_experts)*expert_params + gate_params)",
             "parameters per token")
    m.derive("active_fraction", "active_params / total_params", "fraction")
    # Matmul parameters a token actually multiplies by (the embedding is a lookup, not a GEMM).
    m.derive("active_matmul_params", "active_params - embed_params - dim - n_layers*norm_params_per_layer",
             "parameters per token")
    m.derive("dense_matmul_params", "total_params - embed_params - dim - n_layers*norm_params_per_layer",
             "parameters per token", "a dense model with the same total parameters multiplies by all of them")
    m.given("seq_len", 4096, "tokens", "isca25", "the sequence length of the paper's per-token FLOP table")
    # Causal attention: a token attends to (seq_len + 1) / 2 positions on average; QK^T over the
    # 192-wide keys and PV over the 128-wide values, 2 FLOPs per multiply-add.
    m.derive("attn_core_flops_fwd", "n_layers*2*n_heads*(qk_nope_head_dim + qk_rope_head_dim + v_head_dim)"
             "*(seq_len + 1)/2", "FLOP per token", "causal, MHA form of MLA as training runs it")
    m.derive("train_flops_per_token", "6*active_matmul_params + 3*attn_core_flops_fwd", "FLOP per token",
             "forward 2 FLOPs per weight, backward twice that")
    m.derive("dense_train_flops_per_token", "6*dense_matmul_params + 3*attn_core_flops_fwd", "FLOP per token",
             "the same attention, every FFN weight active")
    m.derive("moe_flops_saving", "dense_train_flops_per_token / train_flops_per_token", "x")
    m.given("paper_train_gflops_per_token", 250, "GFLOP per token", "isca25", "Table 2: DeepSeek-V3 MoE 671B")


def _gpus(m: CostModel) -> None:
    m.group("Hopper peaks (dense = datasheet with-sparsity figure / 2)")
    for g in GPUS:
        src = g.lower()
        m.given(f"{g}_fp8_tflops_sparse", 3958, "TFLOP/s", src)
        m.given(f"{g}_bf16_tflops_sparse", 1979, "TFLOP/s", src)
        m.given(f"{g}_fp32_tflops", 67, "TFLOP/s", src, "CUDA cores, non-tensor")
        m.given(f"{g}_hbm_tbs", 4.8 if g == "H200" else 3.35, "TB/s", src)
        m.derive(f"{g}_fp8_tflops", f"{g}_fp8_tflops_sparse / 2", "TFLOP/s")
        m.derive(f"{g}_bf16_tflops", f"{g}_bf16_tflops_sparse / 2", "TFLOP/s")
        m.derive(f"{g}_fp8_over_bf16_peak", f"{g}_fp8_tflops / {g}_bf16_tflops", "x")
        m.derive(f"{g}_ridge_fp8", f"{g}_fp8_tflops / {g}_hbm_tbs", "FLOP per byte",
                 "arithmetic intensity above which an FP8 GEMM is compute-bound")
        m.derive(f"{g}_ridge_bf16", f"{g}_bf16_tflops / {g}_hbm_tbs", "FLOP per byte")


def _fp8_bytes(m: CostModel) -> None:
    m.group("FP8 vs BF16: bytes moved")
    m.given("scale_bytes_fp32", 4, "bytes per scale", "v3_fp8", "FP32 scales")
    m.given("act_tile", 128, "elements per scale", "v3_fp8", "1x128 activation tiles")
    m.given("weight_tile", 128 * 128, "elements per scale", "v3_fp8", "128x128 weight blocks")
    m.given("elem_bytes_bf16", 2, "bytes per element", "v3_fp8", "BF16 baseline")
    m.given("elem_bytes_fp8", 1, "bytes per element", "v3_fp8", "E4M3")
    m.derive("weight_bytes_per_param_fp8", "elem_bytes_fp8 + scale_bytes_fp32 / weight_tile", "bytes per parameter")
    m.derive("act_bytes_per_elem_fp8", "elem_bytes_fp8 + scale_bytes_fp32 / act_tile", "bytes per element")
    m.derive("weight_bytes_ratio", "weight_bytes_per_param_fp8 / elem_bytes_bf16", "fraction of BF16")
    m.derive("act_bytes_ratio", "act_bytes_per_elem_fp8 / elem_bytes_bf16", "fraction of BF16")
    # Whole checkpoint: every Linear in E4M3 with one FP32 scale per (ragged) 128x128 block; the
    # embedding, output head, router and norms stay BF16 (as the published FP8 checkpoint keeps them).
    blocks = ("ceil(q_lora_rank/128)*ceil(dim/128)"
              " + ceil(n_heads*(qk_nope_head_dim + qk_rope_head_dim)/128)*ceil(q_lora_rank/128)"
              " + ceil((kv_lora_rank + qk_rope_head_dim)/128)*ceil(dim/128)"
              " + ceil(n_heads*(qk_nope_head_dim + v_head_dim)/128)*ceil(kv_lora_rank/128)"
              " + ceil(dim/128)*ceil(n_heads*v_head_dim/128)")
    m.derive("attn_scale_blocks", blocks, "scales per layer", "wq_a, wq_b, wkv_a (576 rows: 5 ragged blocks), "
             "wkv_b, wo")
    m.derive("expert_scale_blocks", "3*ceil(moe_inter_dim/128)*ceil(dim/128)", "scales per expert")
    m.derive("dense_ffn_scale_blocks", "3*ceil(inter_dim/128)*ceil(dim/128)", "scales per layer")
    m.derive("linear_params", "n_layers*attn_linear_params + n_dense_layers*dense_ffn_params"
             " + n_moe_layers*(n_routed_experts + n_shared_experts)*expert_params", "parameters")
    m.derive("scale_blocks", "n_layers*attn_scale_blocks + n_dense_layers*dense_ffn_scale_blocks"
             " + n_moe_layers*(n_routed_experts + n_shared_experts)*expert_scale_blocks", "scales")
    m.derive("weights_bytes_bf16", "elem_bytes_bf16*total_params", "bytes")
    m.derive("weights_bytes_fp8", "elem_bytes_fp8*linear_params + scale_bytes_fp32*scale_blocks"
             " + elem_bytes_bf16*(total_params - linear_params)", "bytes",
             "FP8 Linears with 128x128 FP32 scales; embedding, head, router, norms in BF16")
    m.derive("weights_fp8_over_bf16", "weights_bytes_fp8 / weights_bytes_bf16", "fraction")
    # A roofline for one Linear: the time is the larger of compute and memory traffic.
    for tag, mm, what in (("decode", 64, "a decode batch: 64 tokens routed to one expert"),
                          ("prefill", 4096, "a 4096-token prefill or training micro-batch")):
        m.given(f"gemm_{tag}_M", mm, "tokens", "assumption", what)
        m.derive(f"gemm_{tag}_flops", f"2*gemm_{tag}_M*moe_inter_dim*dim", "FLOP",
                 "one expert's up projection: M x 7168 times 7168 x 2048")
        m.derive(f"gemm_{tag}_bytes_bf16", f"elem_bytes_bf16*(gemm_{tag}_M*dim + moe_inter_dim*dim"
                 f" + gemm_{tag}_M*moe_inter_dim)", "bytes", "A, B in and BF16 C out")
        m.derive(f"gemm_{tag}_bytes_fp8", f"act_bytes_per_elem_fp8*gemm_{tag}_M*dim + weight_bytes_per_param_fp8"
                 f"*moe_inter_dim*dim + elem_bytes_bf16*gemm_{tag}_M*moe_inter_dim", "bytes",
                 "FP8 A and B with their scales, BF16 C out")
        for g in GPUS:
            m.derive(f"{g}_gemm_{tag}_us_bf16", f"max(gemm_{tag}_flops / ({g}_bf16_tflops*1e6),"
                     f" gemm_{tag}_bytes_bf16 / ({g}_hbm_tbs*1e6))", "microseconds", "roofline")
            m.derive(f"{g}_gemm_{tag}_us_fp8", f"max(gemm_{tag}_flops / ({g}_fp8_tflops*1e6),"
                     f" gemm_{tag}_bytes_fp8 / ({g}_hbm_tbs*1e6))", "microseconds", "roofline")
            m.derive(f"{g}_gemm_{tag}_speedup", f"{g}_gemm_{tag}_us_bf16 / {g}_gemm_{tag}_us_fp8", "x")


def _microscaling_bytes(m: CostModel) -> None:
    m.group("Microscaling: bytes per element")
    m.given("mx_block", 32, "elements per scale", "ocp_mx")
    m.given("scale_bytes_8bit", 1, "bytes per scale", "ocp_mx", "E8M0 (MX) and E4M3 (NVFP4) scales are one byte")
    m.given("nvfp4_block", 16, "elements per scale", "nvfp4")
    m.given("elem_bytes_fp4", 0.5, "bytes per element", "nvfp4", "E2M1")
    m.derive("mxfp8_bytes_per_elem", "elem_bytes_fp8 + scale_bytes_8bit / mx_block", "bytes per element")
    m.derive("nvfp4_bytes_per_elem", "elem_bytes_fp4 + scale_bytes_8bit / nvfp4_block", "bytes per element",
             "the per-tensor FP32 scale is negligible")
    m.derive("mxfp8_bytes_ratio", "mxfp8_bytes_per_elem / elem_bytes_bf16", "fraction of BF16")
    m.derive("nvfp4_bytes_ratio", "nvfp4_bytes_per_elem / elem_bytes_bf16", "fraction of BF16")


def _promotion(m: CostModel) -> None:
    m.group("Promotion: the CUDA-core work of fine-grained accumulation")
    m.given("n_c", 128, "elements of K", "v3_fp8", "N_C = 128")
    m.given("wgmma_k", 32, "elements of K per WGMMA", "hopper_isa")
    m.given("ffma_per_promotion", 1, "FFMA per output element", "deepgemm")
    m.derive("wgmma_per_promotion", "n_c / wgmma_k", "WGMMAs", "a warpgroup waits for its WGMMAs (wgmma.wait) "
             "once per this many, then promotes")
    m.derive("tensor_flops_per_promotion", "2*n_c", "FLOP per output element")
    m.derive("cuda_flops_share", "2*ffma_per_promotion / tensor_flops_per_promotion", "fraction",
             "CUDA-core FLOPs over tensor-core FLOPs")
    for g in GPUS:
        # Time of the promotion's FFMAs at the CUDA-core FP32 peak, over the time of the tensor-core
        # FLOPs it follows at the FP8 dense peak: what promotion costs if nothing overlaps it.
        m.derive(f"{g}_promotion_time_share", f"(2*ffma_per_promotion / {g}_fp32_tflops)"
                 f" / (tensor_flops_per_promotion / {g}_fp8_tflops)", "fraction of tensor-core time",
                 "serialised; DeepGEMM hides it by letting one warpgroup promote while another's WGMMAs run")
    m.given("math_warpgroups", 2, "warpgroups per SM", "v3_fp8",
            "§3.3.2: two WGMMAs run concurrently on H800, one warpgroup promotes while the other computes")
    m.derive("promotion_hidden", "1 if H800_promotion_time_share*(math_warpgroups - 1) <= 1 else 0", "1 = yes",
             "can the other warpgroup's WGMMA time cover one promotion")


def _memory(m: CostModel) -> None:
    m.group("Training memory: optimizer states and the activation cache")
    m.given("fp32_bytes", 4, "bytes", "mixed_precision")
    m.given("bf16_state_bytes", 2, "bytes", "v3_fp8", "BF16 AdamW moments")
    m.derive("moments_bytes_fp32", "2*fp32_bytes", "bytes per parameter", "Adam m and v in FP32")
    m.derive("moments_bytes_bf16", "2*bf16_state_bytes", "bytes per parameter", "DeepSeek-V3")
    m.derive("state_bytes_fp32_adam", "fp32_bytes + fp32_bytes + moments_bytes_fp32", "bytes per parameter",
             "FP32 master weight + FP32 gradient + FP32 moments")
    m.derive("state_bytes_deepseek", "fp32_bytes + fp32_bytes + moments_bytes_bf16", "bytes per parameter",
             "FP32 master weight + FP32 gradient + BF16 moments")
    m.derive("moments_saving_total_tb", "(moments_bytes_fp32 - moments_bytes_bf16)*total_params / 1e12", "TB",
             "over the whole model (sharded across the data-parallel ranks)")
    m.derive("act_cache_ratio", "act_bytes_per_elem_fp8 / elem_bytes_bf16", "fraction of BF16",
             "Linear inputs cached for the backward pass in E4M3 with 1x128 FP32 scales")


def _mla(m: CostModel) -> None:
    m.group("MLA: KV-cache bytes per token")
    m.given("gqa_kv_heads", 8, "KV heads", "assumption", "GQA with 8 KV heads at DeepSeek's head dims "
            "(LLaMA-3.1 405B and Qwen-2.5 72B use 8)")
    m.given("paper_kv_bytes_per_token", 70272, "bytes per token", "isca25", "Table 1: 70.272 KB (61 layers)")
    m.derive("kv_mha_bf16", "n_heads*(qk_nope_head_dim + qk_rope_head_dim + v_head_dim)*elem_bytes_bf16",
             "bytes per token and layer", "keys 192 wide, values 128 wide, every head")
    m.derive("kv_gqa_bf16", "gqa_kv_heads*(qk_nope_head_dim + qk_rope_head_dim + v_head_dim)*elem_bytes_bf16",
             "bytes per token and layer")
    m.derive("kv_mla_bf16", "(kv_lora_rank + qk_rope_head_dim)*elem_bytes_bf16", "bytes per token and layer",
             "512-wide latent + 64-wide RoPE key")
    m.derive("kv_mha_fp8", "n_heads*(qk_nope_head_dim + qk_rope_head_dim + v_head_dim)*act_bytes_per_elem_fp8",
             "bytes per token and layer", "E4M3 with one FP32 scale per 128 elements")
    m.derive("kv_gqa_fp8", "gqa_kv_heads*(qk_nope_head_dim + qk_rope_head_dim + v_head_dim)*act_bytes_per_elem_fp8",
             "bytes per token and layer")
    m.given("flashmla_fp8_kv_bytes", 656, "bytes per token and layer", "flashmla")
    m.derive("kv_mla_fp8", "kv_lora_rank*elem_bytes_fp8 + (kv_lora_rank/128)*scale_bytes_fp32"
             " + qk_rope_head_dim*elem_bytes_bf16", "bytes per token and layer", "FlashMLA's layout")
    for k in ("mha_bf16", "gqa_bf16", "mla_bf16", "mha_fp8", "gqa_fp8", "mla_fp8"):
        m.derive(f"kv_{k}_model", f"n_layers*kv_{k}", "bytes per token")
    m.derive("mla_vs_mha", "kv_mha_bf16 / kv_mla_bf16", "x")
    m.derive("mla_vs_gqa", "kv_gqa_bf16 / kv_mla_bf16", "x")
    m.derive("mla_fp8_vs_bf16", "kv_mla_bf16 / kv_mla_fp8", "x")
    m.given("context_128k", 131072, "tokens", "v3_report", "128K context")
    m.derive("kv_128k_gb_mla_bf16", "kv_mla_bf16_model*context_128k / 1e9", "GB per sequence")
    m.derive("kv_128k_gb_mha_bf16", "kv_mha_bf16_model*context_128k / 1e9", "GB per sequence")


def _mtp(m: CostModel) -> None:
    m.group("MTP: one extra prediction depth")
    # One MTP module (§2.2): a projection of [h; emb] (2*dim -> dim), one Transformer block (an MoE
    # layer), two RMSNorms; it shares the embedding and the output head with the main model.
    m.derive("mtp_params", "mtp_depth*(2*dim*dim + attn_linear_params + norm_params_per_layer + 2*dim"
             " + (n_routed_experts + n_shared_experts)*expert_params + gate_params)", "parameters",
             "shared embedding and output head not counted (the HF checkpoint stores copies: its '14B')")
    m.derive("mtp_matmul_params", "mtp_depth*(2*dim*dim + attn_linear_params"
             " + (n_activated_experts + n_shared_experts)*expert_params + gate_params + embed_params)",
             "parameters per token", "projection, block, and the shared output head")
    m.derive("mtp_train_flops_per_token", "6*mtp_matmul_params + 3*attn_core_flops_fwd/n_layers*mtp_depth",
             "FLOP per token")
    m.derive("mtp_train_overhead", "mtp_train_flops_per_token / train_flops_per_token", "fraction")
    m.given("mtp_accept_lo", 0.85, "probability", "v3_mtp")
    m.given("mtp_accept_hi", 0.90, "probability", "v3_mtp")
    m.given("paper_mtp_tps", 1.8, "x", "v3_mtp")
    m.derive("mtp_tokens_per_step_lo", "1 + mtp_accept_lo", "tokens per decode step",
             "upper bound: a verified draft costs one forward of the main model")
    m.derive("mtp_tokens_per_step_hi", "1 + mtp_accept_hi", "tokens per decode step")


def _training_cost(m: CostModel) -> None:
    m.group("What DeepSeek's reported GPU hours imply")
    m.given("pretrain_gpu_hours", 2664e3, "H800 GPU hours", "v3_cost")
    m.given("pretrain_tokens", 14.8e12, "tokens", "v3_cost")
    m.derive("pretrain_flops", "(train_flops_per_token + mtp_train_flops_per_token)*pretrain_tokens", "FLOP")
    m.derive("implied_util_fp8_peak", "pretrain_flops / (pretrain_gpu_hours*3600*H800_fp8_tflops*1e12)",
             "fraction of the FP8 dense peak", "counts only model FLOPs; recomputation and communication excluded")
    m.derive("implied_util_bf16_peak", "pretrain_flops / (pretrain_gpu_hours*3600*H800_bf16_tflops*1e12)",
             "fraction of the BF16 dense peak")


def build() -> CostModel:
    m = CostModel()
    _config(m)
    _moe(m)
    _gpus(m)
    _fp8_bytes(m)
    _microscaling_bytes(m)
    _promotion(m)
    _memory(m)
    _mla(m)
    _mtp(m)
    _training_cost(m)
    return m
