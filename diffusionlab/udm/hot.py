r"""Hot diffusion: Gaussian noise with the :math:`\sigma_t` family of reverse kernels.

Forward, in Su's notation (his :math:`\bar\alpha_t` is the square root of Ho et al.'s):

.. math:: x_t=\bar\alpha_t x_0+\bar\beta_t\varepsilon,\qquad
          \mathcal F_t^{-1}(x_0,x_t)=(x_t-\bar\alpha_t x_0)/\bar\beta_t .

Reverse (Gaussian-interpolation kernel with :math:`\sigma_t=\bar\beta_{t-1}\tilde\sigma_t`):

.. math:: x_{t-1}=\bar\alpha_{t-1}\hat x_0+\sqrt{\bar\beta_{t-1}^2-\sigma_t^2}\,
          \frac{x_t-\bar\alpha_t\hat x_0}{\bar\beta_t}+\sigma_t\varepsilon,
          \qquad 0\le\sigma_t\le\bar\beta_{t-1}.

Reference: 苏剑林, 生成扩散模型漫谈（十一）：统一扩散模型（应用篇）, https://kexue.fm/archives/9271
"""

from __future__ import annotations

from typing import final

import jax
import jax.numpy as jnp
import numpy as np

from diffusionlab import _checks as base
from diffusionlab.udm import _checks
from diffusionlab.udm._pytree import process_dataclass
from diffusionlab.udm.base import Process, event_mean
from diffusionlab.udm.kernels import gaussian_interpolation_kernel
from diffusionlab.udm.schedule import SCHEDULES, Schedule, _schedule, schedule


def _float_dtype(x):
    x = jnp.asarray(x)
    return x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.result_type(float)


def _sigma_values(sigma, T: int) -> np.ndarray:
    """An explicit ``sigma`` as a flat float64 array; TypeError naming ``sigma`` unless real."""
    if isinstance(sigma, (str, bytes)) or not hasattr(sigma, "__len__"):
        raise TypeError(f"sigma must be None or a tuple of T={T} real values sigma_1..sigma_T; "
                        f"got {base._describe(sigma)}")
    try:
        values = np.asarray(sigma)
    except (TypeError, ValueError):
        values = np.asarray([None])
    if values.dtype.kind not in "iuf":
        raise TypeError(f"sigma must be None or a tuple of T={T} real values sigma_1..sigma_T; "
                        f"got {base._describe(sigma)}")
    return values.astype(np.float64).reshape(-1)


