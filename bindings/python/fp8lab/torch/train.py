"""The training lab's loop: ``train(recipes, seeds, ...)`` trains the small DeepSeek-shaped model once
per (recipe, seed), measures, and writes ``results.json``, ``loss_curves.png`` and ``summary.md``.

Deterministic: a run is a pure function of (recipe row, model config, train config, data bytes,
seed, fp8lab version, torch version, torch thread count). The same seed gives the same model
initialisation and the same batches for every recipe, so runs of one seed are paired. The emulated
GEMMs are independent of fp8lab's thread count; torch's own CPU kernels (the attention core,
norms, softmax, loss, the ``fp32`` recipe's matmuls, reductions) are run with
``torch.set_num_threads(threads)`` (default 1) and may change their last bits with another thread
count, because they split reductions by thread. The thread count is recorded and is part of the
cache key. ``tokens_per_s`` is the only wall-clock figure, kept out of the key and the loss bits.

Runs are cached by their inputs (``cache_dir``; default ``$FP8LAB_CACHE`` or
``~/.cache/fp8lab/train``): a run is reused only when every input above is identical.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .convert import convert, fp8_linears
from .data import ByteData
from .linear import NonFiniteError
from .model import ModelConfig, Transformer, sized
from .optim import AdamW
from .recipes import PASSES, recipe as _recipe, resolve

CACHE_FORMAT = 1


@dataclasses.dataclass
class TrainConfig:
    steps: int = 300
    batch: int = 4
    seq: int = 64
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup: int = 20
    weight_decay: float = 0.1
    clip: float = 1.0
    eval_every: int = 25
    eval_batches: int = 4
    bias_update: bool = True
    # §2.1.2's bias update speed γ: the paper's 0.001 served 14.8T tokens; runs of a few hundred steps
    # need a faster update to show its effect (choice).
    bias_gamma: float = 1e-2
    gemm_sample_every: int = 50    # per-GEMM error vs exact, sampled every this many steps (0: never)
    blowup: float = 2.0            # divergence: loss above blowup x the first step's loss (or NaN/Inf)
    threads: int = 1

    def validate(self) -> "TrainConfig":
        for f in ("steps", "batch", "seq", "eval_every", "eval_batches", "threads"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"{f}: expected a positive int, got {v!r}")
        for f in ("warmup", "gemm_sample_every"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{f}: expected an int >= 0, got {v!r}")
        for f in ("lr", "clip", "blowup"):
            v = getattr(self, f)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{f}: expected a positive finite number, got {v!r}")
        return self

    def lr_at(self, step: int) -> float:
        """Linear warmup, then cosine decay to min_lr_ratio x lr."""
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        t = (step - self.warmup) / max(1, self.steps - self.warmup)
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def _version() -> str:
    from .. import __version__

    return __version__


def cache_key(row: dict, model_cfg: ModelConfig, tc: TrainConfig, data_sha: str, seed: int) -> str:
    # The resolved passes too: a change to a named GEMM row of the emulator's table changes the key.
    inputs = {"format": CACHE_FORMAT, "recipe": row, "resolved": resolve(row), "model": model_cfg.to_dict(),
              "train": dataclasses.asdict(tc),
              "data": data_sha, "seed": seed, "fp8lab": _version(), "torch": torch.__version__}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def _cache_dir(cache_dir):
    if cache_dir is False:
        return None
    if cache_dir is None:
        cache_dir = os.environ.get("FP8LAB_CACHE") or Path.home() / ".cache" / "fp8lab" / "train"
    return Path(cache_dir)


def _evaluate(model, batches) -> float:
    with torch.no_grad():
        losses = [float(F.cross_entropy(model(x).reshape(-1, model.c.vocab), y.reshape(-1))) for x, y in batches]
    return float(np.mean(losses))


def run_one(row: dict, seed: int, model_cfg: ModelConfig, tc: TrainConfig, data: ByteData, bar=None) -> dict:
    """Train one (recipe, seed); returns the run's record (JSON-ready)."""
    torch.manual_seed(seed)
    model = Transformer(model_cfg)
    convert(model, row)
    layers = fp8_linears(model)
    for layer in layers:
        layer.seed_rounding(seed)  # stochastic rounding's random bits: a function of the run's seed
    emulated = row["kind"] == "emulated"
    opt = AdamW(model.parameters(), weight_decay=tc.weight_decay, moments=row["optimizer"]["adam_moments"])
    rng = np.random.default_rng(seed)
    val = data.val_batches(tc.eval_batches, tc.batch, tc.seq)
    rec = {"recipe": row["name"], "seed": seed, "bias_update": tc.bias_update, "train_loss": [], "grad_norm": [],
           "val": [], "expert_load_max_over_mean": [], "gemm_error": {p: [] for p in PASSES}, "diverged": False,
           "divergence_step": None, "divergence_reason": None}
    moes = model.moe_layers()
    load_totals = [torch.zeros(m.n_experts, dtype=torch.int64) for m in moes]
    first = None
    t0 = time.perf_counter()
    steps_done = 0
    for step in range(tc.steps):
        x, y = data.train_batch(rng, tc.batch, tc.seq)
        sample = emulated and tc.gemm_sample_every > 0 and step % tc.gemm_sample_every == 0
        for layer in layers:
            layer.sample_errors = sample
            layer.gemm_errors = {p: [] for p in PASSES}
        try:
            loss = F.cross_entropy(model(x).reshape(-1, model_cfg.vocab), y.reshape(-1))
            lv = float(loss.detach())
            if not math.isfinite(lv):
                raise NonFiniteError(f"train loss is {lv}")
            loss.backward()
        except NonFiniteError as err:
            rec.update(diverged=True, divergence_step=step, divergence_reason=str(err))
            break
        first = lv if first is None else first
        rec["train_loss"].append(lv)
        if lv > tc.blowup * first:
            rec.update(diverged=True, divergence_step=step,
                       divergence_reason=f"train loss {lv:.4g} > {tc.blowup} x the first step's {first:.4g}")
            break
        gn = float(torch.nn.utils.clip_grad_norm_(model.parameters(), tc.clip))
        rec["grad_norm"].append(gn)
        if not math.isfinite(gn):
            rec.update(diverged=True, divergence_step=step, divergence_reason=f"gradient norm is {gn}")
            break
        opt.step(tc.lr_at(step))
        opt.zero_grad()
        loads = []
        for i, m in enumerate(moes):
            load = m.last_load
            load_totals[i] += load
            loads.append(float(load.max()) / float(load.to(torch.float64).mean()))
            if tc.bias_update:
                m.update_bias(tc.bias_gamma)
        if moes:
            rec["expert_load_max_over_mean"].append(loads)
        if sample:
            for p in PASSES:
                errs = [e for layer in layers for e in layer.gemm_errors[p]]
                rec["gemm_error"][p].append([step, float(np.mean(errs)) if errs else None,
                                             float(np.max(errs)) if errs else None])
            for layer in layers:
                layer.sample_errors = False
                layer._last_x = None
        steps_done += 1
        if (step + 1) % tc.eval_every == 0 or step + 1 == tc.steps:
            vl = _evaluate(model, val)
            rec["val"].append([step + 1, vl])
        if bar is not None:
            bar.update(1)
    elapsed = time.perf_counter() - t0
    if bar is not None and steps_done < tc.steps:
        bar.update(tc.steps - steps_done)
    rec["tokens_per_s"] = steps_done * tc.batch * tc.seq / elapsed if elapsed > 0 else None
    rec["seconds"] = elapsed
    vals = [v for _, v in rec["val"] if math.isfinite(v)]
    rec["final_val"] = rec["val"][-1][1] if rec["val"] and not rec["diverged"] else None
    rec["best_val"] = min(vals) if vals else None
    rec["expert_load_totals"] = [t.tolist() for t in load_totals]
    return rec


