"""Matplotlib figures as PNG bytes (Agg backend: no display needed, same pixels on every run).

Every figure is inspected before it is saved (``inspect``): one legend, placed outside every axes
so it covers no data, and an x and a y label on every visible panel. A figure that breaks a rule
is a defect in the report and raises instead of reaching the page. The inspection travels with
the PNG (``Plot.info``) into results.json, so a test can check it without parsing pixels.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

# Distinguishable on screen and in greyscale print.
_STYLES = ["o-", "s-", "^-", "v-", "D-", "x-", "P-", "*-", "h-", "<-", ">-"]
DPI = 100


@dataclass
class Plot:
    png: bytes
    info: dict = field(default_factory=dict)


def _data_points(ax) -> np.ndarray:
    """Display coordinates of every plotted point and bar corner of an axes."""
    pts = []
    for line in ax.get_lines():
        xy = np.asarray(line.get_xydata(), dtype=float)
        if line.get_linestyle() == "--" and len(np.unique(xy[:, 1])) == 1:
            continue  # a reference line spans the axes; it is annotated, not data a legend could hide
        if len(xy):
            pts.append(ax.transData.transform(xy))
    for patch in ax.patches:
        bb = patch.get_window_extent()
        pts.append(np.array([[bb.x0, bb.y1], [bb.x1, bb.y1], [(bb.x0 + bb.x1) / 2, bb.y1]]))
    return np.concatenate(pts) if pts else np.zeros((0, 2))


def inspect(fig) -> dict:
    """What a reader needs from a figure, read from the matplotlib objects: legends, labels, and
    whether a legend covers a data point. Raises ValueError when a rule is broken."""
    fig.canvas.draw()
    axes = [ax for ax in fig.axes if ax.get_visible()]
    legends = list(fig.legends) + [ax.get_legend() for ax in axes if ax.get_legend() is not None]
    info = {"legends": len(legends), "axes": [], "legend_covers_data": False}
    boxes = [lg.get_window_extent() for lg in legends]
    for ax in axes:
        info["axes"].append({"title": ax.get_title(), "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel()})
        pts = _data_points(ax)
        for bb in boxes:
            inside = (pts[:, 0] >= bb.x0) & (pts[:, 0] <= bb.x1) & (pts[:, 1] >= bb.y0) & (pts[:, 1] <= bb.y1)
            if np.any(inside):
                info["legend_covers_data"] = True
    problems = []
    if len(legends) != 1:
        problems.append(f"{len(legends)} legends (want exactly 1)")
    for a in info["axes"]:
        if not a["xlabel"] or not a["ylabel"]:
            problems.append(f"panel {a['title']!r} lacks an axis label")
    if info["legend_covers_data"]:
        problems.append("the legend covers data points")
    if problems:
        raise ValueError(f"figure {fig.texts[0].get_text() if fig.texts else axes[0].get_title()!r}: "
                         + "; ".join(problems))
    return info


def _finish(fig) -> Plot:
    info = inspect(fig)
    buf = io.BytesIO()
    # No metadata: the PNG bytes then depend only on the data and the matplotlib version.
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return Plot(buf.getvalue(), info)


def _hlines(ax, hlines: dict | None) -> None:
    for label, y in (hlines or {}).items():
        ax.axhline(y, linestyle="--", color="grey", linewidth=1)
        ax.annotate(label, xy=(0.01, y), xycoords=("axes fraction", "data"), fontsize=8, color="dimgrey",
                    va="bottom")


def _legend_below(fig, handles, labels, ncol: int) -> None:
    # Below the axes, outside them: it can cover no data, and bbox_inches="tight" keeps it in the PNG.
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=ncol, fontsize=8,
               frameon=False)


def lines(series: dict, title: str, xlabel: str, ylabel: str, logx: bool = True, logy: bool = True,
          hlines: dict | None = None, size=(7.0, 4.2)) -> Plot:
    """series: label -> (xs, ys). hlines: label -> y (dashed reference lines, e.g. a paper claim)."""
    fig, ax = plt.subplots(figsize=size)
    for i, (label, (xs, ys)) in enumerate(series.items()):
        ax.plot(xs, ys, _STYLES[i % len(_STYLES)], label=label, markersize=4, linewidth=1.2)
    _hlines(ax, hlines)
    if logx:
        ax.set_xscale("log", base=2)
    if logy:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    h, lab = ax.get_legend_handles_labels()
    _legend_below(fig, h, lab, ncol=min(len(lab), 2))
    return _finish(fig)


def bars(labels: list[str], groups: dict, title: str, ylabel: str, logy: bool = True, size=(7.0, 4.0),
         xlabel: str = "") -> Plot:
    """Grouped bars: groups: group label -> values (one per label)."""
    fig, ax = plt.subplots(figsize=size)
    n = max(len(groups), 1)
    width = 0.8 / n
    x = np.arange(len(labels))
    for i, (g, vals) in enumerate(groups.items()):
        ax.bar(x + (i - (n - 1) / 2) * width, vals, width, label=g)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, fontsize=8, rotation=20, ha="right")
    if logy:
        ax.set_yscale("log")
    else:
        top = max((max(v) for v in groups.values() if len(v)), default=1.0)
        ax.set_ylim(0, 1.1 * top)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel or "configuration")
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    h, lab = ax.get_legend_handles_labels()
    _legend_below(fig, h, lab, ncol=max(len(groups), 1))
    return _finish(fig)


def grid(panels: dict, title: str, xlabel: str, ylabel: str, hlines: dict | None = None, cols: int = 2,
         size_per=(5.6, 3.6)) -> Plot:
    """Small multiples on shared axes: panels: panel title -> series (label -> (xs, ys)); one legend
    below all panels; x and y labels on every panel. hlines: panel title -> {label: y}."""
    n = len(panels)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(size_per[0] * cols, size_per[1] * rows), sharex=True,
                             sharey=True, squeeze=False)
    handles, labels = [], []
    for ax, (ptitle, series) in zip(axes.flat, panels.items()):
        for i, (label, (xs, ys)) in enumerate(series.items()):
            (h,) = ax.plot(xs, ys, _STYLES[i % len(_STYLES)], label=label, markersize=4, linewidth=1.2)
            if label not in labels:
                handles.append(h)
                labels.append(label)
        _hlines(ax, (hlines or {}).get(ptitle))
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(ptitle, fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.xaxis.set_tick_params(labelbottom=True)  # shared x hides inner tick labels; every panel keeps them
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    _legend_below(fig, handles, labels, ncol=3)
    return _finish(fig)
