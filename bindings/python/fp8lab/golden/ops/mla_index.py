"""Operation "mla_index": DeepSeek-V3.2's lightning indexer (fp8lab.mla.index): per query the FP8
logits of every token in its range and the top-k tokens."""
from __future__ import annotations

import numpy as np

from ... import _core
from ...formats import num_threads, set_num_threads
from ..trace import TraceTensor
from ..verdict import Verdict
from .base import Operation, output_tensors, pair_outputs, spec_as_dict

HEAD_DIM = 128


def _bf16(x: np.ndarray) -> np.ndarray:
    """float32 values rounded to BF16 (nearest even), as float32."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32)


class MlaIndexOp(Operation):
    """The lightning indexer (mla area, ``_core.mla_index``; emulator/mla/indexer.hpp). Spec: the
    indexer spec dict (heads, topk, instruction, scale_rule, reduction; normalised through the mla
    area). Inputs q (m, heads, 128), k (n, 128), weights (m, heads) — float32 BF16 values — and the
    token range [starts[i], ends[i]) of each query. Output ``logits`` (float32, -inf outside the
    ranges) is pinned; output ``indices`` (int32, m x topk, -1 padded) is judged as a set: any order,
    any choice among tokens tied at the k-th logit (mla.check_selection). Intermediates: the
    rotated and quantised operands and the folded weights."""

    name = "mla_index"
    kinds = ("random", "ties", "ranges", "extreme")
    oracle_label = "emulator on 1 thread vs N (determinism)"

    def default_spec(self) -> dict:
        return dict(_core.indexer_spec({"heads": 8, "topk": 16}))

    def normalize_spec(self, spec) -> dict:
        if spec is None:
            return self.default_spec()
        spec = spec_as_dict(spec)
        return dict(_core.indexer_spec({**self.default_spec(), **spec}))

    def fixtures(self):
        return [("mla_index_v32_tilelang_small", {"heads": 8, "topk": 16}, 41, "mixed"),
                ("mla_index_deepgemm_sm90_small", {"heads": 8, "topk": 16, "reduction": "deepgemm_sm90"}, 42, "mixed")]

    def generate(self, spec, rng, kind):
        H, topk = int(spec["heads"]), int(spec["topk"])
        if kind == "mixed":
            parts = [self.generate(spec, rng, k) for k in ("ties", "ranges")]
            n = max(p["k"].shape[0] for p in parts)
            k = np.concatenate([parts[0]["k"], parts[1]["k"]])[:n]
            return {"q": np.concatenate([p["q"] for p in parts]), "k": k,
                    "weights": np.concatenate([p["weights"] for p in parts]),
                    "starts": np.concatenate([p["starts"] for p in parts]),
                    "ends": np.concatenate([p["ends"] for p in parts])}
        m = int(rng.integers(1, 3))
        n = int(rng.integers(topk, topk + 24))
        q = rng.standard_normal((m, H, HEAD_DIM))
        k = rng.standard_normal((n, HEAD_DIM))
        w = rng.standard_normal((m, H))
        starts, ends = np.zeros(m, np.int32), np.full(m, n, np.int32)
        if kind == "ties":
            k = k[rng.integers(0, max(2, n // 6), n)]  # repeated keys: exactly equal logits at the boundary
        elif kind == "ranges":
            ends = rng.integers(0, n + 1, m).astype(np.int32)  # some shorter than topk: -1 padding
            ends[0] = max(ends[0], 1)
            starts = (rng.integers(0, 4, m) % (ends + 1)).astype(np.int32)
        elif kind == "extreme":
            q = q * np.ldexp(1.0, rng.integers(-30, 30, (m, H, 1)))  # act_quant's amax floor (1e-4) and large scales
            k = k * np.ldexp(1.0, rng.integers(-30, 30, (n, 1)))
        return {"q": _bf16(q), "k": _bf16(k), "weights": _bf16(w), "starts": starts, "ends": ends}

    def input_tensors(self, spec, inputs):
        f32 = lambda x: TraceTensor("input", "F32", np.ascontiguousarray(x, dtype=np.float32))  # noqa: E731
        i32 = lambda x: TraceTensor("input", "I32", np.ascontiguousarray(x, dtype=np.int32))  # noqa: E731
        return {"q": f32(inputs["q"]), "k": f32(inputs["k"]), "weights": f32(inputs["weights"]),
                "starts": i32(inputs["starts"]), "ends": i32(inputs["ends"])}

    def _emulate(self, spec, inputs) -> dict:
        return dict(_core.mla_index(np.ascontiguousarray(inputs["q"], dtype=np.float32),
                                    np.ascontiguousarray(inputs["k"], dtype=np.float32),
                                    np.ascontiguousarray(inputs["weights"], dtype=np.float32),
                                    np.ascontiguousarray(inputs["starts"], dtype=np.int32),
                                    np.ascontiguousarray(inputs["ends"], dtype=np.int32), spec))

    def run(self, spec, inputs):
        r = self._emulate(spec, inputs)
        out = {"logits": TraceTensor("output", "F32", np.asarray(r["logits"], dtype=np.float32)),
               "indices": TraceTensor("output", "I32", np.asarray(r["indices"], dtype=np.int32))}
        for name in ("q_e4m3", "k_e4m3"):
            out[name] = TraceTensor("intermediate", "F8_E4M3", np.asarray(r[name], dtype=np.uint8))
        for name in ("q_scale", "k_scale", "weights_folded"):
            out[name] = TraceTensor("intermediate", "F32", np.asarray(r[name], dtype=np.float32))
        return out

    def judge(self, spec, inputs, name, expected, got, what):
        if name != "indices":
            return super().judge(spec, inputs, name, expected, got, what)
        label = f"{what} {name}".strip()
        g = np.asarray(got.array if isinstance(got, TraceTensor) else got)
        if g.dtype.kind not in "iu" or g.shape != expected.array.shape:
            return Verdict("violation", f"{label}: violation: expected int32 indices of shape "
                           f"{expected.array.shape}, got {g.dtype} {g.shape}", {"count": int(expected.array.size)})
        logits = self._emulate(spec, inputs)["logits"]
        msg = str(_core.mla_check_selection(np.ascontiguousarray(g, dtype=np.int32), logits,
                                            np.ascontiguousarray(inputs["starts"], dtype=np.int32),
                                            np.ascontiguousarray(inputs["ends"], dtype=np.int32), int(spec["topk"])))
        if msg:
            return Verdict("violation", f"{label}: violation: {msg}", {"count": 1})
        if np.array_equal(g, expected.array):
            return Verdict("bit-identical", f"{label}: bit-identical ({g.size} values)", {"count": 0})
        return Verdict("within-bound", f"{label}: an admissible top-k selection (another order, or another choice "
                       "among tokens tied at the k-th logit)", {"count": 0})

    def call(self, fn, spec, inputs):
        return pair_outputs(fn(inputs["q"], inputs["k"], inputs["weights"], inputs["starts"], inputs["ends"], spec),
                            ("logits", "indices"))

    def kernel_outputs(self, spec, got):
        return output_tensors(got, {"logits": "F32", "indices": "I32"})

    def shrink(self, spec, inputs):
        m = inputs["q"].shape[0]
        for i in range(min(m, 8)):
            yield {"q": inputs["q"][i:i + 1], "k": inputs["k"], "weights": inputs["weights"][i:i + 1],
                   "starts": inputs["starts"][i:i + 1], "ends": inputs["ends"][i:i + 1]}

    def oracle(self, q, k, weights, starts, ends, spec):
        """No second indexer lives here (tests/python/test_mla_index.py checks the emulator bit for
        bit against a numpy re-formulation and MMA-Sim): generated cases check determinism — the
        emulator on one thread."""
        before = num_threads()
        set_num_threads(1)
        try:
            out = self.run(spec, {"q": q, "k": k, "weights": weights, "starts": starts, "ends": ends})
        finally:
            set_num_threads(before)
        return out["logits"].array, out["indices"].array
