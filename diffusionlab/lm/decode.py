"""Plain autoregressive decoding with a KV cache, for any model with the ``apply`` protocol.

``apply(params, tokens_BxL, cache) -> (logits_BxLxV, cache)`` and ``apply.init_cache(B, S)``
(see :mod:`diffusionlab.lm.model`). The prompt is prefilled in one call, then one token per
step is fed back inside a ``lax.scan``, so the whole generation is one compiled program.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from diffusionlab import _checks

__all__ = ["decode", "generate", "left_pad", "prefill", "uncached_generate"]


def left_pad(sequences: Sequence[Sequence[int]], *, pad_id: int = 0,
             length: int | None = None) -> np.ndarray:
    """Stacks token sequences into a ``(B, P)`` int32 array, padded on the left.

    Args:
      sequences: token id sequences.
      pad_id: the padding id.
      length: ``P``; default the longest sequence. Longer sequences raise ValueError.
    """
    sequences = _checks.check_sequences(sequences, "sequences", low=0, high=2**31 - 1)
    if not sequences:
        raise ValueError("sequences must hold at least one sequence")
    pad_id = _checks.check_int(pad_id, "pad_id", low=0)
    longest = max((len(s) for s in sequences), default=0)
    length = longest if length is None else _checks.check_int(length, "length", low=0)
    _checks.check_fits_memory("length", 4.0 * len(sequences) * length, "the padded batch")
    if longest > length:
        raise ValueError(f"length={length} is shorter than the longest sequence ({longest})")
    out = np.full((len(sequences), length), pad_id, np.int32)
    for i, s in enumerate(sequences):
        if len(s):
            out[i, length - len(s):] = np.asarray(s, np.int32)
    return out


def _pick(logits_BxV, key, temperature, greedy: bool):
    if greedy:
        return jnp.argmax(logits_BxV, axis=-1).astype(jnp.int32)
    return jax.random.categorical(key, logits_BxV / temperature, axis=-1).astype(jnp.int32)


def step_keys(key: jax.Array | None, max_new_tokens: int, *, greedy: bool) -> jax.Array | None:
    """The per-step keys a decoding scan runs over: none for greedy decoding (nothing is
    drawn), else ``split(key, max_new_tokens)``.

    Raises:
      ValueError: sampling (``greedy=False``) without a key.
    """
    if greedy:
        return None
    if key is None:
        raise ValueError("sampling (greedy=False) needs a key")
    return jax.random.split(key, max_new_tokens)


@functools.partial(jax.jit, static_argnames=("apply", "max_new_tokens"))
def prefill(apply, params, prompts_BxP, *, max_new_tokens: int):
    """Runs the prompts once into a fresh cache with room for ``max_new_tokens`` more.

    Returns:
      ``(last-position logits (B, V), cache)``.
    """
    batch, length = prompts_BxP.shape
    cache = apply.init_cache(batch, length + max_new_tokens)
    logits_BxPxV, cache = apply(params, prompts_BxP, cache)
    return logits_BxPxV[:, -1], cache


@functools.partial(jax.jit, static_argnames=("apply", "max_new_tokens", "eos_id", "greedy"))
def decode(apply, params, logits_BxV, cache, key, temperature, *, max_new_tokens: int,
           eos_id: int, greedy: bool):
    """The decoding loop from prefilled ``(logits, cache)``: ``(B, max_new_tokens)`` tokens.

    ``key`` (a PRNG key) draws the sampled tokens; greedy decoding draws nothing, and its
    ``key`` may be None (a given key is not used).

    Raises:
      ValueError: ``greedy=False`` with ``key=None``.
    """
    batch = logits_BxV.shape[0]

    def step(carry, key_t):
        logits_BxV, cache, done_B = carry
        token_B = _pick(logits_BxV, key_t, temperature, greedy)
        token_B = jnp.where(done_B, eos_id, token_B)
        done_B = done_B | (token_B == eos_id)
        logits_Bx1xV, cache = apply(params, token_B[:, None], cache)
        return (logits_Bx1xV[:, -1], cache, done_B), token_B

    carry = (logits_BxV, cache, jnp.zeros((batch,), bool))
    _, tokens_TxB = jax.lax.scan(step, carry, step_keys(key, max_new_tokens, greedy=greedy),
                                 length=max_new_tokens)
    return tokens_TxB.T


def generate(apply, params, prompts_BxP, *, max_new_tokens: int, eos_id: int = 2,
             temperature: float = 0.0, key: jax.Array | None = None) -> jax.Array:
    r"""Greedy ($\tau = 0$) or sampled ($\mathrm{softmax}(z/\tau)$) decoding with a KV cache.

    Args:
      apply: the model's pure ``apply`` (with ``init_cache``).
      params: its parameters.
      prompts_BxP: left-padded prompts (see :func:`left_pad`).
      max_new_tokens: number of decoding steps.
      eos_id: after it, a row keeps emitting ``eos_id``; -1 never stops.
      temperature: 0 for greedy decoding, > 0 for sampling (needs ``key``).
      key: PRNG key of the sampled tokens; greedy decoding draws nothing and needs none
        (a key given with ``temperature=0`` is checked, then not used).

    Returns:
      ``(B, max_new_tokens)`` int32 generated tokens.

    Raises:
      TypeError: ``key`` is neither None nor a PRNG key; bad prompts (see
        :func:`check_prompts`).
      ValueError: ``temperature > 0`` without a key, ``temperature < 0``, ``eos_id``
        outside ``[-1, V)``, ``max_new_tokens < 1``.
    """
    prompts_BxP = check_prompts(apply, prompts_BxP, max_new_tokens)
    max_new_tokens = int(max_new_tokens)
    eos_id = _checks.check_int(eos_id, "eos_id", low=-1, high=_vocab(apply) - 1)
    _checks.check_real(temperature, "temperature", low=0)
    greedy = temperature == 0
    if not greedy and key is None:
        raise ValueError("sampling (temperature > 0) needs a key")
    if key is not None:
        _checks.check_key(key)
    logits, cache = prefill(apply, params, prompts_BxP, max_new_tokens=max_new_tokens)
    # Greedy decoding compiles one program, with or without a key.
    return decode(apply, params, logits, cache, None if greedy else key,
                  jnp.float32(max(temperature, 1e-6)),
                  max_new_tokens=max_new_tokens, eos_id=eos_id, greedy=greedy)


def _vocab(apply) -> int:
    config = getattr(apply, "config", None)
    return getattr(config, "vocab_size", 2**31 - 1)


def check_prompts(apply, prompts_BxP, max_new_tokens) -> jax.Array:
    """Checks the arguments shared by the decoders; returns the prompts as int32.

    Raises:
      TypeError: ``apply`` not callable, prompts not an integer array, a non-integer
        ``max_new_tokens``.
      ValueError: prompts not ``(B, P)`` or with ids outside the vocabulary,
        ``max_new_tokens < 1``, or a cache larger than this machine's memory.
    """
    _checks.check_callable(apply, "apply")
    prompts_BxP = _checks.int_array(prompts_BxP, "prompts_BxP", low=0, high=_vocab(apply) - 1,
                                    ndim=2, layout="(B, P)").astype(jnp.int32)
    max_new_tokens = _checks.check_int(max_new_tokens, "max_new_tokens", low=1)
    config = getattr(apply, "config", None)
    width = getattr(config, "dim", 1) * max(getattr(config, "depth", 1), 1)
    _checks.check_fits_memory("max_new_tokens", 8.0 * prompts_BxP.shape[0] * width
                              * (prompts_BxP.shape[1] + max_new_tokens), "the KV cache")
    return prompts_BxP


def uncached_generate(apply, params, prompts_BxP, *, max_new_tokens: int) -> jax.Array:
    """Greedy decoding that recomputes the whole sequence every step (the cache's baseline).

    Raises:
      TypeError, ValueError: as :func:`generate` for the prompts and ``max_new_tokens``.
    """
    prompts_BxP = check_prompts(apply, prompts_BxP, max_new_tokens)
    return _uncached_generate(apply, params, prompts_BxP, max_new_tokens=int(max_new_tokens))


@functools.partial(jax.jit, static_argnames=("apply", "max_new_tokens"))
def _uncached_generate(apply, params, prompts_BxP, *, max_new_tokens: int) -> jax.Array:
    batch, length = prompts_BxP.shape
    buffer = jnp.concatenate(
        [jnp.full((batch, max_new_tokens), apply.pad_id, jnp.int32), prompts_BxP], axis=1)

    def step(buffer, _):
        # The buffer stays left-padded: pads are masked and do not shift positions.
        logits_BxLxV, _ = apply(params, buffer, None)
        token_B = jnp.argmax(logits_BxLxV[:, -1], axis=-1).astype(jnp.int32)
        return jnp.concatenate([buffer[:, 1:], token_B[:, None]], axis=1), token_B

    _, tokens_TxB = jax.lax.scan(step, buffer, None, length=max_new_tokens)
    return tokens_TxB.T
