"""Pre-norm transformer blocks shared by the CoSENT encoder and the NBCE language model.

One block is $x \\leftarrow x + \\mathrm{Attn}(\\mathrm{LN}(x))$, then
$x \\leftarrow x + \\mathrm{MLP}(\\mathrm{LN}(x))$. Attention uses rotary position embeddings
(RoPE) when ``positions`` are given, so left padding is harmless once the pads are masked
(the positions of real tokens do not depend on how many pads precede them). A
:class:`KVCache` makes incremental decoding possible: each call writes its keys and values
at ``cache.length`` and attends over the whole buffer.

Masks are boolean with ``True`` = attend and broadcast to ``(B, heads, L_query, L_key)``;
:func:`causal_mask` and :func:`padding_mask` build the usual ones.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from diffusionlab import _checks

__all__ = [
    "KVCache",
    "MultiHeadAttention",
    "TransformerBlock",
    "Transformer",
    "causal_mask",
    "padding_mask",
    "rotary_embedding",
]


def rotary_embedding(x_BxLxHxK: jax.Array, positions_BxL: jax.Array, *, base: float = 10000.0):
    """Rotates feature pairs by position-dependent angles (RoPE).

    For the pair $(x_{2i}, x_{2i+1})$ at position $m$ the rotation angle is
    $m\\,\\theta_i$ with $\\theta_i = \\mathrm{base}^{-2i/K}$, so that
    $\\langle R_m q, R_n k\\rangle$ depends on $m-n$ only. The pairs are the two halves of the
    head dimension ("rotate half" layout), which is the same rotation up to a fixed permutation.

    Args:
      x_BxLxHxK: queries or keys; ``K`` must be even.
      positions_BxL: integer positions.
      base: the wavelength base.

    Returns:
      The rotated array, same shape and dtype as ``x_BxLxHxK``.
    """
    x_BxLxHxK = _checks.float_array(x_BxLxHxK, "x_BxLxHxK", ndim=4, layout="(B, L, H, K)")
    positions_BxL = _checks.int_array(positions_BxL, "positions_BxL", low=0, ndim=2,
                                      shape=x_BxLxHxK.shape[:2], layout="(B, L)")
    _checks.check_real(base, "base", low=1, low_open=True)
    head_dim = x_BxLxHxK.shape[-1]
    if head_dim % 2:
        raise ValueError(f"rotary_embedding needs an even head dimension, got {head_dim}")
    half = head_dim // 2
    inv_freq_K2 = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angle_BxLxK2 = positions_BxL.astype(jnp.float32)[..., None] * inv_freq_K2[None, None, :]
    sin_BxLx1xK2 = jnp.sin(angle_BxLxK2)[:, :, None, :]
    cos_BxLx1xK2 = jnp.cos(angle_BxLxK2)[:, :, None, :]
    x1, x2 = x_BxLxHxK[..., :half], x_BxLxHxK[..., half:]
    out = jnp.concatenate([x1 * cos_BxLx1xK2 - x2 * sin_BxLx1xK2,
                           x2 * cos_BxLx1xK2 + x1 * sin_BxLx1xK2], axis=-1)
    return out.astype(x_BxLxHxK.dtype)


def causal_mask(length: int, *, key_length: int | None = None, offset: int = 0) -> jax.Array:
    """Boolean ``(1, 1, length, key_length)`` mask: query ``i`` sees keys ``<= offset + i``."""
    length = _checks.check_int(length, "length", low=1)
    key_length = length if key_length is None else _checks.check_int(key_length, "key_length",
                                                                      low=1)
    offset = _checks.check_int(offset, "offset", low=0)
    _checks.check_fits_memory("length", float(length) * key_length, "the mask")
    query_pos = offset + jnp.arange(length)[:, None]
    return (jnp.arange(key_length)[None, :] <= query_pos)[None, None]


def padding_mask(valid_BxL: jax.Array) -> jax.Array:
    """Boolean ``(B, 1, 1, L)`` mask that hides padded keys (``valid`` False)."""
    if isinstance(valid_BxL, (jax.Array, np.ndarray)) and jnp.issubdtype(valid_BxL.dtype,
                                                                          jnp.integer):
        valid_BxL = valid_BxL != 0  # 0/1 flags
    valid_BxL = _checks.bool_array(valid_BxL, "valid_BxL", ndim=2, layout="(B, L)")
    return valid_BxL[:, None, None, :]


def check_transformer_size(vocab_size, dim, depth, num_heads, mlp_dim) -> None:
    """Positive integer sizes, ``dim`` divisible by ``num_heads``, and parameters that fit in
    this machine's memory; raises naming the offending argument."""
    for name, value in (("vocab_size", vocab_size), ("dim", dim), ("depth", depth),
                        ("num_heads", num_heads), ("mlp_dim", mlp_dim)):
        _checks.check_int(value, name, low=1)
    if dim % num_heads:
        raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads}")
    per_block = 4.0 * dim * dim + 2.0 * dim * mlp_dim
    _checks.check_fits_memory("depth" if depth * per_block > vocab_size * dim else "vocab_size",
                              4.0 * (vocab_size * dim + depth * per_block), "the parameters")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class KVCache:
    """Keys and values of one attention layer for incremental decoding.

    Attributes:
      keys: ``(B, S, heads, head_dim)`` buffer; slots ``>= length`` are not yet written.
      values: same shape as ``keys``.
      length: int32 scalar, the number of filled slots (the write offset of the next call).
    """

    keys: jax.Array
    values: jax.Array
    length: jax.Array

    @classmethod
    def init(cls, batch_size: int, max_length: int, num_heads: int, head_dim: int,
             dtype=jnp.float32) -> KVCache:
        """An empty cache with room for ``max_length`` positions."""
        for name, value in (("batch_size", batch_size), ("max_length", max_length),
                            ("num_heads", num_heads), ("head_dim", head_dim)):
            _checks.check_int(value, name, low=1)
        _checks.check_fits_memory("max_length", 2.0 * batch_size * max_length * num_heads
                                  * head_dim * jnp.dtype(dtype).itemsize, "the cache")
        shape = (batch_size, max_length, num_heads, head_dim)
        return cls(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype), jnp.zeros((), jnp.int32))


class MultiHeadAttention(nnx.Module):
    """Scaled dot-product attention $\\mathrm{softmax}(QK^\\top/\\sqrt{K})V$."""

    def __init__(self, dim: int, num_heads: int, *, rngs: nnx.Rngs):
        dim = _checks.check_int(dim, "dim", low=1)
        num_heads = _checks.check_int(num_heads, "num_heads", low=1)
        _checks.check_fits_memory("dim", 4.0 * 4 * dim * dim, "the attention weights")
        if dim % num_heads:
            raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nnx.Linear(dim, 3 * dim, use_bias=False, rngs=rngs)
        self.out = nnx.Linear(dim, dim, use_bias=False, rngs=rngs)

    def __call__(self, x_BxLxD, *, mask=None, positions=None, cache: KVCache | None = None):
        x_BxLxD = _checks.float_array(x_BxLxD, "x_BxLxD", ndim=3, layout="(B, L, D)")
        if x_BxLxD.shape[-1] != self.num_heads * self.head_dim:
            raise ValueError(f"x_BxLxD must have D = {self.num_heads * self.head_dim} features; "
                             f"got shape {x_BxLxD.shape}")
        batch, length, dim = x_BxLxD.shape
        if cache is not None and not isinstance(cache.length, jax.core.Tracer):
            # Writing past the end would overwrite valid slots (dynamic_update_slice clamps).
            if int(cache.length) + length > cache.keys.shape[1]:
                raise ValueError(
                    f"cache is full: {int(cache.length)} of {cache.keys.shape[1]} slots are "
                    f"filled and {length} more do not fit; make the cache longer")
        qkv = self.qkv(x_BxLxD).reshape(batch, length, 3, self.num_heads, self.head_dim)
        q_BxLxHxK, k_BxLxHxK, v_BxLxHxK = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        if positions is not None:
            q_BxLxHxK = rotary_embedding(q_BxLxHxK, positions)
            k_BxLxHxK = rotary_embedding(k_BxLxHxK, positions)
        if cache is not None:
            start = (0, cache.length, 0, 0)
            keys = jax.lax.dynamic_update_slice(
                cache.keys, k_BxLxHxK.astype(cache.keys.dtype), start)
            values = jax.lax.dynamic_update_slice(
                cache.values, v_BxLxHxK.astype(cache.values.dtype), start)
            if mask is None:
                # Default with a cache: causal over absolute slots, unwritten slots hidden.
                slot_S = jnp.arange(keys.shape[1])
                query_L = cache.length + jnp.arange(length)
                mask = (slot_S[None, :] <= query_L[:, None])[None, None]
            cache = KVCache(keys, values, cache.length + length)
            k_BxSxHxK, v_BxSxHxK = keys, values
        else:
            k_BxSxHxK, v_BxSxHxK = k_BxLxHxK, v_BxLxHxK
        # Logits in float32: the softmax over long key ranges is where precision is lost.
        logits_BxHxLxS = jnp.einsum("blhk,bshk->bhls", q_BxLxHxK, k_BxSxHxK,
                                    preferred_element_type=jnp.float32) / math.sqrt(self.head_dim)
        if mask is not None:
            # A large finite negative rather than -inf: a fully masked row (a pad query)
            # then gives a harmless uniform average instead of NaN.
            logits_BxHxLxS = jnp.where(mask, logits_BxHxLxS, jnp.finfo(jnp.float32).min)
        weights_BxHxLxS = jax.nn.softmax(logits_BxHxLxS, axis=-1).astype(v_BxSxHxK.dtype)
        y_BxLxHxK = jnp.einsum("bhls,bshk->blhk", weights_BxHxLxS, v_BxSxHxK)
        return self.out(y_BxLxHxK.reshape(batch, length, dim)), cache


class TransformerBlock(nnx.Module):
    """Pre-norm block: attention then MLP, each as a residual on the normalised input.

    $x \\leftarrow x+\\mathrm{Attn}(\\mathrm{LN}\\,x)$, then
    $x \\leftarrow x+\\mathrm{MLP}(\\mathrm{LN}\\,x)$.

    Args:
      dim: model width ``D``.
      num_heads: attention heads (``D`` divisible by it).
      mlp_dim: hidden width of the GELU MLP.
      rngs: parameter initialisation keys.

    Call ``block(x_BxLxD, *, mask=None, positions=None, cache=None) -> (y_BxLxD, cache)``:
    ``mask`` boolean, broadcastable to ``(B, heads, L, L_key)``, True = attend; ``positions``
    ``(B, L)`` ints switch RoPE on; ``cache`` a :class:`KVCache` for incremental decoding
    (then ``L_key`` is the cache size), returned updated (None stays None).
    """

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, *, rngs: nnx.Rngs):
        check_transformer_size(1, dim, 1, num_heads, mlp_dim)
        self.attention_norm = nnx.LayerNorm(dim, rngs=rngs)
        self.attention = MultiHeadAttention(dim, num_heads, rngs=rngs)
        self.mlp_norm = nnx.LayerNorm(dim, rngs=rngs)
        self.mlp_in = nnx.Linear(dim, mlp_dim, rngs=rngs)
        self.mlp_out = nnx.Linear(mlp_dim, dim, rngs=rngs)

    def __call__(self, x_BxLxD, *, mask=None, positions=None, cache: KVCache | None = None):
        h_BxLxD, cache = self.attention(self.attention_norm(x_BxLxD), mask=mask,
                                        positions=positions, cache=cache)
        x_BxLxD = x_BxLxD + h_BxLxD
        x_BxLxD = x_BxLxD + self.mlp_out(jax.nn.gelu(self.mlp_in(self.mlp_norm(x_BxLxD))))
        return x_BxLxD, cache


class Transformer(nnx.Module):
    """Token embedding, ``depth`` :class:`TransformerBlock` s and a final LayerNorm.

    The trunk both the encoder (pool the hidden states) and the decoder (project them back
    onto the embedding, :meth:`logits`) are built on.

    Call ``trunk(tokens_BxL, *, mask=None, positions=None, caches=None) -> (h_BxLxD, caches)``
    where ``caches`` is None or a tuple with one :class:`KVCache` per block.
    """

    def __init__(self, vocab_size: int, dim: int, depth: int, num_heads: int, mlp_dim: int,
                 *, rngs: nnx.Rngs):
        check_transformer_size(vocab_size, dim, depth, num_heads, mlp_dim)
        self.vocab_size = vocab_size
        self.embed = nnx.Embed(vocab_size, dim, rngs=rngs)
        self.blocks = nnx.List([TransformerBlock(dim, num_heads, mlp_dim, rngs=rngs)
                                for _ in range(depth)])
        self.final_norm = nnx.LayerNorm(dim, rngs=rngs)
        self.num_heads = num_heads
        self.head_dim = dim // num_heads

    def init_caches(self, batch_size: int, max_length: int, dtype=jnp.float32):
        """One empty :class:`KVCache` per block."""
        return tuple(KVCache.init(batch_size, max_length, self.num_heads, self.head_dim, dtype)
                     for _ in self.blocks)

    def __call__(self, tokens_BxL, *, mask=None, positions=None, caches=None):
        # An id outside the vocabulary would be clamped or give NaN rows silently.
        tokens_BxL = _checks.int_array(tokens_BxL, "tokens_BxL", low=0,
                                       high=self.vocab_size - 1, ndim=2, layout="(B, L)")
        return self.encode(self.embed(tokens_BxL), mask=mask, positions=positions, caches=caches)

    def encode(self, x_BxLxD, *, mask=None, positions=None, caches=None):
        """The blocks and the final norm on already embedded inputs ``x_BxLxD``."""
        new_caches = []
        for i, block in enumerate(self.blocks):
            x_BxLxD, cache = block(x_BxLxD, mask=mask, positions=positions,
                                   cache=None if caches is None else caches[i])
            new_caches.append(cache)
        return self.final_norm(x_BxLxD), (None if caches is None else tuple(new_caches))

    def logits(self, h_BxLxD):
        """Next-token logits through the tied embedding, $h E^\\top$."""
        return self.embed.attend(h_BxLxD)