def _finite_or_none(v):
    return v if v is not None and math.isfinite(v) else None


def summarise(runs: list[dict]) -> dict:
    """Per recipe: final and best validation loss (mean over seeds); relative loss error vs bf16 and
    vs fp32, paired by seed where both ran that seed; the seed-to-seed spread of bf16 and of fp32
    ((max - min) / mean of final validation loss), and whether each difference exceeds it."""
    by = {}
    for r in runs:
        by.setdefault(run_label(r), []).append(r)

    def spread(name):
        finals = [r["final_val"] for r in by.get(name, []) if r["final_val"] is not None]
        if len(finals) < 2:
            return None
        return (max(finals) - min(finals)) / float(np.mean(finals))

    def rel(name, ref):
        if ref not in by or name not in by:
            return None
        refs = {r["seed"]: r["final_val"] for r in by[ref] if r["final_val"] is not None}
        mine = {r["seed"]: r["final_val"] for r in by[name] if r["final_val"] is not None}
        paired = sorted(set(refs) & set(mine))
        if paired:
            return float(np.mean([(mine[s] - refs[s]) / refs[s] for s in paired]))
        if refs and mine:
            m = float(np.mean(list(refs.values())))
            return (float(np.mean(list(mine.values()))) - m) / m
        return None

    out = {"noise_floor": {"bf16": spread("bf16"), "fp32": spread("fp32")}, "recipes": {}}
    for name, rs in by.items():
        finals = [r["final_val"] for r in rs if r["final_val"] is not None]
        bests = [r["best_val"] for r in rs if r["best_val"] is not None]
        entry = {"seeds": [r["seed"] for r in rs], "final_val": float(np.mean(finals)) if finals else None,
                 "best_val": float(np.mean(bests)) if bests else None,
                 "diverged": [{"seed": r["seed"], "step": r["divergence_step"], "reason": r["divergence_reason"]}
                              for r in rs if r["diverged"]]}
        for ref in ("bf16", "fp32"):
            e = rel(name, ref) if name != ref else None
            floor = out["noise_floor"][ref]
            entry[f"rel_error_vs_{ref}"] = e
            entry[f"exceeds_{ref}_noise"] = (abs(e) > floor) if (e is not None and floor is not None) else None
        errs = {}
        for p in PASSES:
            vals = [e[1] for r in rs for e in r["gemm_error"][p] if e[1] is not None]
            errs[p] = float(np.mean(vals)) if vals else None
        entry["gemm_error_mean"] = errs
        known = {p: v for p, v in errs.items() if v is not None}
        entry["worst_gemm"] = max(known, key=known.get) if known else None
        entry["tokens_per_s"] = float(np.mean([r["tokens_per_s"] for r in rs if r["tokens_per_s"]])) if rs else None
        out["recipes"][name] = entry
    out["router"] = router_health(runs)
    return out


