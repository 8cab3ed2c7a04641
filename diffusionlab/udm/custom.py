r"""A process from a user-supplied forward map :math:`\mathcal F_t(x_0,\varepsilon)` with Gaussian noise.

Write :math:`\mathcal F_t` (and :math:`\mathcal F_t^{-1}` for the deterministic or
interpolating kernel); the kernels, the sampler and the loss come from the framework.

Reference: 苏剑林, 生成扩散模型漫谈（十）：统一扩散模型（理论篇）, https://kexue.fm/archives/9262
"""

from __future__ import annotations

from collections.abc import Callable
from typing import final

import jax
import jax.numpy as jnp

from diffusionlab import _checks as base
from diffusionlab.udm import _checks
from diffusionlab.udm._pytree import process_dataclass
from diffusionlab.udm.base import Process, event_mean
from diffusionlab.udm.kernels import KERNELS, kernel

Array = jax.Array


@final
@process_dataclass
class CustomDiffusion(Process):
    r"""Diffusion with forward map ``F(x0, t, eps)`` and Gaussian noise; kernel chosen by name.

    Attributes:
      F: :math:`\mathcal F_t(x_0,\varepsilon)`; ``t`` arrives as a float array broadcastable
        against ``x0`` (the batch shape followed by unit axes).
      F_inverse: :math:`\mathcal F_t^{-1}(x_0,x_t)`, needed by the ``deterministic`` and
        ``gaussian_interpolation`` kernels.
      T: number of steps (``F`` at ``t = 0`` should be the identity in :math:`x_0`).
      kernel: one of ``baseline``, ``deterministic``, ``gaussian_interpolation``.
      sigma_tilde: :math:`\tilde\sigma\in[0,1]` of the interpolating kernel.
      event_shape: shape of one example, or ``None`` for any.

    The model is Gaussian, so the loss is :math:`\|x_0-\hat x_0\|^2` (mean over the event) and
    a network predicts :math:`\hat x_0` directly; the sample is the last :math:`\hat x_0`; the
    terminal law is :math:`\mathcal F_T` of data.

    Raises:
      TypeError: for a non-callable ``F`` (or ``F_inverse``), a non-string kernel, a non-real
        ``sigma_tilde``, a non-integer ``T`` or an ``event_shape`` that is not a tuple of
        integers (or None).
      ValueError: for an unknown kernel, a missing ``F_inverse``, ``sigma_tilde`` outside
        [0, 1], ``T`` outside ``[1, 2**31 - 1]`` or an ``event_shape`` dimension < 1.
    """

    F: Callable[[Array, Array, Array], Array]
    F_inverse: Callable[[Array, Array, Array], Array] | None = None
    T: int = 20
    kernel: str = "deterministic"
    sigma_tilde: float = 0.0
    event_shape: tuple[int, ...] | None = None

    def __post_init__(self):
        base.check_callable(self.F, "F")
        base.check_choice(self.kernel, "kernel", KERNELS)
        if self.F_inverse is not None:
            base.check_callable(self.F_inverse, "F_inverse")
        elif self.kernel != "baseline":
            raise ValueError(f"F_inverse is needed by the {self.kernel!r} kernel (one of {KERNELS})")
        base.check_real(self.sigma_tilde, "sigma_tilde", low=0.0, high=1.0)
        object.__setattr__(self, "T", _checks.check_steps(self.T))
        object.__setattr__(self, "event_shape",
                           _checks.check_event_shape(self.event_shape, optional=True))

    def _t(self, t, x):
        return _checks.expand_time(jnp.asarray(t, jnp.asarray(x).dtype), x)

    def apply(self, x0, t, noise):
        return self.F(x0, self._t(t, x0), noise)

    def invert(self, x0, x_t, t, *, key=None):
        del key
        return self.F_inverse(x0, x_t, self._t(t, x_t))

    def draw_noise(self, x0, *, key):
        return jax.random.normal(key, jnp.shape(x0), jnp.asarray(x0).dtype)

    def reverse_kernel(self, x_t, x0_hat, t, s, *, key):
        """The kernel named by ``kernel`` (with ``sigma_tilde`` for the interpolating one)."""
        extra = {"sigma_tilde": self.sigma_tilde} if self.kernel == "gaussian_interpolation" else {}
        return kernel(self.kernel)(self, x_t, x0_hat, t, s, key=key, **extra)

    def nll(self, x0, prediction, t):
        """Per-example :math:`\\|x_0-\\hat x_0\\|^2`, mean over the event axes."""
        return event_mean((x0 - prediction) ** 2, t)

    def prior(self, x0, *, key):
        """:math:`x_T=\\mathcal F_T(x_0,\\varepsilon)` for data ``x0`` (only the shape matters when
        :math:`\\mathcal F_T` forgets :math:`x_0`).

        Raises:
          TypeError: if ``x0`` is not a real float array or ``key`` not a PRNG key.
          ValueError: if ``x0`` has no batch axis, its shape does not match ``event_shape`` or
            it holds NaN/inf.
        """
        x0 = _checks.data(x0, "x0")
        if x0.ndim < 1:
            raise ValueError(f"x0 must be a batch (B, ...); got shape {x0.shape}")
        _checks.batch_shape(x0, self.event_shape, jnp.zeros(x0.shape[:1], jnp.int32), name="x0")
        base.check_key(key)
        return self.apply(x0, jnp.full(x0.shape[:1], self.T), self.draw_noise(x0, key=key))

    def finish(self, x_last, x0_hat):
        r"""The sample is the last :math:`\hat x_0`."""
        del x_last
        return x0_hat
