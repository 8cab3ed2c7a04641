"""Figures of the sector probability: one helper per kind of figure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np


def plot_curves(theta, curves: Mapping[int, np.ndarray], *, mc_theta=None,
                mc: Mapping[int, tuple[np.ndarray, np.ndarray]] | None = None,
                regime_marks: Sequence[float] = (), title: str = ""):
    """P_n(θ) against θ/π, one line per n, Monte Carlo points with ±2 SE bars on top.

    ``regime_marks`` are angles (radians) drawn as dotted verticals: where the number of
    terms of the sum changes (θ = π and θ = 2π(1 − 1/k)).
    """
    fig, ax = plt.subplots(figsize=(8.5, 5.2))
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(curves)))
    for color, (n, p) in zip(colors, curves.items(), strict=True):
        ax.plot(theta / np.pi, p, color=color, lw=1.6, label=f"n = {n}")
        if mc is not None and n in mc:
            est, se = mc[n]
            ax.errorbar(mc_theta / np.pi, est, yerr=2 * se, fmt="o", ms=3.5, color=color,
                        mec="black", mew=0.4, capsize=2, lw=0.8)
    for i, mark in enumerate(regime_marks):
        ax.axvline(mark / np.pi, color="0.55", ls=":", lw=0.9,
                   label="regime change: θ = π, 2π(1 − 1/k)" if i == 0 else None)
    ax.set_xlabel("central angle θ / π")
    ax.set_ylabel("P(all n points in one sector of angle θ)")
    ax.set_xlim(0, 2)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.25)
    ax.legend(fontsize=8, ncol=2, loc="upper left")
    ax.set_title(title or "Exact curves (lines) and Monte Carlo in the disk (points, ±2 SE)")
    return fig


def plot_z_grid(z_NxT: np.ndarray, n_values: Sequence[int], theta_labels: Sequence[str],
                cell_text: Sequence[Sequence[str]], *, title: str = ""):
    """A heat map of Monte Carlo z-scores, each cell labelled with the exact value."""
    fig, ax = plt.subplots(figsize=(1.5 * len(theta_labels) + 2, 0.55 * len(n_values) + 1.8))
    image = ax.imshow(z_NxT, cmap="coolwarm", vmin=-4, vmax=4, aspect="auto")
    for i in range(len(n_values)):
        for j in range(len(theta_labels)):
            ax.text(j, i, cell_text[i][j], ha="center", va="center", fontsize=7.5)
    ax.set_xticks(range(len(theta_labels)), theta_labels)
    ax.set_yticks(range(len(n_values)), [f"n = {n}" for n in n_values])
    ax.set_xlabel("central angle θ")
    fig.colorbar(image, ax=ax, label="z = (MC − exact) / SE")
    ax.set_title(title or "Exact P (cell text) and the Monte Carlo z-score (colour)")
    return fig


def plot_errors(n_values, errors: Mapping[str, np.ndarray], *, title: str = "",
                floor: float = 1e-18):
    """Absolute error against the exact value, against n, one line per method (log-log)."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    markers = iter("osD^v")
    for name, err in errors.items():
        err = np.where(np.isfinite(err), err, np.inf)
        ax.plot(n_values, np.clip(err, floor, 1e30), marker=next(markers), label=name)
    ax.axhline(1e-12, color="crimson", ls="--", lw=1, label="1e-12 budget")
    ax.axhline(1.0, color="0.4", ls=":", lw=1, label="error = 1 (meaningless)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("number of points n")
    ax.set_ylabel(f"|P − exact| (values below {floor:g} drawn at {floor:g})")
    ax.grid(alpha=0.25, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title)
    return fig
