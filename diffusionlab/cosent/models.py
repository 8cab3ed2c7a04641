r"""The encoders: one transformer trunk used as a bi-encoder or as a cross-encoder.

* :class:`BiEncoder` (feature-based matching): each sentence is encoded alone and pooled
  ([CLS] or a masked mean) into $u$; a pair is scored by $\cos(u, v)$. It also carries the
  Sentence-BERT classifier $W[u, v, |u-v|]$ (2 logits), used only by that baseline's loss.
* :class:`CrossEncoder` (interactive matching): the pair is one input
  ``[CLS] a [SEP] b [SEP]`` and a 1-unit linear head on [CLS] gives the raw score $f(a, b)$.
  Each segment counts its own positions from 0 and a learned segment embedding tells the two
  apart, so rotary attention sees the $i$-th word of ``a`` and the $i$-th word of ``b`` at
  relative distance 0: comparing aligned words, the thing a cross-encoder is for, is then
  easy to learn from scratch (a pretrained BERT brings that ability with it).

Both are built on :class:`diffusionlab.nn.transformer.Transformer` (pre-norm blocks, RoPE
positions), the same trunk as the language model.

Reference: 苏剑林, "CoSENT（二）", https://kexue.fm/archives/8860
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from diffusionlab import _checks
from diffusionlab.cosent.baselines import sbert_features
from diffusionlab.cosent.tokenizer import PAD, SEP
from diffusionlab.nn.transformer import Transformer, check_transformer_size, padding_mask

__all__ = ["BiEncoder", "CrossEncoder", "EncoderConfig", "cosine_similarity"]

POOLINGS = ("cls", "mean")


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """Size of the transformer trunk.

    Attributes:
      vocab_size: embedding rows (>= the tokenizer's size; fixed per experiment so every task
        shares one compiled program).
      dim, depth, num_heads, mlp_dim: width, blocks, heads, MLP hidden width.
      pooling: ``"mean"`` or ``"cls"`` (bi-encoder only). The reference pools [CLS] of a
        pretrained BERT; from scratch the [CLS] state starts out the same for every sentence
        (all cosines near 1, vanishing gradients) and training can stall there, so the masked
        mean is the default.
    """

    vocab_size: int = 4096
    dim: int = 64
    depth: int = 2
    num_heads: int = 4
    mlp_dim: int = 128
    pooling: str = "mean"

    def __post_init__(self):
        _checks.check_choice(self.pooling, "pooling", POOLINGS)
        for name in ("vocab_size", "dim", "depth", "num_heads", "mlp_dim"):
            object.__setattr__(self, name, _checks.check_int(getattr(self, name), name, low=1))
        check_transformer_size(self.vocab_size, self.dim, self.depth, self.num_heads,
                               self.mlp_dim)

    def trunk(self, *, rngs: nnx.Rngs) -> Transformer:
        return Transformer(self.vocab_size, self.dim, self.depth, self.num_heads, self.mlp_dim,
                           rngs=rngs)


def _hidden(trunk: Transformer, tokens_BxL: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Hidden states ``(B, L, D)`` with pads masked out as keys, and the valid mask ``(B, L)``."""
    valid_BxL = tokens_BxL != PAD
    positions_BxL = jnp.broadcast_to(jnp.arange(tokens_BxL.shape[1]), tokens_BxL.shape)
    h_BxLxD, _ = trunk(tokens_BxL, mask=padding_mask(valid_BxL), positions=positions_BxL)
    return h_BxLxD, valid_BxL


def cosine_similarity(u_BxD: jax.Array, v_BxD: jax.Array) -> jax.Array:
    r"""Row-wise $\cos(u, v) = u\cdot v / (\|u\|\|v\|)$, shape ``(B,)``; 0 for a zero vector."""
    from diffusionlab.cosent.baselines import _pair_of_batches
    u_BxD, v_BxD = _pair_of_batches(u_BxD, v_BxD)
    u_BxD = u_BxD / jnp.maximum(jnp.linalg.norm(u_BxD, axis=-1, keepdims=True), 1e-12)
    v_BxD = v_BxD / jnp.maximum(jnp.linalg.norm(v_BxD, axis=-1, keepdims=True), 1e-12)
    return jnp.sum(u_BxD * v_BxD, axis=-1)


