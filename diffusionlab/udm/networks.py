r"""Networks as :math:`\hat x_0` predictors for each process, built from :mod:`diffusionlab.nn`.

The network reads what the process's head gives it (``process.network_input``: the states, or
one-hot tokens) with ``process.network_channels`` channels per position, and its raw output
becomes the prediction through ``process.from_network`` (see :class:`diffusionlab.udm.Process`):

* hot: :math:`\epsilon_\theta(x_t,t)`, read as
  :math:`\hat x_0=(x_t-\bar\beta_t\epsilon_\theta)/\bar\alpha_t`;
* cold: a residual, :math:`\mathcal G_t(x_t)=x_t+f_\theta(x_t,t)`;
* edit / mask: logits of :math:`q(x_0\mid x_t)` per position; for mask the visible tokens are
  copied (their logits are a one-hot), so only masked positions are predicted;
* encoder: a decoder from the latent :math:`x_t` to data space; the encoder
  :math:`\mathcal F_\phi` is a second network (see :func:`make_encoder`);
* custom (and a new process, by default): :math:`\hat x_0` itself.

The network sees the time as :math:`t/T\in[0,1]`.

Reference: 苏剑林, 生成扩散模型漫谈（十一）：统一扩散模型（应用篇）, https://kexue.fm/archives/9271
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from diffusionlab import nn
from diffusionlab.udm import _checks


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """Network size: ``kind`` is ``"mlp"`` (any data, flattened) or ``"unet"`` (8×8 images and tokens)."""

    kind: str = "mlp"
    hidden: int = 256
    depth: int = 3
    base: int = 32
    latent_dim: int | None = None  # encoder latent size; default: the data dimension

    def __post_init__(self):
        if self.kind not in ("mlp", "unet"):
            raise ValueError(f"kind must be 'mlp' or 'unet'; got {self.kind!r}")


def make_network(process, data_shape, config: NetworkConfig, *, key):
    """``(apply, params)`` with ``apply(params, x_t, t_over_T) -> raw output`` for ``process``.

    An MLP of the process's ``network_sizes``, or, for ``config.kind == "unet"`` and a process
    with a ``spatial_network``, a U-Net over 8×8 positions with ``max(c_in, c_out)`` channels.

    Args:
      process: the :class:`~diffusionlab.udm.Process` the network serves.
      data_shape: shape of one data example (used when the process has no ``event_shape``).
      config: a :class:`NetworkConfig`.
      key: PRNG key for initialisation.

    Raises:
      TypeError: if ``process`` is not a UDM process.
      ValueError: for a U-Net on data without 64 values per example.
    """
    _checks.check_process(process)
    rngs = nnx.Rngs(key)
    if config.kind == "unet" and process.spatial_network:
        shape = tuple(process.event_shape) if process.event_shape else tuple(data_shape)
        if math.prod(shape) != 64:
            raise ValueError(f"the U-Net serves 8x8 data (64 values per example); got shape {shape}")
        module = nn.UNet(max(process.network_channels), base=config.base, rngs=rngs)
    else:
        size_in, size_out = process.network_sizes(tuple(data_shape))
        module = nn.MLP(size_in, size_out, hidden=config.hidden, depth=config.depth, rngs=rngs)
    return nn.pure(module)


def make_encoder(data_shape, config: NetworkConfig, *, key):
    r"""``(encode, params)`` for :class:`EncoderDiffusion`: an MLP :math:`x_0\mapsto z` (time input 0)."""
    size = math.prod(data_shape)
    latent = config.latent_dim or size
    rngs = nnx.Rngs(key)
    apply, params = nn.pure(nn.MLP(size, latent, hidden=config.hidden, depth=config.depth, rngs=rngs))
    return _Encoder(apply), params


@dataclasses.dataclass(frozen=True)
class _Encoder:
    """A hashable ``encode(params, x0_B) -> z_BxD`` around a pure MLP."""

    apply: object

    def __call__(self, params, x0):
        batch = x0.shape[0]
        flat = x0.reshape(batch, -1)
        z = self.apply(params, flat, jnp.zeros((batch,)))
        # the MLP's head starts at zero, so a residual makes the initial encoding the data itself
        return z + flat if z.shape == flat.shape else z


def _run(apply, params, x, t_unit, config_kind, c_in, c_out):
    batch = x.shape[0]
    if config_kind == "unet":
        image = x.reshape(batch, 8, 8, c_in)
        if c_in < c_out:
            image = jnp.pad(image, ((0, 0), (0, 0), (0, 0), (0, c_out - c_in)))
        out = apply(params, image, t_unit)[..., :c_out]
    else:
        out = apply(params, x.reshape(batch, -1), t_unit)
    return out


def predict(process, apply, params, x_t, t, *, kind: str = "mlp"):
    """The prediction the sampler and the loss expect (:math:`\\hat x_0`, or logits), from a network.

    ``x_t`` is a batch of states, ``t`` integer times with the batch shape; ``kind`` is the
    :class:`NetworkConfig` kind the network was made with.
    """
    t_unit = jnp.asarray(t, jnp.float32) / process.T
    c_in, c_out = process.network_channels
    kind = kind if process.spatial_network else "mlp"
    out = _run(apply, params, process.network_input(x_t), t_unit, kind, c_in, c_out)
    return process.from_network(out.reshape(process.network_output_shape(x_t)), x_t, t)


def predictor(process, apply, params, *, kind: str = "mlp"):
    """``predict_x0(x_t, t)`` for :func:`diffusionlab.udm.sample`, as a pytree (parameters traced)."""
    return jax.tree_util.Partial(_predict_partial, process, apply, kind, params)


def _predict_partial(process, apply, kind, params, x_t, t):
    return predict(process, apply, params, x_t, t, kind=kind)
