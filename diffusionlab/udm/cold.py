r"""Cold diffusion: a deterministic degradation plus an optional small Gaussian noise.

.. math:: x_t=\mathcal F_t(x_0,e)=D_t(x_0)+e,\qquad e\sim\mathcal N(0,\sigma^2 I).

Writing the noise as :math:`e=\sigma\varepsilon` keeps the inverse
:math:`\mathcal F_t^{-1}(x_0,x_t)=x_t-D_t(x_0)` defined at :math:`\sigma=0`, so the generic
kernels apply unchanged: the **naive** sampler is the baseline kernel
(:math:`x_{t-1}=D_{t-1}(\hat x_0)+e'`) and the **improved** one (Bansal et al.'s Algorithm 2) is
the deterministic kernel, :math:`x_{t-1}=x_t+D_{t-1}(\hat x_0)-D_t(\hat x_0)`, in which
:math:`\sigma` cancels.

Reference: 苏剑林, 生成扩散模型漫谈（十一）：统一扩散模型（应用篇）, https://kexue.fm/archives/9271;
Bansal et al., *Cold Diffusion*, arXiv:2208.09392.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from diffusionlab import _checks as base
from diffusionlab.udm import _checks
from diffusionlab.udm._pytree import process_dataclass
from diffusionlab.udm.degradations import DEGRADATIONS, check_pool_shape, degrade
from diffusionlab.udm.kernels import baseline_kernel, deterministic_kernel

COLD_SAMPLERS = ("naive", "improved")


@process_dataclass
class ColdDiffusion:
    r"""Cold diffusion with degradation ``blur``, ``mask`` or ``pool`` and noise scale ``sigma``.

    The model is a Laplace law :math:`q(x_0\mid x_t)\propto\exp(-\|x_0-\mathcal G_t(x_t)\|_1/\tau)`
    with :math:`\tau\to0`, so the loss is :math:`\|x_0-\mathcal G_t(x_t)\|_1` and
    :math:`\hat x_0=\mathcal G_t(x_t)`. With ``sigma > 0`` the last improved iterate still
    carries the forward noise :math:`\sigma\varepsilon`, so the sample is the last
    :math:`\hat x_0`.

    Attributes:
      degradation: one of ``"blur"``, ``"mask"``, ``"pool"`` (see :mod:`.degradations`).
      sigma: the forward noise scale :math:`\sigma\ge0`.
      sampler: ``"improved"`` (deterministic kernel) or ``"naive"`` (baseline kernel).
      T: number of steps; :math:`D_t` has level ``t / T``.
      event_shape: shape of one example, ``(H, W, C)`` images or ``(D,)`` vectors.

    Raises:
      TypeError: for a non-string degradation or sampler, a non-real ``sigma``, a non-integer
        ``T`` or an ``event_shape`` that is not a tuple of integers.
      ValueError: for an unknown degradation or sampler, ``sigma`` negative or not finite,
        ``T`` outside ``[1, 2**31 - 1]``, an ``event_shape`` dimension < 1, or ``pool`` on
        spatial sizes that are not equal powers of two.
    """

    degradation: str = "blur"
    sigma: float = 0.0
    sampler: str = "improved"
    T: int = 20
    event_shape: tuple[int, ...] = (8, 8, 1)

    def __post_init__(self):
        base.check_choice(self.degradation, "degradation", DEGRADATIONS)
        base.check_real(self.sigma, "sigma", low=0.0)
        base.check_choice(self.sampler, "sampler", COLD_SAMPLERS)
        object.__setattr__(self, "T", _checks.check_steps(self.T))
        object.__setattr__(self, "event_shape", _checks.check_event_shape(self.event_shape))
        if self.degradation == "pool":
            check_pool_shape(self.event_shape)

    def degrade(self, x0, t):
        """:math:`D_t(x_0)` at level ``t / T`` (``t``: integer time(s) in ``[0, T]``, a scalar or
        the batch shape).

        Raises:
          TypeError: if ``x0`` is not a real float array or ``t`` not integer(s).
          ValueError: for ``t`` outside ``[0, T]``, a shape that does not match or (when
            concrete) NaN/inf in ``x0``.
        """
        x0, t, batch = _checks.forward_inputs(self, x0, t)
        return self._degrade(x0, jnp.broadcast_to(t, batch))

    def _degrade(self, x0, t):
        x0 = jnp.asarray(x0)
        level = jnp.asarray(t, x0.dtype) / self.T
        return degrade(self.degradation, x0, level, self.event_shape)

    # --- the reparameterised forward map ------------------------------------------------------

    def apply(self, x0, t, noise):
        r""":math:`\mathcal F_t(x_0,e)=D_t(x_0)+e`."""
        return self._degrade(x0, t) + noise

    def invert(self, x0, x_t, t, *, key=None):
        r""":math:`\mathcal F_t^{-1}(x_0,x_t)=x_t-D_t(x_0)` (the noise :math:`e=\sigma\varepsilon`)."""
        del key
        return x_t - self._degrade(x0, t)

    def draw_noise(self, x0, *, key):
        r""":math:`e=\sigma\varepsilon`, :math:`\varepsilon\sim\mathcal N(0,I)`."""
        return self.sigma * jax.random.normal(key, jnp.shape(x0), jnp.asarray(x0).dtype)

    # --- public API ---------------------------------------------------------------------------

    def forward(self, x0, t, *, key):
        r"""Draws :math:`x_t=D_t(x_0)+\sigma\varepsilon` (in float32 for half-precision ``x0``).

        Raises:
          TypeError: if ``x0`` is not a real float array, ``t`` not integer(s) or ``key`` not
            a PRNG key.
          ValueError: if ``t`` is outside ``[0, T]``, ``x0``'s shape does not match or (when
            concrete) ``x0`` holds NaN/inf.
        """
        x0, t, batch = _checks.forward_inputs(self, x0, t, key)
        return self.apply(x0, jnp.broadcast_to(t, batch), self.draw_noise(x0, key=key))

    def reverse_step(self, x_t, x0_hat, t, *, key, s=None):
        r"""One reverse step :math:`x_t\to x_s` (``s = t - 1`` by default) with the chosen sampler.

        ``improved``: :math:`x_s=x_t+D_s(\hat x_0)-D_t(\hat x_0)`;
        ``naive``: :math:`x_s=D_s(\hat x_0)+\sigma\varepsilon'`.

        Raises:
          TypeError: if ``x_t`` or ``x0_hat`` are not real float arrays, the times not
            integers or ``key`` not a PRNG key (checked for both samplers).
          ValueError: for times out of range, mismatched shapes or (when concrete) NaN/inf.
        """
        x_t, x0_hat, t, s = _checks.reverse_inputs(x_t, x0_hat, t, s, event_shape=self.event_shape,
                                                   T=self.T, key=key)
        kernel = deterministic_kernel if self.sampler == "improved" else baseline_kernel
        return kernel(self, x_t, x0_hat, t, s, key=key)

    def loss(self, x0, prediction, t):
        r"""Per-example :math:`\|x_0-\mathcal G_t(x_t)\|_1` / dimension (``prediction``: :math:`\hat x_0`).

        ``t`` (integer time(s) in ``[1, T]``, the training range) is checked, not used.

        Raises:
          TypeError: if ``x0`` or ``prediction`` are not real float arrays or ``t`` not integer(s).
          ValueError: for ``t`` outside ``[1, T]``, mismatched shapes or (when concrete) NaN/inf.
        """
        x0, t, batch = _checks.forward_inputs(self, x0, t, t_low=1)
        prediction = _checks.data(prediction, "prediction")
        _checks.check_same_shape(x0, prediction, names=("x0", "prediction"))
        return jnp.mean(jnp.abs(x0 - prediction), axis=tuple(range(len(batch), x0.ndim)))

    # --- what the generic sampler needs -------------------------------------------------------

    def draw_x0(self, prediction, x_t, t, *, key):
        r""":math:`\hat x_0=\mathcal G_t(x_t)` (the :math:`\tau\to0` mode of the Laplace law)."""
        del x_t, t, key
        return prediction

    def prior(self, x0, *, key):
        r"""The terminal law is the degraded data: :math:`x_T=D_T(x_0)+\sigma\varepsilon` for data ``x0``.

        Pass data the model did not see at test time (e.g. a shuffled training batch).

        Raises:
          TypeError: if ``x0`` is not a real float array or ``key`` not a PRNG key.
          ValueError: if ``x0``'s shape does not match ``event_shape`` or it holds NaN/inf.
        """
        x0 = _checks.data(x0, "x0")
        batch = _checks.batch_shape(x0, self.event_shape, name="x0")
        return self.forward(x0, jnp.full(batch, self.T), key=key)

    def finish(self, x_last, x0_hat):
        r"""The sample: :math:`x_0` for :math:`\sigma=0`, the last :math:`\hat x_0` for :math:`\sigma>0`."""
        return x0_hat if self.sigma > 0 else x_last
