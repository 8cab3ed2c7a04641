"""A small decoder-only transformer LM with RoPE and a KV cache, used through a pure ``apply``.

The model reads left-padded batches: tokens equal to ``pad_id`` are masked out as keys and
do not advance the rotary positions, which are ``cumsum(valid) - 1``. So a row's real tokens
get positions ``0, 1, …`` whatever the amount of padding before them, and a padded batch
decodes exactly as each row would alone.

The pure protocol, shared with :mod:`diffusionlab.nbce` (which needs nothing else):

* ``apply(params, tokens_BxL, cache) -> (logits_BxLxV, cache)``; ``cache=None`` is a full,
  uncached forward; a cache from ``apply.init_cache(batch_size, length)`` is filled from its
  current length on, so a prompt then single tokens decode incrementally.
* ``apply.max_length``: the trained length; ``apply.pad_id``: the padding id.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from flax import nnx

from diffusionlab import _checks
from diffusionlab.lm.shift import TokenShift
from diffusionlab.nn.transformer import (
    KVCache,
    Transformer,
    causal_mask,
    check_transformer_size,
    padding_mask,
)

__all__ = ["DecodeCache", "LMApply", "LMConfig", "LanguageModel", "init_decode_cache", "pure"]


@dataclasses.dataclass(frozen=True)
class LMConfig:
    """Architecture of the language model.

    Attributes:
      vocab_size: number of token ids (259 for the byte tokenizer).
      dim: model width.
      depth: number of transformer blocks.
      num_heads: attention heads per block.
      mlp_dim: MLP hidden width.
      max_length: the trained context length ``L`` (longer inputs run, but untrained).
      pad_id: the padding id, masked out.
      shift: ``K`` of the token shift on the embeddings (each position also sees a learned
        map of the ``K`` tokens before it, :class:`~diffusionlab.lm.shift.TokenShift`);
        0 is a plain transformer.
    """

    vocab_size: int = 259
    dim: int = 64
    depth: int = 2
    num_heads: int = 4
    mlp_dim: int = 128
    max_length: int = 64
    pad_id: int = 0
    shift: int = 0

    def __post_init__(self):
        for name, low in (("vocab_size", 1), ("dim", 1), ("depth", 1), ("num_heads", 1),
                          ("mlp_dim", 1), ("max_length", 1), ("shift", 0)):
            object.__setattr__(self, name, _checks.check_int(getattr(self, name), name, low=low))
        object.__setattr__(self, "pad_id", _checks.check_int(self.pad_id, "pad_id", low=0,
                                                             high=self.vocab_size - 1))
        check_transformer_size(self.vocab_size, self.dim, self.depth, self.num_heads,
                               self.mlp_dim)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class DecodeCache:
    """Everything incremental decoding carries between calls.

    Attributes:
      layers: one :class:`~diffusionlab.nn.transformer.KVCache` per block.
      valid: ``(B, S)`` bool, which cache slots hold real (non-pad) tokens.
      next_position: ``(B,)`` int32, the rotary position of each row's next real token.
      recent: ``(B, K, D)``, the token shift's last ``K`` inputs (``K = 0`` without shift).
    """

    layers: tuple
    valid: jax.Array
    next_position: jax.Array
    recent: jax.Array

    @property
    def length(self) -> jax.Array:
        """Number of filled slots (the same in every layer)."""
        return self.layers[0].length


def init_decode_cache(config: LMConfig, batch_size: int, length: int) -> DecodeCache:
    """An empty :class:`DecodeCache` with room for ``length`` tokens in each of ``batch_size`` rows.

    Raises:
      TypeError: ``config`` is not an :class:`LMConfig`, or a size is not an integer.
      ValueError: a size below 1, or a cache larger than this machine's memory.
    """
    if not isinstance(config, LMConfig):
        raise TypeError(f"config must be an LMConfig; got {type(config).__name__}")
    batch_size = _checks.check_int(batch_size, "batch_size", low=1)
    length = _checks.check_int(length, "length", low=1)
    _checks.check_fits_memory("length", 8.0 * batch_size * length * config.dim * config.depth,
                              "the cache")
    head_dim = config.dim // config.num_heads
    layers = tuple(KVCache.init(batch_size, length, config.num_heads, head_dim)
                   for _ in range(config.depth))
    return DecodeCache(layers, jnp.zeros((batch_size, length), bool),
                       jnp.zeros((batch_size,), jnp.int32),
                       jnp.zeros((batch_size, config.shift, config.dim), jnp.float32))


class LanguageModel(nnx.Module):
    """Decoder-only transformer: token embedding, blocks, tied output projection."""

    def __init__(self, config: LMConfig, *, rngs: nnx.Rngs):
        if not isinstance(config, LMConfig):
            raise TypeError(f"config must be an LMConfig; got {type(config).__name__}")
        self.config = config
        self.trunk = Transformer(config.vocab_size, config.dim, config.depth, config.num_heads,
                                 config.mlp_dim, rngs=rngs)
        self.shift = TokenShift(config.dim, config.shift, rngs=rngs) if config.shift else None

    def init_cache(self, batch_size: int, length: int) -> DecodeCache:
        """An empty cache with room for ``length`` tokens per row."""
        return init_decode_cache(self.config, batch_size, length)

    def __call__(self, tokens_BxL, cache: DecodeCache | None = None):
        """Logits of the next token at every position; see the module docstring."""
        batch, length = tokens_BxL.shape
        valid_BxL = tokens_BxL != self.config.pad_id
        offset_B = jnp.zeros((batch,), jnp.int32) if cache is None else cache.next_position
        positions_BxL = offset_B[:, None] + jnp.cumsum(valid_BxL, axis=1, dtype=jnp.int32) - 1
        positions_BxL = jnp.maximum(positions_BxL, 0)
        x_BxLxD = self.trunk.embed(tokens_BxL)
        recent = None
        if self.shift is not None:
            history = (jnp.zeros((batch, self.config.shift, self.config.dim), x_BxLxD.dtype)
                       if cache is None else cache.recent)
            x_BxLxD, recent = self.shift(x_BxLxD, valid_BxL, history)
        if cache is None:
            mask = causal_mask(length) & padding_mask(valid_BxL)
            h_BxLxD, _ = self.trunk.encode(x_BxLxD, mask=mask, positions=positions_BxL)
            return self.trunk.logits(h_BxLxD), None
        start = cache.length
        valid_BxS = jax.lax.dynamic_update_slice(cache.valid, valid_BxL, (0, start))
        slots = valid_BxS.shape[1]
        mask = causal_mask(length, key_length=slots, offset=start) & padding_mask(valid_BxS)
        h_BxLxD, layers = self.trunk.encode(x_BxLxD, mask=mask, positions=positions_BxL,
                                            caches=cache.layers)
        next_position_B = offset_B + jnp.sum(valid_BxL, axis=1, dtype=jnp.int32)
        recent = cache.recent if recent is None else recent
        return self.trunk.logits(h_BxLxD), DecodeCache(layers, valid_BxS, next_position_B, recent)


@dataclasses.dataclass(frozen=True)
class LMApply:
    """The pure protocol of a :class:`LanguageModel`: ``apply(params, tokens, cache)``.

    Equal (and hashed) by the model's structure and configuration, as :class:`diffusionlab.nn.Apply`
    is: a static argument of ``jax.jit`` that two models of one architecture share, so a model
    loaded from disk reuses the programs compiled for the one that was trained.
    """

    graphdef: nnx.GraphDef
    config: LMConfig

    @property
    def max_length(self) -> int:
        return self.config.max_length

    @property
    def pad_id(self) -> int:
        return self.config.pad_id

    def __call__(self, params, tokens_BxL, cache=None):
        if not isinstance(tokens_BxL, jax.core.Tracer):
            tokens_BxL = check_tokens(tokens_BxL, self.config)
        if cache is not None:
            check_cache_room(cache, tokens_BxL.shape)
        return _merged_call(self.graphdef, params, tokens_BxL, cache)

    def init_cache(self, batch_size: int, length: int) -> DecodeCache:
        return init_decode_cache(self.config, batch_size, length)


def check_tokens(tokens_BxL, config: LMConfig, name: str = "tokens_BxL") -> jax.Array:
    """``(B, L)`` integer token ids in ``[0, vocab_size)``: an id outside would read a wrong
    (clamped) embedding row or NaN, silently."""
    return _checks.int_array(tokens_BxL, name, low=0, high=config.vocab_size - 1, ndim=2,
                             layout="(B, L)").astype(jnp.int32)


def check_cache_room(cache: DecodeCache, shape: tuple[int, int]) -> None:
    """Raises ValueError if ``shape[1]`` more tokens do not fit in a concrete ``cache``: writing
    past the end would overwrite valid slots and report a length larger than the buffer."""
    if not isinstance(cache, DecodeCache):
        raise TypeError(f"cache must be a DecodeCache (apply.init_cache); got {type(cache).__name__}")
    slots = cache.valid.shape[1]
    if cache.valid.shape[0] != shape[0]:
        raise ValueError(f"cache holds {cache.valid.shape[0]} rows but tokens_BxL has "
                         f"{shape[0]}")
    filled = _checks.concrete(cache.length)
    if filled is not None and int(filled) + shape[1] > slots:
        raise ValueError(f"cache is full: {int(filled)} of {slots} slots are filled and "
                         f"{shape[1]} more tokens do not fit; allocate a longer cache")


@functools.partial(jax.jit, static_argnums=0)
def _merged_call(graphdef, params, tokens_BxL, cache):
    # Jitted so that eager callers do not dispatch op by op; inside an outer jit it inlines.
    return nnx.merge(graphdef, params)(tokens_BxL, cache)


def pure(model: LanguageModel) -> tuple[LMApply, nnx.State]:
    """Splits ``model`` into its pure ``apply`` and its parameters (``nnx.split``)."""
    if not isinstance(model, LanguageModel):
        raise TypeError(f"model must be a LanguageModel; got {type(model).__name__}")
    graphdef, params = nnx.split(model)
    return LMApply(graphdef, model.config), params
