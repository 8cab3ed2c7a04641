"""Neural networks (flax NNX), used through pure ``apply(params, ...)`` functions."""

from diffusionlab.nn.embed import sinusoidal_embedding
from diffusionlab.nn.mlp import MLP
from diffusionlab.nn.pure import Apply, pure
from diffusionlab.nn.transformer import (
    KVCache,
    MultiHeadAttention,
    Transformer,
    TransformerBlock,
    causal_mask,
    padding_mask,
    rotary_embedding,
)
from diffusionlab.nn.unet import UNet

__all__ = [
    "MLP", "Apply", "KVCache", "MultiHeadAttention", "Transformer", "TransformerBlock", "UNet",
    "causal_mask", "padding_mask", "pure", "rotary_embedding", "sinusoidal_embedding",
]
