r"""Networks as :math:`\hat x_0` predictors for each process, built from :mod:`diffusionlab.nn`.

What the network outputs, per process (the parameterisation the essay derives):

* hot: :math:`\epsilon_\theta(x_t,t)`, read as
  :math:`\hat x_0=(x_t-\bar\beta_t\epsilon_\theta)/\bar\alpha_t`;
* cold: a residual, :math:`\mathcal G_t(x_t)=x_t+f_\theta(x_t,t)`;
* edit / mask: logits of :math:`q(x_0\mid x_t)` per position; for mask the visible tokens are
  copied (their logits are a one-hot), so only masked positions are predicted;
* encoder: a decoder from the latent :math:`x_t` to data space; the encoder
  :math:`\mathcal F_\phi` is a second network (see :func:`make_encoder`).

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
from diffusionlab.udm.cold import ColdDiffusion
from diffusionlab.udm.edit import EditDiffusion
from diffusionlab.udm.encoder import EncoderDiffusion
from diffusionlab.udm.hot import HotDiffusion
from diffusionlab.udm.mask import MaskDiffusion


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


def _data_shape(process, data_shape):
    return tuple(process.event_shape) if getattr(process, "event_shape", None) else tuple(data_shape)


def _channels_in_out(process) -> tuple[int, int]:
    """Per-position input and output channels."""
    if isinstance(process, MaskDiffusion):
        return process.vocab + 1, process.vocab
    if isinstance(process, EditDiffusion):
        return process.vocab, process.vocab
    return 1, 1


def make_network(process, data_shape, config: NetworkConfig, *, key):
    """``(apply, params)`` with ``apply(params, x_t, t_over_T) -> raw output`` for ``process``.

    Args:
      process: the process the network serves.
      data_shape: shape of one data example (used when the process has no ``event_shape``).
      config: a :class:`NetworkConfig`.
      key: PRNG key for initialisation.
    """
    rngs = nnx.Rngs(int(jax.random.randint(key, (), 0, 2**30)))
    shape = _data_shape(process, data_shape)
    c_in, c_out = _channels_in_out(process)
    if isinstance(process, EncoderDiffusion):
        latent = config.latent_dim or math.prod(shape)
        module = nn.MLP(latent, math.prod(shape), hidden=config.hidden, depth=config.depth, rngs=rngs)
        return nn.pure(module)
    size = math.prod(shape)
    if config.kind == "unet":
        if size != 64:
            raise ValueError(f"the U-Net serves 8x8 data (64 values per example); got shape {shape}")
        module = nn.UNet(max(c_in, c_out), base=config.base, rngs=rngs)
    else:
        module = nn.MLP(size * c_in, size * c_out, hidden=config.hidden, depth=config.depth, rngs=rngs)
    return nn.pure(module)


def make_encoder(data_shape, config: NetworkConfig, *, key):
    r"""``(encode, params)`` for :class:`EncoderDiffusion`: an MLP :math:`x_0\mapsto z` (time input 0)."""
    size = math.prod(data_shape)
    latent = config.latent_dim or size
    rngs = nnx.Rngs(int(jax.random.randint(key, (), 0, 2**30)))
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
    """The prediction the sampler and the loss expect (:math:`\\hat x_0`, or logits), from a network."""
    batch = x_t.shape[0]
    t_unit = jnp.asarray(t, jnp.float32) / process.T
    c_in, c_out = _channels_in_out(process)
    if isinstance(process, (EditDiffusion, MaskDiffusion)):
        x = jax.nn.one_hot(x_t, c_in)
        logits = _run(apply, params, x, t_unit, kind, c_in, c_out).reshape(x_t.shape + (c_out,))
        if isinstance(process, MaskDiffusion):
            visible = (x_t != process.mask_id)[..., None]
            logits = jnp.where(visible, 100.0 * jax.nn.one_hot(x_t, c_out), logits)
        return logits
    out = _run(apply, params, x_t, t_unit, kind, 1, 1)
    if isinstance(process, EncoderDiffusion):
        return out.reshape((batch,) + process.event_shape)
    out = out.reshape(x_t.shape)
    if isinstance(process, HotDiffusion):
        return process.x0_from_eps(x_t, out, t)
    if isinstance(process, ColdDiffusion):
        return x_t + out
    raise TypeError(f"no network parameterisation for {type(process).__name__}")


def predictor(process, apply, params, *, kind: str = "mlp"):
    """``predict_x0(x_t, t)`` for :func:`diffusionlab.udm.sample`, as a pytree (parameters traced)."""
    return jax.tree_util.Partial(_predict_partial, process, apply, kind, params)


def _predict_partial(process, apply, kind, params, x_t, t):
    return predict(process, apply, params, x_t, t, kind=kind)
