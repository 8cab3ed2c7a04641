"""What a weak-form verification returns: a verdict and the per-(test function, time) table."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class WeakFormReport:
    r"""Result of :func:`verify_fokker_planck` / :func:`verify_continuity`.

    For each test function :math:`\phi_k` and time :math:`t_i`:
    ``lhs`` estimates :math:`\frac{d}{dt}\mathbb E[\phi_k(x_t)]`, ``rhs`` estimates
    :math:`\mathbb E[\mathcal L_t\phi_k(x_t)]`, ``residual`` is the mean of their per-sample
    difference and ``standard_error`` its Monte Carlo standard error (with a central
    difference in time, combined in quadrature with that difference's numerical error), so that
    ``z = residual / standard_error`` is approximately standard normal when the equation holds.

    Attributes:
      passed: ``max_abs_z <= threshold``.
      max_abs_z: the largest :math:`|z|` over the table.
      threshold: Bonferroni two-sided normal quantile at level ``alpha`` over all cells.
      alpha: the family-wise false-rejection rate the threshold was set for.
      times: ``(T,)`` times.
      names: ``K`` test-function names.
      lhs, rhs, residual, standard_error: ``(T, K)`` arrays.
      num_samples: Monte Carlo sample size per time.
    """

    passed: bool
    max_abs_z: float
    threshold: float
    alpha: float
    times: np.ndarray
    names: tuple[str, ...]
    lhs: np.ndarray
    rhs: np.ndarray
    residual: np.ndarray
    standard_error: np.ndarray
    num_samples: int

    @property
    def z(self) -> np.ndarray:
        """``(T, K)`` z-scores of the residuals."""
        return self.residual / np.maximum(self.standard_error, np.finfo(np.float64).tiny)

    def table(self) -> list[dict]:
        """One row per (test function, time): ``phi, t, lhs, rhs, residual, standard_error, z``."""
        z = self.z
        return [
            {
                "phi": name,
                "t": float(t),
                "lhs": float(self.lhs[i, k]),
                "rhs": float(self.rhs[i, k]),
                "residual": float(self.residual[i, k]),
                "standard_error": float(self.standard_error[i, k]),
                "z": float(z[i, k]),
            }
            for k, name in enumerate(self.names)
            for i, t in enumerate(self.times)
        ]

    def __str__(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        return (
            f"weak form {verdict}: max |z| = {self.max_abs_z:.2f} (threshold {self.threshold:.2f}, "
            f"{len(self.names)} test functions × {len(self.times)} times, "
            f"{self.num_samples} samples each)"
        )
