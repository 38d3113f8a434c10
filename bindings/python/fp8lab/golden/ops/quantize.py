"""Operation "quantize": fp8lab.quantize, a float32 matrix to block-quantised bits and scales."""
from __future__ import annotations

import dataclasses

import numpy as np

from ... import _core
from ...scale_check import check_scales
from ...formats import format_info, num_threads, set_num_threads
from ..trace import FORMAT_OF_DTYPE, TraceTensor, dtype_for_format
from ..outputs import as_host_array
from ..verdict import Verdict
from .base import Operation, pair_outputs


class QuantizeOp(Operation):
    """fp8lab.quantize (emulator/quant): a float32 matrix to block-quantised element bits plus one
    scale per tile under a named scale rule (DeepSeek, DeepGEMM, TransformerEngine, FlashMLA,
    vLLM, MX, ...). Outputs ``q`` (element bits) and ``scales`` (float32 multipliers, or UE8M0
    bytes for rules that store them) are pinned; intermediate ``scale_values`` are the float32
    multipliers of every tile."""

    name = "quantize"
    kinds = ("random", "zero_block", "extreme", "subnormal", "outlier", "ragged", "nan")
    oracle_label = "emulator on 1 thread vs N (determinism)"

    def default_spec(self) -> dict:
        a = _core.gemm_recipe(_core.default_gemm_recipe)["a"]  # the activations' quantiser
        return {"rule": a["rule"], "tile": a["tile"], "fmt": a["format"]}

    def normalize_spec(self, spec) -> dict:
        full = super().normalize_spec(spec)
        t = full["tile"]
        if not (isinstance(t, (list, tuple)) and len(t) == 2 and all(isinstance(v, int) and v >= 0 for v in t)):
            raise ValueError(f"spec: tile must be [rows, cols] of non-negative ints (0 = whole dimension), got {t!r}")
        full["tile"] = [int(t[0]), int(t[1])]
        _core.scale_rule(full["rule"])  # raises, naming the rule, when it is unknown
        format_info(full["fmt"])
        return full

    def fixtures(self):
        out = []
        for rule in _core.scale_rules():
            info = _core.scale_rule(rule)
            tile = [1, 32] if info.get("tile_elements") == 32 else [1, 128]
            fmt = "e4m3"
            if info["storage"] == "e4m3":  # NVFP4: 1x16 blocks of E2M1 under E4M3 block scales
                tile, fmt = [1, 16], "e2m1"
            elif info.get("cast_rounding") == "nearest_ties_to_zero":  # DeepGEMM's FP4 quantiser
                fmt = "e2m1"
            out.append((f"quantize_{rule}_{tile[0]}x{tile[1]}", {"rule": rule, "tile": tile, "fmt": fmt}, 31, "mixed"))
        out.append(("quantize_deepseek_128x128", {"rule": "deepseek", "tile": [128, 128], "fmt": "e4m3"}, 32, "mixed"))
        return out

    def generate(self, spec, rng, kind):
        if kind == "mixed":
            rows, cols = 6, 300  # a ragged last 1x128 tile
        elif kind == "ragged":
            rows, cols = int(rng.choice([0, 1, 3, 129])), int(rng.choice([0, 1, 31, 127, 129, 200]))
        else:
            rows, cols = int(rng.integers(1, 6)), int(rng.choice([32, 128, 256, int(rng.integers(1, 300))]))
        x = rng.standard_normal((rows, cols)) * np.ldexp(1.0, rng.integers(-6, 7, (rows, 1)))
        tc = spec["tile"][1] or max(cols, 1)
        if kind in ("zero_block", "mixed") and rows and cols:
            x[0, :min(tc, cols)] = 0  # an all-zero tile: the amax floor decides (the old NaN-scale bug)
        if kind in ("extreme", "mixed") and rows > 1:
            x[1] *= 2.0 ** 100  # amax near float32's top: scale overflow paths
            if rows > 2:
                x[2] *= 2.0 ** -120  # tiny: scales near float32's subnormals
        if kind == "subnormal":
            x *= 2.0 ** -130
        if kind in ("outlier", "mixed") and rows > 3 and cols:
            x[3, int(rng.integers(0, cols))] = 1e30
        if kind in ("nan", "mixed") and rows > 4 and cols:
            x[4, int(rng.integers(0, cols))] = np.nan  # how NaN enters amax differs between rules
        with np.errstate(over="ignore"):
            return {"x": x.astype(np.float32)}

    def input_tensors(self, spec, inputs):
        return {"x": TraceTensor("input", "F32", np.asarray(inputs["x"], dtype=np.float32))}

    def run(self, spec, inputs):
        x = np.ascontiguousarray(inputs["x"], dtype=np.float32)
        q = _core.quantize(x, tuple(spec["tile"]), spec["fmt"], spec["rule"])
        scales = np.asarray(q.scales)
        out = {"q": TraceTensor("output", dtype_for_format(spec["fmt"]), np.asarray(q.bits)),
               "scales": TraceTensor("output", "U8" if scales.dtype == np.uint8 else "F32", scales),
               "scale_values": TraceTensor("intermediate", "F32", np.asarray(q.scale_values, dtype=np.float32))}
        if _core.scale_rule(spec["rule"])["storage"] == "e4m3":  # two-level (NVFP4): the tensor's S_dec
            out["global_scale"] = TraceTensor("intermediate", "F32", np.array([q.global_scale], dtype=np.float32))
        return out

    def value_format(self, spec, name, dtype):
        if name == "q":
            return spec["fmt"]
        return None if dtype == "U8" else FORMAT_OF_DTYPE.get(dtype)

    def call(self, fn, spec, inputs):
        return pair_outputs(fn(inputs["x"], spec), ("q", "scales"))

    def compare(self, spec, inputs, expected, got, what):
        """The scale contract first (fp8lab.check_scales: layout, powers of two, padding, data cast
        with the stored scale), before any element is compared."""
        if "q" in got and "scales" in got:
            try:
                findings = check_scales(inputs["x"], as_host_array(got["q"]), as_host_array(got["scales"]),
                                        spec["rule"], spec["tile"], spec["fmt"])
            except (ValueError, TypeError):
                findings = []  # shapes the contract cannot read: the comparison below names them
            if findings:
                return Verdict("violation", f"{what}: violation: scale contract: " + "; ".join(map(str, findings)),
                               {"scale_findings": [dataclasses.asdict(f) for f in findings]})
        return super().compare(spec, inputs, expected, got, what)

    def kernel_outputs(self, spec, got):
        q, s = np.asarray(got["q"]), np.asarray(got["scales"])
        return {"q": TraceTensor("output", dtype_for_format(spec["fmt"]), q),
                "scales": TraceTensor("output", "U8" if s.dtype == np.uint8 else "F32", s)}

    def shrink(self, spec, inputs):
        x = inputs["x"]
        rows, cols = x.shape
        tr = spec["tile"][0] or max(rows, 1)
        tc = spec["tile"][1] or max(cols, 1)
        for r in range(0, min(rows, 8 * tr), tr):  # one tile row
            if rows > tr:
                yield {"x": x[r:r + tr]}
        for c in range(0, min(cols, 8 * tc), tc):  # one tile column block
            if cols > tc:
                yield {"x": x[:, c:c + tc]}

    def oracle(self, x, spec):
        """Generated cases without a kernel check determinism: the quantiser on one thread (the
        rules are checked against the published sources in tests/python/test_quant_rules.py)."""
        before = num_threads()
        set_num_threads(1)
        try:
            out = self.run(spec, {"x": x})
        finally:
            set_num_threads(before)
        return out["q"].array, out["scales"].array

