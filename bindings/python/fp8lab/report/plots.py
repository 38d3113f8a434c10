"""Matplotlib figures as PNG bytes (Agg backend: no display needed, same pixels on every run)."""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# Distinguishable on screen and in greyscale print.
_STYLES = ["o-", "s-", "^-", "v-", "D-", "x-", "P-", "*-", "h-", "<-", ">-"]


def _png(fig) -> bytes:
    buf = io.BytesIO()
    # No metadata: the PNG bytes then depend only on the data and the matplotlib version.
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def lines(series: dict, title: str, xlabel: str, ylabel: str, logx: bool = True, logy: bool = True,
          hlines: dict | None = None, size=(7.0, 4.2)) -> bytes:
    """series: label -> (xs, ys). hlines: label -> y (dashed reference lines, e.g. a paper claim)."""
    fig, ax = plt.subplots(figsize=size)
    for i, (label, (xs, ys)) in enumerate(series.items()):
        ax.plot(xs, ys, _STYLES[i % len(_STYLES)], label=label, markersize=4, linewidth=1.2)
    for label, y in (hlines or {}).items():
        ax.axhline(y, linestyle="--", color="grey", linewidth=1)
        ax.annotate(label, xy=(0.01, y), xycoords=("axes fraction", "data"), fontsize=8, color="dimgrey",
                    va="bottom")
    if logx:
        ax.set_xscale("log", base=2)
    if logy:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return _png(fig)


def bars(labels: list[str], groups: dict, title: str, ylabel: str, logy: bool = True, size=(7.0, 4.0)) -> bytes:
    """Grouped bars: groups: group label -> values (one per label)."""
    import numpy as np

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
        # Bars start at zero; headroom keeps the legend off the tallest bar.
        top = max((max(v) for v in groups.values() if len(v)), default=1.0)
        ax.set_ylim(0, 1.3 * top)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=max(len(groups), 1), loc="upper left")
    return _png(fig)


def grid(panels: dict, title: str, xlabel: str, ylabel: str, hlines: dict | None = None, cols: int = 2,
         size_per=(5.6, 3.6)) -> bytes:
    """Small multiples on shared axes: panels: panel title -> series (label -> (xs, ys)); one legend.
    hlines: panel title -> {label: y}."""
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
        for label, y in ((hlines or {}).get(ptitle) or {}).items():
            ax.axhline(y, linestyle="--", color="grey", linewidth=1)
            ax.annotate(label, xy=(0.01, y), xycoords=("axes fraction", "data"), fontsize=8, color="dimgrey",
                        va="bottom")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(ptitle, fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel(xlabel)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    fig.suptitle(title, fontsize=11)
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, bbox_to_anchor=(0.5, -0.02 - 0.03 * ((len(labels) + 2) // 3)))
    fig.tight_layout()
    return _png(fig)
