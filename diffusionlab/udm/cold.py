r"""Cold diffusion: a deterministic degradation plus an optional small Gaussian noise.

.. math:: x_t=\mathcal F_t(x_0,e)=D_t(x_0)+e,\qquad e\sim\mathcal N(0,\sigma^2 I).

Writing the noise as :math:`e=\sigma\varepsilon` keeps the inverse
:math:`\mathcal F_t^{-1}(x_0,x_t)=x_t-D_t(x_0)` defined at :math:`\sigma=0`, so the generic
kernels apply unchanged: Bansal et al.'s **naive** sampler is the baseline kernel
(:math:`x_{t-1}=D_{t-1}(\hat x_0)+e'`) and their **improved** one (Algorithm 2) is the
deterministic kernel, :math:`x_{t-1}=x_t+D_{t-1}(\hat x_0)-D_t(\hat x_0)`, in which
:math:`\sigma` cancels.

Reference: 苏剑林, 生成扩散模型漫谈（十一）：统一扩散模型（应用篇）, https://kexue.fm/archives/9271;
Bansal et al., *Cold Diffusion*, arXiv:2208.09392.
"""

from __future__ import annotations

from typing import final

import jax
import jax.numpy as jnp

from diffusionlab import _checks as base
from diffusionlab.udm import _checks
from diffusionlab.udm._pytree import process_dataclass
from diffusionlab.udm.base import Process, event_mean
from diffusionlab.udm.degradations import DEGRADATIONS, check_pool_shape, degrade

#: The reverse kernels of cold diffusion: ``"deterministic"`` is Bansal et al.'s improved
#: sampler (Algorithm 2), ``"baseline"`` their naive one.
COLD_KERNELS = ("deterministic", "baseline")


@final
@process_dataclass
class ColdDiffusion(Process):
    r"""Cold diffusion with degradation ``blur``, ``mask`` or ``pool`` and noise scale ``sigma``.

    The model is a Laplace law :math:`q(x_0\mid x_t)\propto\exp(-\|x_0-\mathcal G_t(x_t)\|_1/\tau)`
    with :math:`\tau\to0`, so the loss is :math:`\|x_0-\mathcal G_t(x_t)\|_1` and
    :math:`\hat x_0=\mathcal G_t(x_t)`. With ``sigma > 0`` the last improved iterate still
    carries the forward noise :math:`\sigma\varepsilon`, so the sample is the last
    :math:`\hat x_0`.

    Attributes:
      degradation: one of ``"blur"``, ``"mask"``, ``"pool"`` (see :mod:`.degradations`).
      sigma: the forward noise scale :math:`\sigma\ge0`.
      kernel: ``"deterministic"`` (Bansal et al.'s improved sampler) or ``"baseline"`` (their
        naive sampler).
      T: number of steps; :math:`D_t` has level ``t / T``.
      event_shape: shape of one example, ``(H, W, C)`` images or ``(D,)`` vectors.

    Raises:
      TypeError: for a non-string degradation or kernel, a non-real ``sigma``, a non-integer
        ``T`` or an ``event_shape`` that is not a tuple of integers.
      ValueError: for an unknown degradation or kernel, ``sigma`` negative or not finite,
        ``T`` outside ``[1, 2**31 - 1]``, an ``event_shape`` dimension < 1, or ``pool`` on
        spatial sizes that are not equal powers of two.
    """

    degradation: str = "blur"
    sigma: float = 0.0
    kernel: str = "deterministic"
    T: int = 20
    event_shape: tuple[int, ...] = (8, 8, 1)

    def __post_init__(self):
        base.check_choice(self.degradation, "degradation", DEGRADATIONS)
        base.check_real(self.sigma, "sigma", low=0.0)
        base.check_choice(self.kernel, "kernel", COLD_KERNELS)
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

    # --- the loss and the network head ---------------------------------------------------------

    def nll(self, x0, prediction, t):
        r"""Per-example :math:`\|x_0-\mathcal G_t(x_t)\|_1` / dimension (``prediction``: :math:`\hat x_0`);
        ``t`` is not used."""
        return event_mean(jnp.abs(x0 - prediction), t)

    def from_network(self, output, x_t, t):
        r"""A residual network: :math:`\mathcal G_t(x_t)=x_t+f_\theta(x_t,t)`."""
        del t
        return x_t + output

    # --- what the generic sampler needs -------------------------------------------------------

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
