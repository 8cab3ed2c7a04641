r"""The encoder model: Gaussian diffusion on a trainable encoding :math:`\mathcal F_\phi(x_0)`.

.. math:: x_t=\bar\alpha_t\,\mathcal F_\phi(x_0)+\bar\beta_t\varepsilon,\qquad
          \mathcal F_t^{-1}(x_0,x_t)=\big(x_t-\bar\alpha_t\mathcal F_\phi(x_0)\big)/\bar\beta_t,

so the reverse step is hot diffusion's :math:`\sigma_t` kernel with :math:`\hat x_0` replaced
by :math:`\mathcal F_\phi(\hat x_0)`; the sample is the last :math:`\hat x_0` (data space).

**Scale.** The loss alone rewards an encoder large enough to drown the noise, after which
:math:`x_T` is no longer :math:`\mathcal N(0,I)`. We bound it by construction: the raw
encoding :math:`z` is normalised to root-mean-square one per example,
:math:`\mathcal F_\phi(x_0)=z\sqrt{d}/\|z\|`, matching the unit-variance prior.

Reference: 苏剑林, 生成扩散模型漫谈（十一）：统一扩散模型（应用篇）, https://kexue.fm/archives/9271
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, final

import jax
import jax.numpy as jnp

from diffusionlab import _checks as base
from diffusionlab.udm import _checks
from diffusionlab.udm._pytree import process_dataclass
from diffusionlab.udm.base import Process, event_mean
from diffusionlab.udm.hot import HotDiffusion


def identity_encoder(params, x0):
    """The untrained default: the flattened data itself (``params`` unused)."""
    del params
    return x0.reshape(x0.shape[0], math.prod(x0.shape[1:]))


@final
@process_dataclass(data_fields=("encoder_params",))
class EncoderDiffusion(Process):
    r"""Hot diffusion on :math:`\mathcal F_\phi(x_0)`, with :math:`\phi` = ``encoder_params`` trained jointly.

    The network is a decoder from the latent :math:`x_t` to data space (an MLP: the latent has
    no spatial layout), and the sample is its last :math:`\hat x_0`.

    Attributes:
      encode: ``encode(params, x0_B) -> z_BxD``, a batched function of data with shape
        ``(B,) + event_shape`` (static: keep the same function object to avoid retracing).
      encoder_params: :math:`\phi`, any pytree (a leaf: differentiable and traced under ``jit``).
      event_shape: shape of one data example.
      T, eta, sigma, schedule: the latent hot diffusion (see :class:`HotDiffusion`).

    Raises:
      TypeError: for a non-callable ``encode``, an ``event_shape`` that is not a tuple of
        integers, and as :class:`HotDiffusion` for the schedule arguments.
      ValueError: for an ``event_shape`` dimension < 1, and as :class:`HotDiffusion` for the
        schedule arguments.
    """

    encode: Callable[[Any, jax.Array], jax.Array] = identity_encoder
    encoder_params: Any = None
    event_shape: tuple[int, ...] = (8, 8, 1)
    T: int = 100
    eta: float = 1.0
    sigma: tuple[float, ...] | None = None
    schedule: str = "linear"

    spatial_network = False  # the network reads a latent vector: an MLP, whatever the config

    def __post_init__(self):
        base.check_callable(self.encode, "encode")
        object.__setattr__(self, "event_shape", _checks.check_event_shape(self.event_shape))
        _ = self.latent  # builds, and so validates, the latent process

    @property
    def latent(self) -> HotDiffusion:
        """The hot diffusion acting on the encoding."""
        return HotDiffusion(T=self.T, eta=self.eta, sigma=self.sigma, schedule=self.schedule)

    # --- parts trained with the network ---------------------------------------------------------

    @property
    def trainable_params(self) -> Any:
        r""":math:`\phi`, trained jointly with the decoder."""
        return self.encoder_params

    def with_params(self, encoder_params) -> EncoderDiffusion:
        """The same process with new encoder parameters."""
        return dataclasses.replace(self, encoder_params=encoder_params)

    def initialised(self, data_shape, network, *, key) -> EncoderDiffusion:
        """The process with a fresh MLP encoder (:func:`~diffusionlab.udm.networks.make_encoder`)
        for examples of ``data_shape``."""
        from diffusionlab.udm.networks import make_encoder  # networks builds on the contract

        encode, encoder_params = make_encoder(data_shape, network, key=key)
        return dataclasses.replace(self, encode=encode, encoder_params=encoder_params,
                                   event_shape=tuple(data_shape))

    def encoding(self, x0):
        r""":math:`\mathcal F_\phi(x_0)=z\sqrt d/\|z\|`, :math:`z` = ``encode(params, x0)``.

        Raises:
          TypeError: if ``x0`` is not a real float array.
          ValueError: if ``x0``'s shape is not ``batch + event_shape`` or (when concrete) it
            holds NaN/inf.
        """
        return self._encoding(_checks.data(x0, "x0"))

    def _encoding(self, x0):
        x0 = jnp.asarray(x0)
        batch = _checks.batch_shape(x0, self.event_shape, name="x0")
        z = self.encode(self.encoder_params, x0.reshape((-1,) + self.event_shape))
        z = z.reshape(z.shape[0], math.prod(z.shape[1:]))
        # eps guards the all-zero encoding; it is far below any trained encoding's norm
        z = z * jax.lax.rsqrt(jnp.mean(z**2, axis=-1, keepdims=True) + 1e-12)
        return z.reshape(batch + z.shape[1:])

    # --- the reparameterised forward map ------------------------------------------------------

    def apply(self, x0, t, noise):
        return self.latent.apply(self._encoding(x0), t, noise)

    def invert(self, x0, x_t, t, *, key=None):
        return self.latent.invert(self._encoding(x0), x_t, t, key=key)

    def draw_noise(self, x0, *, key):
        z = jax.eval_shape(self._encoding, x0)
        return jax.random.normal(key, z.shape, z.dtype)

    # --- the reverse step, the loss and the network head ----------------------------------------

    def reverse_step(self, x_t, x0_hat, t, *, key, s=None):
        r"""One latent reverse step :math:`x_t\to x_s`, using :math:`\mathcal F_\phi(\hat x_0)`.

        Raises:
          TypeError: if ``x_t`` or ``x0_hat`` are not real float arrays, the times not
            integers or ``key`` not a PRNG key.
          ValueError: for times out of range, shapes that do not match the process or (when
            concrete) NaN/inf.
        """
        x_t, x0_hat = _checks.data(x_t, "x_t"), _checks.data(x0_hat, "x0_hat")
        t, s = _checks.check_step(t, s, T=self.T)
        batch = _checks.batch_shape(x0_hat, self.event_shape, t, name="x0_hat")
        if jnp.shape(s) not in ((), batch):
            raise ValueError(f"s must be a scalar or have the batch shape {batch} of x0_hat; "
                             f"got shape {jnp.shape(s)}")
        base.check_key(key)
        latent = self._encoding(x0_hat)
        _checks.check_same_shape(x_t, latent, names=("x_t", "encoding of x0_hat"))
        t, s = jnp.broadcast_to(t, batch), jnp.broadcast_to(s, batch)
        return self.latent.reverse_step(x_t, latent, t, key=key, s=s)

    def nll(self, x0, prediction, t):
        r"""Per-example :math:`\|x_0-\mathcal G_t(x_t)\|^2` (mean over the event): a Gaussian
        decoder; ``t`` is not used."""
        return event_mean((x0 - prediction) ** 2, t)

    def network_sizes(self, data_shape) -> tuple[int, int]:
        """The decoder's sizes: the encoding's dimension in, one example out."""
        del data_shape
        example = jax.ShapeDtypeStruct((1,) + self.event_shape, jnp.float32)
        return int(jax.eval_shape(self._encoding, example).shape[-1]), math.prod(self.event_shape)

    def network_output_shape(self, x_t) -> tuple[int, ...]:
        return tuple(jnp.shape(x_t)[:1]) + self.event_shape

    def state_shape(self, x0_shape) -> tuple[int, ...]:
        """The latents' shape: the batch axes of ``x0_shape``, then the encoding's dimension."""
        example = jax.ShapeDtypeStruct(tuple(x0_shape), jnp.float32)
        return tuple(jax.eval_shape(self._encoding, example).shape)

    # --- what the generic sampler needs -------------------------------------------------------

    def prior(self, x0, *, key):
        r""":math:`\mathcal N(0,I)` latents, one per example of the data batch ``x0``.

        Raises:
          TypeError: if ``x0`` is not a real float array or ``key`` not a PRNG key.
          ValueError: if ``x0``'s shape is not ``batch + event_shape`` or it holds NaN/inf.
        """
        x0 = _checks.data(x0, "x0")
        _checks.batch_shape(x0, self.event_shape, name="x0")
        base.check_key(key)
        return self.draw_noise(x0, key=key)

    def finish(self, x_last, x0_hat):
        r"""The sample is the last decoded :math:`\hat x_0`."""
        del x_last
        return x0_hat
