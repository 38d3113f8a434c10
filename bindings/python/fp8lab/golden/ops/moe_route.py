"""Operation "moe_route": the MoE router (top-k expert ids and gate weights per token)."""
from __future__ import annotations

import ctypes

import numpy as np

from ... import _core
from ...formats import num_threads, set_num_threads
from ..trace import TraceTensor
from .base import Operation, c_ptr, output_tensors, pair_outputs, spec_as_dict


class MoeRouteOp(Operation):
    """fp8lab's MoE router (emulator/moe, ``_core.moe_route``): top-k expert ids and gate weights per
    token from the gate logits and the aux-loss-free bias. Spec: the router spec dict (a recipe
    name in ``base`` plus overrides; normalised by RouterSpec's schema). Outputs ``ids`` (int32) and
    ``weights`` (float32) are pinned; intermediate ``scores`` are the gate scores."""

    name = "moe_route"
    kinds = ("random", "ties", "negative_bias", "extreme", "ragged")
    oracle_label = "emulator on 1 thread vs N (determinism)"

    def default_spec(self) -> dict:
        return dict(_core.moe_spec({"base": "deepseek_v3", "experts": 32, "topk": 4, "groups": 4,
                                    "topk_groups": 2}))

    def normalize_spec(self, spec) -> dict:
        if spec is None:
            return self.default_spec()
        spec = spec_as_dict(spec)
        if "base" not in spec and "name" not in spec:
            spec = {**self.default_spec(), **spec}
        return dict(_core.moe_spec(spec))

    def fixtures(self):
        small = {"experts": 32, "topk": 4, "groups": 4, "topk_groups": 2}
        return [("moe_route_deepseek_v3_small", {"base": "deepseek_v3", **small}, 21, "mixed"),
                ("moe_route_deepseek_v3", {"base": "deepseek_v3"}, 22, "mixed"),
                ("moe_route_deepseek_v3_2025_02", {"base": "deepseek_v3_2025_02"}, 22, "mixed"),
                ("moe_route_deepseek_v3_hf_small", {"base": "deepseek_v3_hf", **small}, 23, "mixed")]

    def generate(self, spec, rng, kind):
        e = int(spec["experts"])
        if kind == "mixed":
            parts = [self.generate(spec, rng, k) for k in ("random", "ties", "negative_bias", "extreme")]
            return {"logits": np.concatenate([p["logits"] for p in parts]), "bias": parts[0]["bias"]}
        t = int(rng.choice([0, 1, 3])) if kind == "ragged" else int(rng.integers(1, 9))
        logits = rng.standard_normal((t, e)) * 2
        bias = rng.standard_normal(e) * 0.05
        if kind == "ties":
            logits = np.round(logits)  # few distinct values: exact ties between experts and groups
            bias = np.zeros(e)
        elif kind == "negative_bias":
            bias = -2.0 - np.abs(bias) * 10  # every biased score negative: masked groups must be -inf, not 0
        elif kind == "extreme":
            logits = rng.choice([-40.0, 40.0], (t, e))  # sigmoid saturates to exactly 0 or 1: ties again
        return {"logits": logits.astype(np.float32), "bias": bias.astype(np.float32)}

    def input_tensors(self, spec, inputs):
        return {"logits": TraceTensor("input", "F32", np.asarray(inputs["logits"], dtype=np.float32)),
                "bias": TraceTensor("input", "F32", np.asarray(inputs["bias"], dtype=np.float32))}

    def run(self, spec, inputs):
        logits = np.ascontiguousarray(inputs["logits"], dtype=np.float32)
        bias = np.ascontiguousarray(inputs["bias"], dtype=np.float32)
        ids, weights = _core.moe_route(logits, bias, spec)
        scores = _core.moe_gate_scores(logits, spec)
        return {"ids": TraceTensor("output", "I32", np.asarray(ids, dtype=np.int32)),
                "weights": TraceTensor("output", "F32", np.asarray(weights, dtype=np.float32)),
                "scores": TraceTensor("intermediate", "F32", np.asarray(scores, dtype=np.float32))}

    def call(self, fn, spec, inputs):
        return pair_outputs(fn(inputs["logits"], inputs["bias"], spec), ("ids", "weights"))

    def call_c(self, f, spec, spec_json, inputs, error):
        # fp8lab_moe_route_fn(logits, bias, tokens, experts, spec_json, ids, weights, error, error_len)
        logits = np.ascontiguousarray(inputs["logits"], dtype=np.float32)
        bias = np.ascontiguousarray(inputs["bias"], dtype=np.float32)
        (t, e), k = logits.shape, int(spec["topk"])
        ids = np.zeros((t, k), dtype=np.int32)
        weights = np.zeros((t, k), dtype=np.float32)
        size = ctypes.c_size_t
        rc = f(c_ptr(logits), c_ptr(bias), size(t), size(e), spec_json, c_ptr(ids), c_ptr(weights), error,
               size(len(error)))
        return rc, {"ids": ids, "weights": weights}

    def kernel_outputs(self, spec, got):
        return output_tensors(got, {"ids": "I32", "weights": "F32"})

    def shrink(self, spec, inputs):
        logits = inputs["logits"]
        t = logits.shape[0]
        if t > 1:
            for i in range(min(t, 16)):
                yield {"logits": logits[i:i + 1], "bias": inputs["bias"]}
            yield {"logits": logits[: t // 2], "bias": inputs["bias"]}

    def oracle(self, logits, bias, spec):
        """No second router formulation lives here (emulator/moe is tested against a naive
        one): generated cases check determinism instead — the emulator on one thread."""
        before = num_threads()
        set_num_threads(1)
        try:
            out = self.run(spec, {"logits": logits, "bias": bias})
        finally:
            set_num_threads(before)
        return out["ids"].array, out["weights"].array