def run_label(r: dict) -> str:
    """A run's group in the summary and the plot: its recipe, marked when the bias update was off."""
    return r["recipe"] if r.get("bias_update", True) else f"{r['recipe']} (no bias update)"


def router_health(runs: list[dict]) -> list[dict]:
    """Max/mean expert load per run: mean over steps (of the worst MoE layer), and over the last
    quarter of training, with the run's bias_update setting."""
    rows = []
    for r in runs:
        loads = r["expert_load_max_over_mean"]
        if not loads:
            continue
        worst = [max(step) for step in loads]
        q = worst[len(worst) * 3 // 4:] or worst
        rows.append({"recipe": r["recipe"], "seed": r["seed"], "bias_update": r["bias_update"],
                     "mean_max_over_mean": float(np.mean(worst)), "last_quarter_max_over_mean": float(np.mean(q))})
    return rows


def loss_figure(runs: list[dict]):
    """Train loss (moving mean) and validation loss per run, one colour per recipe; one legend, below
    the panels (outside every axes), axis labels on both panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    names = list(dict.fromkeys(run_label(r) for r in runs))
    colors = {n: plt.cm.tab10(i % 10) for i, n in enumerate(names)}
    handles = {}
    for r in runs:
        name = run_label(r)
        tl = np.asarray(r["train_loss"], dtype=np.float64)
        if len(tl):
            k = max(1, len(tl) // 30)
            sm = np.convolve(tl, np.ones(k) / k, mode="valid")
            (h,) = ax1.plot(np.arange(len(sm)) + k, sm, color=colors[name], lw=1)
            handles.setdefault(name, h)
        if r["val"]:
            s, v = zip(*r["val"])
            ax2.plot(s, v, color=colors[name], lw=1, marker=".")
    ax1.set_title("train loss (moving mean)", fontsize=10)
    ax2.set_title("validation loss (fixed batches)", fontsize=10)
    for ax in (ax1, ax2):
        ax.set_xlabel("step")
        ax.set_ylabel("loss (nats per byte)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.legend(list(handles.values()), list(handles), loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=max(1, min(len(handles), 4)), fontsize=8, frameon=False)
    return fig


def plot(runs: list[dict]) -> bytes:
    """``loss_figure`` as PNG bytes (no metadata: the bytes depend only on the data)."""
    import matplotlib.pyplot as plt

    fig = loss_figure(runs)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _pct(v, signed=True):
    return "n/a" if v is None else (f"{100 * v:+.3f}%" if signed else f"{100 * v:.3f}%")


def markdown(results: dict) -> str:
    s = results["summary"]
    m = results["meta"]
    lines = [f"# fp8lab train: {', '.join(m['recipes'])} x seeds {m['seeds']}", "",
             f"Model `{m['model_name']}`, {m['train']['steps']} steps of {m['train']['batch']} x {m['train']['seq']} "
             f"byte tokens from `{m['data']['name']}` (sha256 {m['data']['sha256'][:12]}), torch threads "
             f"{m['train']['threads']}.", "",
             f"Noise floor (seed-to-seed spread of final validation loss, (max - min) / mean): bf16 "
             f"{_pct(s['noise_floor']['bf16'], False)}, fp32 {_pct(s['noise_floor']['fp32'], False)}.", "",
             "| recipe | seeds | final val | best val | rel. error vs bf16 | > bf16 noise? | vs fp32 | worst GEMM | diverged |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    for name, e in s["recipes"].items():
        div = "; ".join(f"seed {d['seed']} at step {d['step']}" for d in e["diverged"]) or "no"
        lines.append(f"| {name} | {len(e['seeds'])} | {fmt(e['final_val'])} | {fmt(e['best_val'])} | "
                     f"{_pct(e['rel_error_vs_bf16'])} | {e['exceeds_bf16_noise']} | {_pct(e['rel_error_vs_fp32'])} | "
                     f"{e['worst_gemm'] or 'n/a'} | {div} |")
    lines += ["", "DeepSeek-V3 (§3.3, App. B.1): relative loss error of FP8 vs BF16 training below 0.25%.", ""]
    if s["router"]:
        lines += ["| run | bias update | max/mean expert load (mean over steps) | last quarter |", "| --- | --- | --- | --- |"]
        for r in s["router"]:
            lines.append(f"| {r['recipe']} seed {r['seed']} | {r['bias_update']} | {r['mean_max_over_mean']:.3f} | "
                         f"{r['last_quarter_max_over_mean']:.3f} |")
    return "\n".join(lines) + "\n"


def _as_rows(recipes):
    if isinstance(recipes, (str, dict)):
        recipes = [recipes]
    rows = [_recipe(r) for r in recipes]
    if not rows:
        raise ValueError("recipes: expected at least one recipe")
    return rows


def _cached_run(path: Path | None) -> dict | None:
    """The cached record at ``path``, or None when there is none or it is unreadable (a run killed
    mid-write elsewhere, a hand-edited file): such an entry is recomputed and overwritten."""
    if path is None or not path.is_file():
        return None
    try:
        rec = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return rec if isinstance(rec, dict) and "final_val" in rec else None


def _store_run(path: Path, rec: dict) -> None:
    """Writes a record atomically; the temporary name is per process, so two processes filling the
    same cache entry at once each replace it whole (the records are identical by construction)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(rec, sort_keys=True))
    tmp.replace(path)


