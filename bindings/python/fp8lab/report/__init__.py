"""``fp8lab report``: what each of DeepSeek-V3's cheap-training tricks costs in accuracy, measured.

``run(out_dir, mode, seed)`` computes every section, then writes ``results.json`` (every number on
the page; the same seed gives the same file, byte for byte), ``report.md``, ``index.html``
(self-contained) and the figures as PNG files. A section that has nothing to measure here (the
training lab without torch, the hardware check without recorded GPU traces) says so on the page
instead of showing numbers.
"""
from __future__ import annotations

import importlib
import json
import traceback
from pathlib import Path

from .context import MODES, Context
from .progress import Progress
from .section import Section

# (module, section id) in page order.
SECTIONS = [
    ("sec_formats", "formats", "Number formats: the price of one rounding"),
    ("sec_accumulation", "accumulation", "Accumulation precision: tensor-core truncation and promotion"),
    ("sec_granularity", "granularity", "Quantisation granularity and element format"),
    ("sec_scales", "scales", "Scale conventions: FP32 vs power-of-two scales, and the recipes' bits"),
    ("sec_microscaling", "microscaling", "Blackwell and microscaling: what the new recipes cost"),
    ("sec_routing", "routing", "Routing: gate precision, ties and the balancing bias"),
    ("sec_hardware", "hardware", "Hardware: which emulator spec reproduces each GPU kernel"),
    ("sec_mla", "mla", "Serving: the MLA latent cache and its FP8 form"),
    ("sec_indexer", "indexer", "Sparse attention: the FP8 lightning indexer's top-2048"),
    ("sec_training", "training", "Training: the loss cost of each recipe"),
    ("sec_audit", "audit", "Compiled kernels: numerics contracts read from PTX and SASS"),
    ("sec_costs", "costs", "Savings: the cost model, from first principles and datasheets"),
]
SECTION_IDS = [sid for _, sid, _ in SECTIONS]

TITLE = "fp8lab report: what DeepSeek-V3's cheap-training tricks save and what they cost"
INTRO = ("What each trick saves comes from a stated cost model (first principles and datasheet figures, every "
         "one with its formula and source in `results.json`); what it costs was measured by the fp8lab CPU "
         "emulator in this run, from seeded random inputs, against exact references, and the headline figures "
         "over several seeds. Nothing is copied from the paper except the claims shown next to our numbers. "
         "Relative errors are against the mathematically exact result of the same inputs unless a section says "
         "otherwise, and are written as percentages throughout.")


def _section_error(number: int, sid: str, title: str, err: BaseException) -> Section:
    sec = Section(sid, number, title)
    sec.status = "unavailable"
    sec.conclusion = f"This section failed in this build ({type(err).__name__}: {err}); it reports no numbers."
    sec.para("The error, for the maintainers: " + "".join(traceback.format_exception_only(type(err), err)).strip())
    sec.data = {"error": f"{type(err).__name__}: {err}"}
    return sec


def training_headline(sections: dict) -> dict | None:
    """The training lab's headline numbers, when its section ran and exposes them (else None: the
    summary then says plainly that the loss cost was not measured)."""
    sec = sections.get("training")
    if not sec or sec.get("status") == "unavailable":
        return None
    try:
        mod = importlib.import_module(".sec_training", __name__)
    except ImportError:
        return None
    fn = getattr(mod, "headline", None)
    h = fn(sec) if callable(fn) else None
    return h if isinstance(h, dict) and h.get("available", True) and h.get("rel_loss_error_vs_bf16") is not None \
        else None


def compute(ctx: Context, sections: list[str] | None = None) -> tuple[dict, dict[str, bytes], list[str]]:
    """All sections' results (JSON-ready), their figures, and the ids of sections that failed."""
    from . import cost_model, headlines, summary

    chosen = SECTION_IDS if sections is None else list(sections)
    unknown = [s for s in chosen if s not in SECTION_IDS]
    if unknown:
        raise ValueError(f"sections: unknown {unknown}; expected a subset of {SECTION_IDS}")
    from .. import __version__

    out, figures, failed = [], {}, []
    for number, (mod, sid, title) in enumerate(m for m in SECTIONS if m[1] in chosen):
        try:
            sec = importlib.import_module(f".{mod}", __name__).run(ctx)
        except Exception as err:  # one broken area must not take the whole page down; it is flagged
            ctx.progress.finish()
            traceback.print_exc()
            sec = _section_error(number, sid, title, err)
            failed.append(sid)
        sec.number = number  # page order, whatever the section module says
        figures.update(sec.figures)
        out.append(sec.to_json())
    by_id = {s["id"]: s for s in out}
    heads = headlines.run(ctx, {sid: s for sid, s in by_id.items() if sid not in failed})
    for name, meas in heads["measurements"].items():
        if meas["status"] == "ok":
            by_id[name]["blocks"].append(summary.spread_table(name, meas, heads["replicates"]))
            by_id[name]["conclusion"] += summary.conclusion_spread(name, meas)
    cm = cost_model.build().figures
    training = training_headline(by_id)
    results = {"meta": {"title": TITLE, "intro": INTRO, "version": __version__, "mode": ctx.mode,
                        "seed": ctx.seed, "sections": [s["id"] for s in out]},
               "summary": {"question": summary.seed_paragraph(cm, heads, training),
                           "columns": summary.COLUMNS, "rows": summary.rows(cm, heads, by_id, training),
                           "noisy": summary.noisy(heads), "size_note": summary.size_note(ctx.mode),
                           "training": training},
               "cost_model": cost_model.build().to_json(),
               "headlines": heads,
               "sections": out}
    return results, figures, failed


def dumps(results: dict) -> str:
    # allow_nan=False: a NaN in the results is a defect to surface, not to write as invalid JSON.
    return json.dumps(results, indent=1, sort_keys=True, allow_nan=False) + "\n"


def write(out_dir, results: dict, figures: dict[str, bytes]) -> Path:
    from . import html_writer, markdown_writer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, png in figures.items():
        (out / name).write_bytes(png)
    (out / "results.json").write_text(dumps(results), encoding="utf-8")
    (out / "report.md").write_text(markdown_writer.render(results), encoding="utf-8")
    (out / "index.html").write_text(html_writer.render(results, figures), encoding="utf-8")
    return out / "index.html"


def run(out_dir="report", mode: str = "default", seed: int = 0, sections: list[str] | None = None,
        progress: bool = True, executor=None, workers: int | None = None) -> dict:
    """Compute and write the report; returns {"results", "index", "failed", "timings"}.

    executor: where the heavy stages' independent cells run (``Context.map``): None (in order, in
    this process), or anything ``fp8lab.sweep`` accepts — "pool" (``workers`` processes), "dask:local",
    "tcp://HOST:PORT", a distributed.Client. The numbers are the same bits either way."""
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ValueError(f"out: {str(out_dir)!r} exists and is not a folder")  # say so before minutes of work
    ex, owned = None, False
    if executor is not None:
        from ..sweep.executors import make_executor

        ex, owned = make_executor(executor, workers)
    ctx = Context(mode=mode, seed=seed, progress=Progress(enabled=progress), executor=ex)
    try:
        results, figures, failed = compute(ctx, sections)
    finally:
        if owned:
            ex.close()
    index = write(out_dir, results, figures)
    return {"results": results, "index": index, "failed": failed, "timings": dict(ctx.progress.timings)}


__all__ = ["MODES", "SECTION_IDS", "compute", "dumps", "run", "write"]
