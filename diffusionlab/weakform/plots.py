"""Figures of weak-form verifications: one helper per kind of figure.

The backend is the caller's choice (the experiment runner selects Agg; a notebook keeps its
inline backend), so importing this module changes no global matplotlib state.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt

from diffusionlab.weakform.report import WeakFormReport


def sides(ax, report: WeakFormReport, title: str, *, num_functions: int = 3):
    r"""Both sides of the weak form over time, for the first ``num_functions`` test functions.

    :math:`\frac{d}{dt}\mathbb E[\phi(x_t)]` as markers with ±2 standard errors, against
    :math:`\mathbb E[\mathcal L\phi(x_t)]` as lines; the title carries the verdict and the
    largest :math:`|z|` against the threshold.
    """
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k in range(num_functions):
        c = colors[k % len(colors)]
        ax.plot(report.times, report.rhs[:, k], color=c, lw=1.5,
                label=f"E[Lφ], {report.names[k]}")
        ax.errorbar(report.times, report.lhs[:, k], yerr=2 * report.standard_error[:, k],
                    fmt="o", ms=3.5, color=c, mfc="none", label=f"d/dt E[φ], {report.names[k]}")
    verdict = "passed" if report.passed else "rejected"
    ax.set_title(f"{title}\n{verdict}: max |z| = {report.max_abs_z:.1f} "
                 f"(threshold {report.threshold:.1f})", fontsize=10)
    ax.set_xlabel("time t")
    ax.set_ylabel("value")
    ax.grid(alpha=0.3)


def max_z_bars(ax, names: Sequence[str], max_abs_z: Sequence[float],
               should_pass: Sequence[bool], *, threshold: float):
    """The largest :math:`|z|` per case as horizontal bars (log scale) against the threshold.

    Correct cases (``should_pass``) are green, deliberately wrong ones red; values below 1e-2
    are drawn at 1e-2.
    """
    values = [max(v, 1e-2) for v in max_abs_z]
    colors = ["tab:green" if ok else "tab:red" for ok in should_pass]
    ax.barh(list(names), values, color=colors)
    ax.axvline(threshold, color="k", ls="--", label=f"threshold {threshold:.2f}")
    ax.set_xscale("log")
    ax.set_xlim(0.5, 3 * max(values + [threshold]))
    for y, v in enumerate(values):
        ax.text(v * 1.08, y, f"{v:.3g}", va="center", fontsize=8)
    ax.set_xlabel("max |z| over test functions × times (seed 0)")
    ax.invert_yaxis()
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("green: correct pair (should pass); red: wrong pair (should fail)", fontsize=10)
