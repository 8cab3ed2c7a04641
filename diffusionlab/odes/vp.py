r"""The variance-preserving (VP) probability-flow ODE, the Gaussian baseline.

:math:`x_t = \alpha_t x_0 + \sigma_t\varepsilon` with :math:`\alpha_t = e^{-\frac12\int_0^t\beta}`,
:math:`\sigma_t^2 = 1 - \alpha_t^2` and :math:`\beta(t) = \beta_\min + t(\beta_\max - \beta_\min)`
on :math:`t\in[0, 1]`. With a noise predictor :math:`\varepsilon_\theta` (score
:math:`-\varepsilon_\theta/\sigma_t`) the probability-flow ODE is

.. math:: \frac{\mathrm dx}{\mathrm dt}
          = -\tfrac12\beta(t)\Big(x - \frac{\varepsilon_\theta(x, t)}{\sigma_t}\Big),

integrated from :math:`\mathcal N(0, I)` at :math:`t = 1`. The schedule is the shared
:class:`diffusionlab.schedules.VPSchedule` (re-exported here). It is the Gaussian member of the
isotropic family after a change of variables (Su, https://kexue.fm/archives/9370).

Reference: Song et al., *Score-Based Generative Modeling through SDEs*, arXiv:2011.13456.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from diffusionlab import _checks
from diffusionlab.odes._checks import float_input, saturating_cast
from diffusionlab.schedules import VPSchedule

__all__ = ["VPSchedule", "probability_flow", "vp_loss"]

_DEFAULT_SCHEDULE = VPSchedule()  # DDPM's (0.1, 20)


def _expand(t, x):
    return jnp.reshape(t, jnp.shape(t) + (1,) * (x.ndim - jnp.ndim(t)))


def _check_schedule(schedule):
    if not isinstance(schedule, VPSchedule):
        raise TypeError(f"schedule must be a VPSchedule; got {type(schedule).__name__}")


def vp_loss(noise_model: Callable, x0, *, key, schedule: VPSchedule = _DEFAULT_SCHEDULE,
            t_min: float = 1e-3) -> jax.Array:
    r"""Per-example noise-prediction loss :math:`\|\varepsilon_\theta(x_t, t) - \varepsilon\|^2`,
    :math:`t\sim U[t_\min, 1]`.

    Args:
      noise_model: ``eps(x_t, t_B)``, returning an array shaped like ``x_t``.
      x0: ``(B, ...)`` data; key: PRNG key; schedule: a :class:`VPSchedule`;
      t_min: in :math:`(0, 1]`.

    Returns:
      ``(B,)``, in ``x0``'s dtype (computed in at least float32).

    Raises:
      TypeError, ValueError: naming the bad argument.
    """
    _checks.check_callable(noise_model, "noise_model")
    x0, dtype = float_input(x0, "x0")
    if x0.ndim < 1:
        raise ValueError(f"x0 must have shape (B, ...); got {x0.shape}")
    _checks.check_key(key)
    _check_schedule(schedule)
    t_min = _checks.check_real(t_min, "t_min", low=0.0, high=1.0, low_open=True)
    key_t, key_e = jax.random.split(key)
    t = jax.random.uniform(key_t, x0.shape[:1], x0.dtype, t_min, 1.0)
    eps = jax.random.normal(key_e, x0.shape, x0.dtype)
    x_t = _expand(jnp.exp(schedule.log_alpha(t)), x0) * x0 + _expand(schedule.sigma(t), x0) * eps
    prediction = jnp.asarray(noise_model(x_t, t))
    if prediction.shape != x0.shape:
        raise ValueError(f"noise_model(x_t, t) must return an array shaped like x0 {x0.shape}; "
                         f"got {prediction.shape}")
    residual = prediction.astype(x0.dtype) - eps
    per_example = residual.reshape(x0.shape[0], math.prod(x0.shape[1:]))
    return saturating_cast(jnp.sum(per_example**2, axis=1), dtype)


def probability_flow(noise_model: Callable, schedule: VPSchedule = _DEFAULT_SCHEDULE) -> Callable:
    """The PF-ODE velocity ``v(x, t)`` (scalar ``t``) of a noise predictor
    ``noise_model(x, t_B)``.

    Raises:
      TypeError: a non-callable ``noise_model`` or a ``schedule`` that is not a
        :class:`VPSchedule`.
    """
    _checks.check_callable(noise_model, "noise_model")
    _check_schedule(schedule)

    def velocity(x, t):
        t_b = jnp.broadcast_to(t, x.shape[:1])
        return -0.5 * schedule.beta(t) * (x - noise_model(x, t_b) / schedule.sigma(t))

    return velocity
