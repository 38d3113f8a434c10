"""Section 5: hardware traces — which emulator spec reproduces each recorded GPU kernel, bit for bit.

Traces are safetensors files recorded on a GPU (fp8lab golden) under fixtures/hardware/. Without
traces there is nothing to compare, and the section says so rather than implying agreement."""
from __future__ import annotations

import os
from pathlib import Path

from ..golden import check
from .context import Context
from .section import Section


def hardware_dir() -> Path:
    env = os.environ.get("FP8LAB_HARDWARE_TRACES")
    if env:
        return Path(env)
    # `make report` runs from the repository root with the package installed into .venv, so look in
    # the working directory first, then next to a source checkout (<repo>/bindings/python/fp8lab/report).
    candidates = [Path.cwd() / "fixtures" / "hardware", Path(__file__).resolve().parents[4] / "fixtures" / "hardware"]
    return next((c for c in candidates if c.is_dir()), candidates[0])


def run(ctx: Context) -> Section:
    sec = Section("hardware", 5, "Hardware: which emulator spec reproduces each GPU kernel")
    ctx.progress.stage("hardware", 1)
    d = hardware_dir()
    traces = sorted(p.name for p in d.glob("*.safetensors")) if d.is_dir() else []
    sec.data = {"directory": "fixtures/hardware" if d.name == "hardware" else str(d), "traces": traces,
                "checked": []}
    if not traces:
        sec.status = "unavailable"
        sec.conclusion = ("No GPU traces were recorded for this build (fixtures/hardware/ holds none), "
                          "so this report makes no claim that any emulator spec reproduces real GPU bits.")
        sec.para("The emulator's tensor-core models are validated elsewhere against published measured "
                 "single-instruction samples (tests/cpp/test_accum_replay.cpp); whole-kernel agreement needs traces "
                 "recorded on a GPU (`fp8lab golden record` on a machine with a device). None exist here: "
                 "this build was made on a machine without a GPU. Set FP8LAB_HARDWARE_TRACES to a folder "
                 "of traces to fill this section.")
        ctx.progress.finish()
        return sec
    # Traces exist: check each with fp8lab.golden.check.
    rows, identical = [], 0
    for t in traces:
        try:
            v = check(str(d / t))
            kind, summary = str(v.kind), str(v.summary)
        except Exception as err:  # a broken trace is reported, not fatal to the report
            kind, summary = "error", f"{type(err).__name__}: {err}"
        sec.data["checked"].append({"trace": t, "verdict": kind, "summary": summary})
        identical += kind == "bit-identical"
        rows.append([t, kind, summary])
    sec.conclusion = (f"{identical} of {len(traces)} recorded GPU trace(s) are reproduced bit for bit by "
                      "the emulator spec stored with them.")
    sec.table("Emulator vs recorded GPU output (golden check)", ["trace", "verdict", "summary"], rows)
    ctx.progress.finish()
    return sec
