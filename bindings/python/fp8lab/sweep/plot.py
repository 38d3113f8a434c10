"""``fp8lab sweep plot``: the standard figures of a result file (matplotlib, Agg backend, PNG).

A figure puts one axis of the grid on x and one result value on y (``agg`` of the samples of each
point: mean by default). Every other axis that takes more than one value splits the points into
lines (legend: ``axis=value, ...``), except ``panel``, which gets one subplot per value. Kinds name
their standard figures (``Kind.figures``); a grid run by a function gets one figure: the first axis
with several values on x and the first result value on y, unless ``x``/``y`` say otherwise.
Points whose every task failed are left out and counted in the title.
"""
from __future__ import annotations

import io
from pathlib import Path

from .results import Results

AGGS = ("mean", "median", "max", "min")


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def standard_figures(res: Results) -> list[dict]:
    from .kinds import get_kind

    spec = res.grid_spec
    if spec.get("kind"):
        return [dict(f) for f in get_kind(spec["kind"]).figures]
    varying = [a for a in sorted(spec["axes"]) if len(spec["axes"][a]) > 1] or sorted(spec["axes"])
    names = res.value_names()
    if not varying or not names:
        raise ValueError("plot: the result file has no axis with values or no successful task to plot")
    return [{"name": f"{names[0]}_vs_{varying[0]}", "x": varying[0], "y": names[0], "logx": False, "logy": False,
             "title": f"{names[0]} vs {varying[0]}"}]


def render(res: Results, x: str, y: str, agg: str = "mean", panel: str | None = None, logx: bool = False,
           logy: bool = False, title: str = "") -> bytes:
    """One figure as PNG bytes."""
    import matplotlib.pyplot as plt

    fig = figure(res, x, y, agg, panel, logx, logy, title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def figure(res: Results, x: str, y: str, agg: str = "mean", panel: str | None = None, logx: bool = False,
           logy: bool = False, title: str = ""):
    """The matplotlib Figure (the caller closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes = res.grid_spec["axes"]
    if x not in axes:
        raise ValueError(f"plot: x: {x!r} is not an axis of this grid; axes: {', '.join(sorted(axes))}")
    if panel is not None and (panel not in axes or panel == x):
        raise ValueError(f"plot: panel: {panel!r} must be an axis other than x; axes: {', '.join(sorted(axes))}")
    names = res.value_names()
    if y not in names:
        raise ValueError(f"plot: y: {y!r} is not a result value of this file; values: {', '.join(names) or 'none'}")
    if agg not in AGGS:
        raise ValueError(f"plot: agg: {agg!r} is not one of {', '.join(AGGS)}")
    series_axes = [a for a in sorted(axes) if a not in (x, panel) and len(axes[a]) > 1]
    by = [x] + ([panel] if panel else []) + series_axes
    table = res.table(y, by, agg)
    xs = list(axes[x])
    numeric = all(_is_num(v) for v in xs)
    pos = {repr(v): (v if numeric else i) for i, v in enumerate(xs)}
    panels = list(axes[panel]) if panel else [None]
    fig, axs = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False, sharey=True)
    expected = len(xs) * len(panels)
    for s in series_axes:
        expected *= len(axes[s])
    for ax, pv in zip(axs[0], panels):
        lines: dict = {}
        for key, val in table.items():
            if panel and key[1] != pv:
                continue
            rest = key[2:] if panel else key[1:]
            lines.setdefault(rest, []).append((pos[repr(key[0])], val))
        order = {s: {repr(v): i for i, v in enumerate(axes[s])} for s in series_axes}
        for rest, pts in sorted(lines.items(), key=lambda kv: [order[s][repr(v)] for s, v in zip(series_axes, kv[0])]):
            pts.sort()
            label = ", ".join(f"{a}={v}" for a, v in zip(series_axes, rest)) or y
            # categories (recipes, gates) are not a continuum: points only, no connecting line
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", linestyle="-" if numeric else "none",
                    label=label)
        if logx and numeric and all(v > 0 for v in xs):
            ax.set_xscale("log", base=2)
        if logy and all(v > 0 for v in table.values()):
            ax.set_yscale("log")
        if not numeric:
            ax.set_xticks(range(len(xs)), [str(v) for v in xs])
        ax.set_xlabel(x)
        ax.set_ylabel(f"{y} ({agg} over samples)")
        if panel:
            ax.set_title(f"{panel} = {pv}")
        ax.grid(True, which="both", alpha=0.3)
        if lines:
            ax.legend(fontsize=8)
    left_out = expected - len(table)
    head = title or f"{y} vs {x}"
    if left_out:
        head += f" ({left_out} of {expected} points had no successful task)"
    fig.suptitle(head, fontsize=10)
    fig.tight_layout()
    return fig


def plot(path, out_dir=None, x: str | None = None, y: str | None = None, agg: str = "mean",
         panel: str | None = None) -> list[Path]:
    """Write the standard figures of the result file ``path`` (or the one figure ``x``/``y`` ask for)
    into ``out_dir`` (default: next to the result file); returns the PNG paths."""
    from .store import load

    res = load(path)
    if not res.ok:
        raise ValueError(f"plot: {path} holds no successful task; nothing to plot")
    figs = standard_figures(res)
    if x or y:
        base = figs[0]
        x, y = x or base["x"], y or base["y"]
        figs = [{"name": f"{y}_vs_{x}", "x": x, "y": y, "logx": base.get("logx", False) and x == base["x"],
                 "logy": base.get("logy", False), "title": ""}]
    if panel is None and res.grid_spec.get("kind") == "gemm_error" and len(res.grid_spec["axes"].get("dist", ())) > 1:
        panel = "dist"
    out = Path(out_dir) if out_dir is not None else Path(path).parent
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(path).name.split(".")[0]
    written = []
    for f in figs:
        png = render(res, f["x"], f["y"], agg, panel, f.get("logx", False), f.get("logy", False), f.get("title", ""))
        p = out / f"{stem}_{f['name']}.png"
        p.write_bytes(png)
        written.append(p)
    return written
