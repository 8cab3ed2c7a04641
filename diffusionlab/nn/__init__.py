"""Neural networks (flax NNX), used through pure ``apply(params, x, t)`` functions."""

from diffusionlab.nn.embed import sinusoidal_embedding
from diffusionlab.nn.mlp import MLP
from diffusionlab.nn.pure import pure
from diffusionlab.nn.unet import UNet

__all__ = ["MLP", "UNet", "pure", "sinusoidal_embedding"]
