"""Figures of the UDM experiments: digit grids, metric against reverse steps (network and exact
predictor), z-score and count histograms."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np


def tile(images, *, columns: int) -> np.ndarray:
    """``(N, H, W, 1)`` images in [-1, 1] tiled row by row into one 2-D array (1-pixel gaps)."""
    images = np.asarray(images)[..., 0]
    n, h, w = images.shape
    rows = math.ceil(n / columns)
    canvas = np.full((rows * (h + 1) - 1, columns * (w + 1) - 1), np.nan)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        canvas[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = image
    return canvas


def digit_grids(
    panels: Mapping[str, np.ndarray],
    *,
    columns: int | None = None,
    panel_columns: int = 4,
    suptitle: str = "",
):
    """One panel per named set of ``(N, 8, 8, 1)`` images; the first panel is usually real digits.

    ``columns`` images per panel row (default: a near-square tiling).
    """
    names = list(panels)
    count = max(len(panels[n]) for n in names)
    columns = columns or math.ceil(math.sqrt(count))
    aspect = math.ceil(count / columns) / columns  # panel height / width
    cols = min(panel_columns, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, (3.0 * aspect + 0.5) * rows), squeeze=False)
    cmap = plt.get_cmap("gray").copy()
    cmap.set_bad("white")
    for ax, name in zip(axes.flat, names, strict=False):
        ax.imshow(tile(panels[name], columns=columns), cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def metric_vs_steps(rows: Sequence[Mapping], *, metric: str, ylabel: str, title: str, log_y: bool = True):
    """Lines of ``metric`` (mean ± std over seeds) against reverse steps, one per sampler.

    ``rows`` hold ``sampler``, ``steps``, ``<metric>_mean`` and ``<metric>_std``.
    """
    fig, ax = plt.subplots(figsize=(8, 4.8))
    names = list(dict.fromkeys(r["sampler"] for r in rows))
    colors = plt.get_cmap("tab20")(np.linspace(0, 1, 20))
    markers = "osD^v<>ph*X"
    for i, name in enumerate(names):
        pts = sorted(
            (r["steps"], r[f"{metric}_mean"], r[f"{metric}_std"]) for r in rows if r["sampler"] == name
        )
        steps, mean, std = (np.array(v) for v in zip(*pts, strict=True))
        ax.errorbar(
            steps,
            mean,
            yerr=std,
            marker=markers[i % len(markers)],
            ms=4,
            capsize=2,
            label=name,
            color=colors[(2 * i) % 20 + (i // 10) % 2],
        )
    _steps_axes(ax, sorted({r["steps"] for r in rows}), ylabel=ylabel, title=title, log_y=log_y)
    fig.tight_layout()
    return fig


def network_vs_oracle(rows: Sequence[Mapping], oracle_rows: Sequence[Mapping], *, floor: float,
                      ylabel: str, title: str):
    """The trained network (solid) and the exact predictor (dashed,
    :func:`~diffusionlab.udm.empirical_predictor`) against reverse steps, per sampler of
    ``oracle_rows``, and the training set's own score ``floor`` (dotted grey): the gap between
    the two curves is the network's error, the oracle's distance to ``floor`` the sampler's.

    ``rows`` and ``oracle_rows`` hold ``sampler``, ``steps``, ``score_mean`` and ``score_std``.
    """
    fig, ax = plt.subplots(figsize=(8, 4.8))
    names = list(dict.fromkeys(r["sampler"] for r in oracle_rows))
    colors = plt.get_cmap("tab20")(np.arange(20))  # 11+ samplers: no colour repeats
    for i, name in enumerate(names):
        for source, style, label in ((rows, "-o", "network"), (oracle_rows, "--s", "oracle")):
            pts = sorted((r["steps"], r["score_mean"], r["score_std"]) for r in source
                         if r["sampler"] == name)
            steps, mean, std = (np.array(v) for v in zip(*pts, strict=True))
            ax.errorbar(steps, mean, yerr=std, fmt=style, ms=4, capsize=2,
                        color=colors[(2 * i) % 20 + (i // 10) % 2], label=f"{name} ({label})",
                        mfc="white" if label == "oracle" else None)
    ax.axhline(floor, color="0.5", lw=1, ls=":", label="training examples themselves")
    _steps_axes(ax, sorted({r["steps"] for r in oracle_rows}), ylabel=ylabel, title=title,
                log_y=True)
    fig.tight_layout()
    return fig


def _steps_axes(ax, ticks, *, ylabel: str, title: str, log_y: bool) -> None:
    """Log-scaled reverse steps on x with plain tick labels (and a log y), grid and legend."""
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    ax.set_xscale("log")
    ax.set_xticks(ticks)
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    if log_y:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("reverse steps (log scale)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))


def z_histograms(z_by_family: Mapping[str, np.ndarray], *, title: str):
    """Histogram of the consistency z-scores of each kernel family against the N(0, 1) density."""
    names = list(z_by_family)
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False, sharex=True)
    grid = np.linspace(-5, 5, 201)
    for ax, name in zip(axes.flat, names, strict=False):
        z = np.clip(np.asarray(z_by_family[name], float), -8, 8)
        ax.hist(z, bins=np.linspace(-8, 8, 33), density=True, alpha=0.6, color="C0", label="z-scores")
        ax.plot(grid, np.exp(-(grid**2) / 2) / np.sqrt(2 * np.pi), "k-", lw=1, label="N(0, 1)")
        ax.set_title(f"{name}\nmax|z| = {np.max(np.abs(z)):.2f}", fontsize=8)
        ax.set_xlabel("z (kernel route − direct draw)", fontsize=7)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def count_histograms(panels: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]], *, title: str,
                     xlabel: str):
    """Side-by-side bars of two routes' counts per value, one panel per check.

    ``panels`` maps a title to ``(values, kernel_counts, forward_counts)`` (e.g. the Hamming
    distances of :func:`diffusionlab.udm.consistency.hamming_consistency`).
    """
    names = list(panels)
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        values, kernel, forward = (np.asarray(a) for a in panels[name])
        ax.bar(values - 0.2, kernel, width=0.4, color="C0", label="kernel route")
        ax.bar(values + 0.2, forward, width=0.4, color="C1", label="forward draw")
        ax.set_title(name, fontsize=8)
        ax.set_xlabel(xlabel, fontsize=7)
        ax.set_xticks(values)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    axes.flat[0].set_ylabel("draws", fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
