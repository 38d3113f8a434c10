"""Operation "tc_probe": replays tensor-core probe traces recorded on a GPU."""
from __future__ import annotations

import numpy as np

from ...accum import dot
from ..trace import FORMAT_OF_DTYPE, TraceTensor
from .base import Operation, spec_as_dict


class TcProbeOp(Operation):
    """Replays hardware tensor-core probe traces (gpu/hardware_trace.hpp, op "tc_probe"): for each
    case ``<name>``, inputs ``<name>.a`` / ``<name>.b`` (F32, 32 products per instruction, chained)
    and ``<name>.c`` (U32 FP32 bits), output ``<name>.d_wgmma`` (U32), recomputed through the spec's
    ``instruction`` preset with fp8lab.accum's dot. Recorded on a GPU only: no generators."""

    name = "tc_probe"

    def default_spec(self) -> dict:
        return {"instruction": "hopper_fp8"}

    def normalize_spec(self, spec) -> dict:
        spec = dict(spec_as_dict(spec))
        if not isinstance(spec.get("instruction"), str):
            raise ValueError("spec: a tc_probe trace needs an \"instruction\" preset name")
        return spec

    def run(self, spec, inputs):
        out = {}
        for name in inputs:
            if not name.endswith(".c"):
                continue
            base = name[:-2]
            a = np.asarray(inputs[base + ".a"], dtype=np.float32)
            b = np.asarray(inputs[base + ".b"], dtype=np.float32)
            d = np.asarray(inputs[name]).view(np.float32).reshape(())
            for s in range(0, a.size - a.size % 32, 32):  # each wgmma consumes the previous D as C
                d = np.asarray(dot(a[s:s + 32], b[s:s + 32], d, instruction=spec["instruction"]),
                               dtype=np.float32).reshape(())
            out[base + ".d_wgmma"] = TraceTensor("output", "U32", d.reshape(1).view(np.uint32))
        return out

    def value_format(self, spec, name, dtype):
        return "fp32" if name.endswith(".d_wgmma") else FORMAT_OF_DTYPE.get(dtype)

