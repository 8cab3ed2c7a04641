"""The two kinds of CoSENT figure: validation curves over training, and grouped bars."""

from __future__ import annotations

import numpy as np

__all__ = ["plot_bars", "plot_curves"]

_COLORS = {"cosent": "tab:red", "sbert": "tab:blue", "cosine_mse": "tab:gray",
           "cross_entropy": "tab:green", "bi cosent": "tab:red", "bi sbert": "tab:blue",
           "bi cosine_mse": "tab:gray", "cross cosent": "tab:purple",
           "cross cross_entropy": "tab:green"}


def plot_curves(curves: dict[str, dict[str, np.ndarray]], eval_steps: np.ndarray, *,
                steps_per_epoch: int, title: str, ylabel: str = "validation Spearman"):
    """One panel per task; per loss the mean over seeds with a min-max band.

    Args:
      curves: ``curves[task][loss]`` is ``(S, E)``.
      eval_steps: ``(E,)`` optimiser steps of the evaluations.
      steps_per_epoch: where to draw the end of the first epoch.
      title: the figure title.
    """
    import matplotlib.pyplot as plt

    tasks = list(curves)
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 3.2), squeeze=False,
                             sharey=True)
    for ax, task in zip(axes[0], tasks, strict=True):
        for loss, curve in curves[task].items():
            color = _COLORS.get(loss)
            ax.plot(eval_steps, curve.mean(0), label=loss, color=color, lw=1.8)
            ax.fill_between(eval_steps, curve.min(0), curve.max(0), color=color, alpha=0.15)
        ax.axvline(steps_per_epoch, color="k", ls=":", lw=1)
        ax.text(steps_per_epoch, ax.get_ylim()[0], " epoch 1", fontsize=8, va="bottom")
        ax.set_title(task)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_bars(summary: list[dict], *, metric: str, group: str, title: str, ylabel: str):
    """Grouped bars: tasks on the x axis, one bar per ``summary[group]`` value, ± std.

    Args:
      summary: rows from :func:`diffusionlab.cosent.comparison.summarize` with ``task``,
        ``group``, ``<metric>_mean`` and ``<metric>_std``.
      metric: e.g. ``"test_spearman"``.
      group: the column that names the bars (``"loss"`` or ``"model"``).
    """
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in summary))
    names = list(dict.fromkeys(r[group] for r in summary))
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(1.2 + 1.6 * len(tasks), 3.4))
    for i, name in enumerate(names):
        rows = {r["task"]: r for r in summary if r[group] == name}
        x = np.arange(len(tasks)) + (i - (len(names) - 1) / 2) * width
        means = [rows[t][f"{metric}_mean"] if t in rows else np.nan for t in tasks]
        stds = [rows[t][f"{metric}_std"] if t in rows else 0.0 for t in tasks]
        ax.bar(x, means, width, yerr=stds, capsize=3, label=name, color=_COLORS.get(name))
    ax.set_xticks(np.arange(len(tasks)), tasks)
    ax.set_ylabel(ylabel)
    ax.axhline(0, color="k", lw=0.8)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title)
    fig.tight_layout()
    return fig