@final
@process_dataclass
class HotDiffusion(Process):
    r"""Gaussian diffusion; DDPM and DDIM are presets of one :math:`\sigma_t` family.

    Notation: Su's :math:`\bar\alpha_t` is the **square root** of Ho et al.'s
    :math:`\bar\alpha_t` (and Su's :math:`\beta_t` is a standard deviation,
    :math:`\beta_t^{\rm Su}=\sqrt{\beta_t^{\rm Ho}}`); :math:`\bar\beta_t=\sqrt{1-\bar\alpha_t^2}`.

    The reverse kernel for a step ``t -> s`` uses

    .. math:: \sigma_{t\to s}=\eta\,\frac{\bar\beta_s}{\bar\beta_t}
              \sqrt{1-\bar\alpha_t^2/\bar\alpha_s^2},

    which for ``s = t - 1`` is :math:`\eta\,\bar\beta_{t-1}\beta_t/\bar\beta_t`: ``eta = 1`` is
    DDPM (Ho et al.'s posterior), ``eta = 0`` is DDIM. An explicit ``sigma`` (values
    :math:`\sigma_1..\sigma_T`) overrides ``eta``; jumps then keep the fraction
    :math:`\tilde\sigma_t=\sigma_t/\bar\beta_{t-1}`.

    The predict step uses :math:`\bar\sigma_t=0` (all presets): :math:`\hat x_0` is the
    network's mean. The network predicts :math:`\epsilon_\theta(x_t,t)`, read as
    :math:`\hat x_0=(x_t-\bar\beta_t\epsilon_\theta)/\bar\alpha_t`. The training loss is
    :math:`\|\varepsilon-\epsilon_\theta\|^2`, written in terms of :math:`\hat x_0` through the
    exact identity
    :math:`\|x_0-\hat x_0\|^2=(\bar\beta_t/\bar\alpha_t)^2\|\varepsilon-\epsilon_\theta\|^2`.

    Attributes:
      T: number of steps.
      eta: :math:`\eta\in[0,1]`.
      sigma: optional explicit :math:`(\sigma_1,\dots,\sigma_T)`, each in :math:`[0,\bar\beta_{t-1}]`.
      schedule: ``"linear"`` or ``"cosine"`` (see :func:`diffusionlab.udm.schedule.schedule`).
      event_shape: shape of one example, or ``None`` for any (the batch shape is then ``t``'s).

    Raises:
      TypeError: for a non-integer ``T``, a non-string ``schedule``, a non-real ``eta`` or
        ``sigma`` entry, or an ``event_shape`` that is not a tuple of integers (or None).
      ValueError: for ``T`` outside ``[1, 2**31 - 1]`` (or too large for memory), an unknown
        schedule, ``eta`` outside [0, 1], ``sigma`` of another length than ``T`` or with an
        entry outside :math:`[0,\bar\beta_{t-1}]` (NaN included), or an ``event_shape``
        dimension < 1.
    """

    T: int = 100
    eta: float = 1.0
    sigma: tuple[float, ...] | None = None
    schedule: str = "linear"
    event_shape: tuple[int, ...] | None = None

    def __post_init__(self):
        object.__setattr__(self, "T", _checks.check_steps(self.T))
        base.check_choice(self.schedule, "schedule", SCHEDULES)
        coefficients = schedule(self.T, self.schedule)
        object.__setattr__(self, "event_shape",
                           _checks.check_event_shape(self.event_shape, optional=True))
        base.check_real(self.eta, "eta", low=0.0, high=1.0)
        if self.sigma is not None:
            sigma = _sigma_values(self.sigma, self.T)
            if sigma.shape != (self.T,):
                raise ValueError(f"sigma must hold T={self.T} values sigma_1..sigma_T; got {sigma.shape}")
            bound = coefficients.beta_bar[:-1]
            bad = np.flatnonzero(~((sigma >= 0) & (sigma <= bound * (1 + 1e-9))))
            if bad.size:
                t = int(bad[0]) + 1
                raise ValueError(
                    f"sigma_t must lie in [0, beta_bar_(t-1)]; sigma_{t} = {sigma[t - 1]:.6g} but "
                    f"beta_bar_{t - 1} = {bound[t - 1]:.6g}"
                )
            object.__setattr__(self, "sigma", tuple(float(v) for v in sigma))

    @classmethod
    def ddpm(cls, T: int = 100, **kwargs) -> HotDiffusion:
        r"""DDPM preset: :math:`\sigma_t=\bar\beta_{t-1}\beta_t/\bar\beta_t`."""
        return cls(T=T, eta=1.0, **kwargs)

    @classmethod
    def ddim(cls, T: int = 100, **kwargs) -> HotDiffusion:
        r"""DDIM preset: :math:`\sigma_t=0` (deterministic kernel)."""
        return cls(T=T, eta=0.0, **kwargs)

    @property
    def coefficients(self) -> Schedule:
        """Su's :math:`\\alpha_t,\\beta_t,\\bar\\alpha_t,\\bar\\beta_t` as float64 arrays (index ``t``)."""
        return _schedule(self.T, self.schedule)

    def _at(self, name: str, t, like) -> jax.Array:
        table = jnp.asarray(getattr(self.coefficients, name), _float_dtype(like))
        return _checks.expand_time(table[t], like)

    # --- the reparameterised forward map (what the kernels use) -------------------------------

    def apply(self, x0, t, noise):
        r""":math:`\mathcal F_t(x_0,\varepsilon)=\bar\alpha_t x_0+\bar\beta_t\varepsilon`."""
        return self._at("alpha_bar", t, x0) * x0 + self._at("beta_bar", t, x0) * noise

    def invert(self, x0, x_t, t, *, key=None):
        r""":math:`\mathcal F_t^{-1}(x_0,x_t)=(x_t-\bar\alpha_t x_0)/\bar\beta_t` (0 at ``t = 0``)."""
        del key
        beta_bar = self._at("beta_bar", t, x_t)
        safe = jnp.where(beta_bar > 0, beta_bar, 1.0)
        return jnp.where(beta_bar > 0, (x_t - self._at("alpha_bar", t, x_t) * x0) / safe, 0.0)

    def draw_noise(self, x0, *, key):
        r""":math:`\varepsilon\sim\mathcal N(0,I)` shaped like ``x0``."""
        return jax.random.normal(key, jnp.shape(x0), _float_dtype(x0))

    # --- the reverse kernel and the loss ---------------------------------------------------------

    def reverse_sigma(self, t, s=None, *, dtype=None) -> jax.Array:
        r""":math:`\sigma_{t\to s}` of the kernel (``s = t - 1`` by default), in :math:`[0,\bar\beta_s]`.

        Raises:
          TypeError: if ``t`` or ``s`` are not integer(s).
          ValueError: unless ``1 ≤ t ≤ T`` and ``0 ≤ s < t``.
        """
        t, s = _checks.check_step(t, s, T=self.T)
        dtype = jnp.result_type(float) if dtype is None else dtype
        c = self.coefficients
        beta_bar = jnp.asarray(c.beta_bar, dtype)
        if self.sigma is not None:
            sigma = np.concatenate([[0.0], np.asarray(self.sigma)])
            previous = np.concatenate([[1.0], c.beta_bar[:-1]])
            fraction = np.where(previous > 0, sigma / np.where(previous > 0, previous, 1.0), 0.0)
            return jnp.asarray(fraction, dtype)[t] * beta_bar[s]
        alpha_bar = jnp.asarray(c.alpha_bar, dtype)
        ratio = alpha_bar[t] / alpha_bar[s]
        safe = jnp.where(beta_bar[t] > 0, beta_bar[t], 1.0)
        sigma = self.eta * beta_bar[s] / safe * jnp.sqrt(jnp.maximum(1.0 - ratio**2, 0.0))
        return jnp.minimum(sigma, beta_bar[s])

    def reverse_kernel(self, x_t, x0_hat, t, s, *, key):
        r"""The Gaussian-interpolation kernel with :math:`\tilde\sigma=\sigma_{t\to s}/\bar\beta_s`
        (see :meth:`reverse_sigma`)."""
        sigma = self.reverse_sigma(t, s, dtype=_float_dtype(x_t))
        beta_bar_s = jnp.asarray(self.coefficients.beta_bar, sigma.dtype)[s]
        sigma_tilde = jnp.where(beta_bar_s > 0, sigma / jnp.where(beta_bar_s > 0, beta_bar_s, 1.0), 0.0)
        # an explicit sigma may exceed beta_bar_(t-1) by rounding (1e-9 relative): clip to [0, 1]
        sigma_tilde = jnp.clip(sigma_tilde, 0.0, 1.0)
        return gaussian_interpolation_kernel(self, x_t, x0_hat, t, s, sigma_tilde=sigma_tilde, key=key)

    def nll(self, x0, prediction, t):
        r"""Per-example :math:`\|\varepsilon-\epsilon_\theta\|^2` (mean over the event axes).

        Written in :math:`\hat x_0` = ``prediction``:
        :math:`(\bar\alpha_t/\bar\beta_t)^2\,\|x_0-\hat x_0\|^2`, with ``t`` in ``[1, T]``.
        """
        snr = (self._at("alpha_bar", t, x0) / self._at("beta_bar", t, x0)) ** 2
        return event_mean(snr * (x0 - prediction) ** 2, t)

    def x0_from_eps(self, x_t, eps, t):
        r""":math:`\hat x_0=(x_t-\bar\beta_t\epsilon_\theta)/\bar\alpha_t` (``t`` has the batch shape).

        Raises:
          TypeError: if ``x_t`` or ``eps`` are not real float arrays or ``t`` not integer(s).
          ValueError: for ``t`` outside ``[0, T]``, mismatched shapes or (when concrete) NaN/inf.
        """
        x_t, eps = _checks.data(x_t, "x_t"), _checks.data(eps, "eps")
        t = _checks.times(t, low=0, high=self.T)
        _checks.batch_shape(x_t, self.event_shape, t, name="x_t")
        _checks.check_same_shape(x_t, eps, names=("x_t", "eps"))
        return (x_t - self._at("beta_bar", t, x_t) * eps) / self._at("alpha_bar", t, x_t)

    def from_network(self, output, x_t, t):
        r"""The network predicts :math:`\epsilon_\theta`: :math:`\hat x_0` by :meth:`x0_from_eps`."""
        return self.x0_from_eps(x_t, output, t)

    def prior(self, x0, *, key):
        r"""A draw from the terminal law :math:`\mathcal N(0,I)`, shaped like ``x0``.

        Raises:
          TypeError: if ``x0`` is not a real float array or ``key`` not a PRNG key.
          ValueError: if ``x0``'s shape does not match ``event_shape`` or it holds NaN/inf.
        """
        x0 = _checks.data(x0, "x0")
        _checks.batch_shape(x0, self.event_shape, name="x0")
        base.check_key(key)
        return self.draw_noise(x0, key=key)
