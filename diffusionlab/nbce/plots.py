"""The one kind of figure the NBCE experiments draw: curves against a swept quantity."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["curves_figure"]


def curves_figure(panels: Sequence[tuple[Sequence[float], Mapping[str, tuple]]], *,
                  xlabels: Sequence[str], ylabels: Sequence[str], titles: Sequence[str],
                  logx: Sequence[bool] | None = None, logy: Sequence[bool] | None = None,
                  suptitle: str = ""):
    """Panels of curves with error bars, one panel per ``(x, {label: (mean, spread)})``.

    Args:
      panels: per panel, the swept values ``x`` and ``label -> (mean, spread or None)``,
        each of length ``len(x)``.
      xlabels, ylabels, titles: per-panel axis labels and titles.
      logx: per panel, a log-2 x axis (ticks at the swept values); logy: log y axis.
      suptitle: the figure title.

    Returns:
      The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    count = len(panels)
    fig, axes = plt.subplots(1, count, figsize=(5.4 * count, 4.0), squeeze=False)
    logx = logx or [False] * count
    logy = logy or [False] * count
    markers = "osD^v<>xP*"
    for ax, (x, curves), xlabel, ylabel, title, lx, ly in zip(
            axes[0], panels, xlabels, ylabels, titles, logx, logy, strict=True):
        for i, (label, (mean, spread)) in enumerate(curves.items()):
            ax.errorbar(x, np.asarray(mean, float),
                        yerr=None if spread is None else np.asarray(spread, float),
                        marker=markers[i % len(markers)], capsize=3, label=label, lw=1.5, ms=5)
        if lx:
            ax.set_xscale("log", base=2)
            ax.set_xticks(list(x), [f"{v:g}" for v in x])
        if ly:
            ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig
