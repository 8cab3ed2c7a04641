"""Figures of the ODE-generator experiments: one helper per kind of figure.

The backend is the caller's choice (the experiment runner selects Agg; a notebook keeps its
inline backend), so importing this module changes no global matplotlib state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np


def trajectories_1d(ts, xs, ends_label, *, atoms, title):
    """Trajectories ``x(t)`` of a 1-D ODE (``xs``: ``(K+1, B)``), coloured by end atom."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colours = plt.cm.viridis(np.linspace(0.1, 0.9, len(atoms)))
    for j in range(xs.shape[1]):
        ax.plot(ts, xs[:, j], color=colours[ends_label[j]], lw=0.7, alpha=0.8)
    for a, c in zip(atoms, colours, strict=True):
        ax.axhline(a, color=c, ls=":", lw=1)
    ax.set_xlabel("t (prior U[0, 2] at t = 1, data at t = 0)")
    ax.set_ylabel("x")
    ax.invert_xaxis()
    ax.set_title(title)
    return fig


def scatter_panels(panels: Mapping[str, np.ndarray], *, reference=None, title="", lim=None,
                   ncols=None, marker_size=2.0):
    """One 2-D scatter per entry (``name -> (M, 2)``), with ``reference`` points in grey."""
    n = len(panels)
    ncols = ncols or min(n, 4)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3.2 * nrows), squeeze=False)
    for ax, (name, pts) in zip(axes.flat, panels.items(), strict=False):
        if reference is not None:
            ax.scatter(reference[:, 0], reference[:, 1], s=6, c="0.75", label="data")
        ax.scatter(pts[:, 0], pts[:, 1], s=marker_size, c="C3", alpha=0.6, label="samples")
        ax.set_title(name, fontsize=9)
        ax.set_aspect("equal")
        if lim is not None:
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
        ax.set_xlabel("x₁", fontsize=8)
        ax.set_ylabel("x₂", fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="upper right", markerscale=3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def trajectories_2d(xs, ts, data, *, title, lim=3.0):
    """Trajectories in the data plane (``xs``: ``(K+1, B, 2)``), coloured by :math:`\\log t`."""
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    ax.scatter(data[:, 0], data[:, 1], s=5, c="0.7", zorder=0, label="data")
    log_t = np.log10(np.asarray(ts))
    for j in range(xs.shape[1]):
        points = xs[:, j, :]
        sc = ax.scatter(points[:, 0], points[:, 1], c=log_t, s=1.5, cmap="plasma",
                        vmin=log_t.min(), vmax=log_t.max())
        ax.plot(points[:, 0], points[:, 1], c="k", lw=0.3, alpha=0.4)
    fig.colorbar(sc, ax=ax, label="log₁₀ t")
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("x₁")
    ax.set_ylabel("x₂")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=7)
    return fig


def field_slice(grid_x, grid_t, f_x, f_t, data_x, *, title):
    """Field lines of :math:`(F_{x_1}, F_t)` in the half-plane :math:`x_2 = 0`, ``t > 0``."""
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    speed = np.log10(np.hypot(f_x, f_t) + 1e-30)
    strm = ax.streamplot(grid_x, grid_t, f_x, f_t, color=speed, cmap="viridis", density=1.4,
                         linewidth=0.7, arrowsize=0.7)
    fig.colorbar(strm.lines, ax=ax, label="log₁₀ |F|")
    ax.scatter(data_x, np.zeros_like(data_x), s=6, c="C3", zorder=3, label="data near x₂ = 0")
    ax.set_xlabel("x₁")
    ax.set_ylabel("t (augmented coordinate)")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=7)
    return fig


def radial_histograms(samples: Mapping[str, np.ndarray], r_grid, density, *, title, r_max):
    """Histograms of the radius for several samplers against the analytic density."""
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    bins = np.linspace(0, r_max, 60)
    for name, r in samples.items():
        ax.hist(np.clip(r, 0, r_max), bins=bins, density=True, histtype="step", lw=1.2,
                label=f"{name} sampler")
    ax.plot(r_grid, density, "k--", lw=1.2, label="analytic p(r)")
    ax.set_xlabel("r = ‖x‖ (last bin holds r > r_max)")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return fig


def metric_curves(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], *,
                  markers: Mapping[str, tuple[float, float]] | None = None, xlabel, ylabel,
                  title, ax=None, logx=True):
    """Lines ``name -> (x, y)``; ``markers`` adds one starred point per name (adaptive)."""
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(5.6, 4.0))
    for i, (name, (x, y)) in enumerate(curves.items()):
        ax.plot(x, y, "o-", color=f"C{i}", label=name, ms=4)
        if markers and name in markers:
            ax.plot(*markers[name], "*", color=f"C{i}", ms=12, mec="k")
    if logx:
        ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    return ax.figure if own else ax


def hit_bars(counts: Mapping[str, np.ndarray], *, title):
    """Sorted hit counts per training point, one line per sampler, with the uniform level."""
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for name, c in counts.items():
        ax.plot(np.sort(c)[::-1], drawstyle="steps-mid", label=name)
    total = np.mean([c.sum() for c in counts.values()])
    ax.axhline(total / len(next(iter(counts.values()))), color="k", ls="--", lw=1,
               label="uniform (M/N)")
    ax.set_xlabel("training points, sorted by hit count")
    ax.set_ylabel("samples landing on the point")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return fig


def histograms(values: Mapping[str, np.ndarray], *, xlabel, title):
    """Overlaid histograms of a per-example quantity."""
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    for name, v in values.items():
        ax.hist(v, bins=40, histtype="step", lw=1.3, label=f"{name} (mean {np.mean(v):.3g})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return fig