def train(recipes=("fp32", "bf16", "deepseek_fp8"), seeds=(0,), model="moe", steps: int | None = None,
          text=None, data: ByteData | None = None, out=None, cache_dir=None, progress: bool = True,
          extra_runs=(), **train_kwargs) -> dict:
    """Train every (recipe, seed) and return the results dict (``meta``, ``recipes``, ``runs``,
    ``summary``); with ``out`` also write ``results.json``, ``loss_curves.png`` and ``summary.md``.

    recipes: names or row dicts (``fp8lab.torch.recipes()``); seeds: ints; model: a size name
    (``moe``, ``dense``, ``tiny``, ``tiny_dense``) or a ``ModelConfig``; text: a file to train on
    instead of ``pydoc_data.topics``; extra_runs: (recipe, seed, {TrainConfig overrides}) tuples run
    besides the grid, e.g. ``("fp32", 0, {"bias_update": False})``; other keywords set
    ``TrainConfig`` fields (steps, batch, seq, lr, eval_every, threads, ...)."""
    rows = _as_rows(recipes)
    seeds = list(seeds) if not isinstance(seeds, int) else [seeds]
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
            raise ValueError(f"seeds: expected non-negative ints, got {s!r}")
    if not seeds:
        raise ValueError("seeds: expected at least one seed")
    model_name = model if isinstance(model, str) else "custom"
    model_cfg = sized(model) if isinstance(model, str) else model
    if not isinstance(model_cfg, ModelConfig):
        raise TypeError(f"model: expected a size name or a ModelConfig, got {type(model).__name__}")
    model_cfg.validate()
    if steps is not None:
        train_kwargs["steps"] = steps
    unknown = set(train_kwargs) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise TypeError(f"train: unknown keyword(s) {sorted(unknown)}")
    tc = TrainConfig(**train_kwargs).validate()
    if tc.seq > model_cfg.max_seq_len:
        raise ValueError(f"seq: {tc.seq} exceeds the model's max_seq_len = {model_cfg.max_seq_len}")
    if data is None:
        data = ByteData.from_file(text) if text is not None else ByteData.pydoc_topics()
    data.check(tc.batch, tc.seq)

    jobs = [(row, s, tc) for row in rows for s in seeds]
    for name, s, over in extra_runs:
        jobs.append((_recipe(name), s, dataclasses.replace(tc, **over).validate()))
    cdir = _cache_dir(cache_dir)
    runs = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(j[2].steps for j in jobs), desc="fp8lab train", unit="step", leave=False)
    prev_threads = torch.get_num_threads()
    try:
        for row, s, jtc in jobs:
            torch.set_num_threads(jtc.threads)
            key = cache_key(row, model_cfg, jtc, data.sha256, s)
            path = cdir / f"{key}.json" if cdir is not None else None
            rec = _cached_run(path)
            if rec is not None:
                if bar is not None:
                    bar.update(jtc.steps)
            else:
                if bar is not None:
                    bar.set_postfix_str(f"{row['name']} seed {s}")
                rec = run_one(row, s, model_cfg, jtc, data, bar)
                if path is not None:
                    _store_run(path, rec)
            rec["cache_key"] = key
            runs.append(rec)
    finally:
        torch.set_num_threads(prev_threads)
        if bar is not None:
            bar.close()
    recipe_rows = {}
    for row, _, _ in jobs:
        recipe_rows.setdefault(row["name"], dict(row, resolved=resolve(row)))
    results = {"meta": {"fp8lab": _version(), "torch": torch.__version__, "model_name": model_name,
                        "model": model_cfg.to_dict(), "train": dataclasses.asdict(tc),
                        "data": {"name": data.name, "sha256": data.sha256, "bytes": int(len(data.tokens)),
                                 "train_bytes": int(len(data.train)), "val_bytes": int(len(data.val))},
                        "recipes": [r["name"] for r in rows], "seeds": seeds},
               "recipes": recipe_rows, "runs": runs, "summary": summarise(runs)}
    if out is not None:
        write(out, results)
    return results


def write(out, results: dict) -> Path:
    o = Path(out)
    if o.exists() and not o.is_dir():
        raise ValueError(f"out: {str(o)!r} exists and is not a folder")
    o.mkdir(parents=True, exist_ok=True)
    (o / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True, allow_nan=True) + "\n")
    (o / "loss_curves.png").write_bytes(plot(results["runs"]))
    (o / "summary.md").write_text(markdown(results))
    return o


__all__ = ["TrainConfig", "cache_key", "loss_figure", "markdown", "plot", "run_one", "summarise", "train", "write"]