class BiEncoder(nnx.Module):
    """Sentence embeddings from one shared trunk, scored by cosine.

    Call ``model.embed(tokens_BxL) -> (B, D)``; ``model(tokens_a, tokens_b) -> (cos_B, u, v)``;
    ``model.sbert_logits(u, v) -> (B, 2)``. Tokens are ``[CLS] text`` padded with 0.
    """

    def __init__(self, config: EncoderConfig, *, rngs: nnx.Rngs):
        if not isinstance(config, EncoderConfig):
            raise TypeError(f"config must be an EncoderConfig; got {type(config).__name__}")
        self.pooling = config.pooling
        self.trunk = config.trunk(rngs=rngs)
        self.classifier = nnx.Linear(3 * config.dim, 2, rngs=rngs)

    def embed(self, tokens_BxL: jax.Array) -> jax.Array:
        h_BxLxD, valid_BxL = _hidden(self.trunk, tokens_BxL)
        if self.pooling == "cls":
            return h_BxLxD[:, 0]
        weights_BxL = valid_BxL.astype(h_BxLxD.dtype)
        total_BxD = jnp.einsum("bl,bld->bd", weights_BxL, h_BxLxD)
        return total_BxD / jnp.maximum(weights_BxL.sum(-1, keepdims=True), 1.0)

    def __call__(self, tokens_a_BxL: jax.Array, tokens_b_BxL: jax.Array):
        # One pass over both sides: the trunk sees 2B sentences, as in the reference batches.
        both_2BxD = self.embed(jnp.concatenate([tokens_a_BxL, tokens_b_BxL], axis=0))
        u_BxD, v_BxD = jnp.split(both_2BxD, 2, axis=0)
        return cosine_similarity(u_BxD, v_BxD), u_BxD, v_BxD

    def sbert_logits(self, u_BxD: jax.Array, v_BxD: jax.Array) -> jax.Array:
        return self.classifier(sbert_features(u_BxD, v_BxD))


class CrossEncoder(nnx.Module):
    """A pair scored jointly: ``model(pair_tokens_BxL) -> f_B``, a raw 1-unit head on [CLS].

    Tokens are ``[CLS] a [SEP] b [SEP]`` padded with 0. Positions restart at 0 after the first
    ``[SEP]``, and a learned segment embedding (0 for ``[CLS] a [SEP]``, 1 after) is added to the
    token embedding, as BERT's token-type embedding.
    """

    def __init__(self, config: EncoderConfig, *, rngs: nnx.Rngs):
        if not isinstance(config, EncoderConfig):
            raise TypeError(f"config must be an EncoderConfig; got {type(config).__name__}")
        self.trunk = config.trunk(rngs=rngs)
        self.segment = nnx.Embed(2, config.dim, rngs=rngs)
        self.head = nnx.Linear(config.dim, 1, rngs=rngs)

    def __call__(self, pair_tokens_BxL: jax.Array) -> jax.Array:
        valid_BxL = pair_tokens_BxL != PAD
        is_sep_BxL = (pair_tokens_BxL == SEP).astype(jnp.int32)
        # Segment 1 starts just after the first [SEP].
        segment_BxL = ((jnp.cumsum(is_sep_BxL, axis=1) - is_sep_BxL) > 0).astype(jnp.int32)
        index_BxL = jnp.broadcast_to(jnp.arange(pair_tokens_BxL.shape[1]), pair_tokens_BxL.shape)
        start_of_b_Bx1 = jnp.max(jnp.where(segment_BxL == 0, index_BxL + 1, 0), axis=1,
                                 keepdims=True)
        positions_BxL = jnp.where(segment_BxL == 0, index_BxL, index_BxL - start_of_b_Bx1)
        x_BxLxD = self.trunk.embed(pair_tokens_BxL) + self.segment(segment_BxL)
        for block in self.trunk.blocks:
            x_BxLxD, _ = block(x_BxLxD, mask=padding_mask(valid_BxL), positions=positions_BxL)
        h_BxLxD = self.trunk.final_norm(x_BxLxD)
        return self.head(h_BxLxD[:, 0])[:, 0]
