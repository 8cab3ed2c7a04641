r"""NBCE decoding: all contexts and the empty context as one batch, one KV cache, one token.

Row 0 holds the question alone (it gives $\log p(T)$), row $k$ holds context $k$ followed by
the question. The rows are left-padded into one batch and prefilled together; each step
merges the rows' next-token predictions with :func:`~diffusionlab.nbce.step.nbce_step` and
feeds the chosen token to every row. The loop is a ``lax.scan``: one compiled program.

Any model works that offers the pure protocol ``apply(params, tokens_BxL, cache) ->
(logits_BxLxV, cache)`` with ``apply.init_cache(batch_size, length)``, masks its padding id
and derives its positions from it (``apply.max_length`` and ``apply.pad_id`` are read when
present). Reference: Su, "NBCE: extending an LLM's context length with naive Bayes",
https://kexue.fm/archives/9617.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffusionlab import _checks
from diffusionlab.lm.decode import check_prompts, prefill, step_keys
from diffusionlab.nbce.step import DEFAULT_GAP, nbce_step_unchecked, validate_hyperparameters

__all__ = ["NBCEOutput", "nbce_decode", "nbce_generate", "nbce_prefill", "nbce_prompts"]


class NBCEOutput(NamedTuple):
    """What NBCE decoding returns.

    Attributes:
      tokens: ``(T,)`` generated tokens (``eos_id`` repeated after the first EOS).
      choices: ``(T,)`` the min-entropy context row chosen at each step (1..n).
      entropies: ``(T, n+1)`` entropies of the truncated rows at each step.
    """

    tokens: jax.Array
    choices: jax.Array
    entropies: jax.Array


def nbce_prompts(contexts: Sequence[Sequence[int]], question: Sequence[int], *,
                 prefix: Sequence[int] = (), pad_id: int = 0, max_length: int | None = None,
                 length: int | None = None) -> np.ndarray:
    """The ``(n+1, P)`` left-padded batch: row 0 ``prefix+question``, row k ``prefix+S_k+question``.

    Args:
      contexts: ``n >= 1`` token sequences.
      question: the question's tokens, appended to every row.
      prefix: tokens that start every row (e.g. BOS).
      pad_id: the padding id.
      max_length: the model's maximum (trained) length; longer rows raise ValueError.
      length: pad to this ``P`` instead of the longest row (fixed shapes compile once).

    Raises:
      ValueError: no contexts, or a row longer than ``max_length`` / ``length``.
    """
    contexts = _checks.check_sequences(contexts, "contexts")
    if len(contexts) == 0:
        raise ValueError("contexts must be a non-empty list of token sequences (n >= 1)")
    question = _checks.check_sequences(question, "question", nested=False)
    prefix = _checks.check_sequences(prefix, "prefix", nested=False)
    pad_id = _checks.check_int(pad_id, "pad_id", low=0)
    if max_length is not None:
        max_length = _checks.check_int(max_length, "max_length", low=1)
    if length is not None:
        length = _checks.check_int(length, "length", low=1)
    rows = [prefix + question] + [prefix + list(c) + question for c in contexts]
    if max_length is not None:
        for k, row in enumerate(rows[1:], start=1):
            if len(row) > max_length:
                raise ValueError(
                    f"context {k - 1} plus question is {len(row)} tokens, longer than the "
                    f"model's maximum length max_length={max_length}; split long text into "
                    f"pieces with diffusionlab.nbce.split_into_chunks(tokens, "
                    f"chunk_length={max_length - len(prefix) - len(question)}, overlap=...)")
    longest = max(len(r) for r in rows)
    length = longest if length is None else length
    if longest > length:
        raise ValueError(f"length={length} is shorter than the longest row ({longest} tokens)")
    out = np.full((len(rows), length), pad_id, np.int32)
    for i, row in enumerate(rows):
        out[i, length - len(row):] = row
    return out


def nbce_prefill(apply, params, prompts_BxP, *, max_new_tokens: int):
    """Prefills the ``n+1`` prompt rows (ordinary batched prefill: the rows differ only in
    their prompt); returns ``(last-position logits (R, V), cache)``.

    Raises:
      TypeError, ValueError: as :func:`diffusionlab.lm.generate` for the prompts (ids in the
        vocabulary) and ``max_new_tokens``.
    """
    prompts_BxP = check_prompts(apply, prompts_BxP, max_new_tokens)
    return prefill(apply, params, prompts_BxP, max_new_tokens=int(max_new_tokens))


def nbce_decode(apply, params, logits_RxV, cache, key=None, *, max_new_tokens: int, beta, eta,
                top_p, temperature, pooling: str = "min_entropy", greedy: bool = True,
                eos_id: int = 2, gap=DEFAULT_GAP) -> NBCEOutput:
    """The NBCE loop from prefilled ``(logits, cache)`` (see :func:`nbce_prefill`).

    ``beta``, ``eta``, ``top_p``, ``temperature`` and ``gap`` (the ``"entropy_gap"``
    pooling's window) are traced, so sweeps compile once.
    ``key`` (a PRNG key) draws the sampled tokens when ``greedy=False``; greedy decoding (the
    default) draws nothing, and its key may be omitted (a given key is checked, then not used).

    Raises:
      TypeError, ValueError: naming the argument, for logits not ``(R, V)`` real floats with
        ``R >= 2``, a cache that is not a decode cache of ``R`` rows or has no room for
        ``max_new_tokens``, a bad key, ``greedy=False`` without a key, ``beta < -1``,
        ``top_p`` outside (0, 1], ``temperature <= 0``, an unknown pooling or ``gap < 0``.
    """
    from diffusionlab.lm.model import check_cache_room
    logits_RxV = _checks.float_array(logits_RxV, "logits_RxV", ndim=2, layout="(R, V)")
    if logits_RxV.shape[0] < 2:
        raise ValueError(f"logits_RxV must have R >= 2 rows (the empty context and n >= 1 "
                         f"contexts); got shape {logits_RxV.shape}")
    max_new_tokens = _checks.check_int(max_new_tokens, "max_new_tokens", low=1)
    check_cache_room(cache, (logits_RxV.shape[0], max_new_tokens))
    if key is not None:
        _checks.check_key(key)
    elif not greedy:
        raise ValueError("sampling (greedy=False) needs a key")
    validate_hyperparameters(beta=beta, top_p=top_p, pooling=pooling, gap=gap)
    _checks.check_real(eta, "eta")
    _checks.check_real(temperature, "temperature", low=0, low_open=True)
    eos_id = _checks.check_int(eos_id, "eos_id", low=-1, high=logits_RxV.shape[1] - 1)
    return _nbce_decode(apply, params, logits_RxV, cache, None if greedy else key,
                        max_new_tokens=max_new_tokens,
                        beta=beta, eta=eta, top_p=top_p, temperature=temperature,
                        pooling=pooling, greedy=bool(greedy), eos_id=eos_id, gap=gap)


@functools.partial(jax.jit,
                   static_argnames=("apply", "max_new_tokens", "pooling", "greedy", "eos_id"))
def _nbce_decode(apply, params, logits_RxV, cache, key, *, max_new_tokens: int, beta, eta,
                 top_p, temperature, pooling: str, greedy: bool, eos_id: int,
                 gap=DEFAULT_GAP) -> NBCEOutput:
    rows = logits_RxV.shape[0]

    def step(carry, key_t):
        logits_RxV, cache, prev_choice, done = carry
        merged_V, choice, entropies_R = nbce_step_unchecked(
            logits_RxV, beta=beta, eta=eta, top_p=top_p, prev_choice=prev_choice,
            pooling=pooling, gap=gap)
        if greedy:
            token = jnp.argmax(merged_V).astype(jnp.int32)
        else:
            token = jax.random.categorical(key_t, merged_V / temperature).astype(jnp.int32)
        token = jnp.where(done, eos_id, token)
        done = done | (token == eos_id)
        # The same token goes to every row, so all caches stay aligned.
        logits_Rx1xV, cache = apply(params, jnp.full((rows, 1), token, jnp.int32), cache)
        return (logits_Rx1xV[:, -1], cache, choice, done), (token, choice, entropies_R)

    carry = (logits_RxV, cache, jnp.zeros((), jnp.int32), jnp.zeros((), bool))
    _, (tokens, choices, entropies) = jax.lax.scan(
        step, carry, step_keys(key, max_new_tokens, greedy=greedy), length=max_new_tokens)
    return NBCEOutput(tokens, choices, entropies)


def encoded_inputs(apply, contexts, question, *, tokenizer, prefix, eos_id):
    """``(contexts, question, prefix, eos_id)`` as checked token ids of ``apply``'s vocabulary.

    Strings are encoded with ``tokenizer`` (whose ``bos_id``/``eos_id`` are the defaults of
    ``prefix``/``eos_id``); ``eos_id`` stays ``None`` when neither gives one.

    Raises:
      TypeError: ``contexts`` not a list; strings without a tokenizer.
      ValueError: empty ``contexts``; a token id outside the vocabulary.
    """
    if isinstance(contexts, (str, bytes)) or not hasattr(contexts, "__len__"):
        raise TypeError(f"contexts must be a list of contexts; got {type(contexts).__name__}")
    if len(contexts) == 0:
        raise ValueError("contexts must be a non-empty list of contexts (n >= 1)")
    if tokenizer is not None:
        contexts = [tokenizer.encode(c) if isinstance(c, str) else c for c in contexts]
        question = tokenizer.encode(question) if isinstance(question, str) else question
        prefix = [tokenizer.bos_id] if prefix is None else prefix
        eos_id = tokenizer.eos_id if eos_id is None else eos_id
    elif isinstance(question, str) or any(isinstance(c, str) for c in contexts):
        raise TypeError("string contexts or question need a tokenizer=...")
    from diffusionlab.lm.decode import _vocab
    high = _vocab(apply) - 1
    contexts = _checks.check_sequences(contexts, "contexts", high=high)
    question = _checks.check_sequences(question, "question", high=high, nested=False)
    return contexts, question, prefix, eos_id


def nbce_generate(apply, params, contexts, question, *, max_new_tokens: int,
                  beta: float = 0.25, eta: float = 0.1, top_p: float = 0.95,
                  pooling: str = "min_entropy", gap: float = DEFAULT_GAP,
                  temperature: float = 0.0,
                  key: jax.Array | None = None, tokenizer=None, prefix: Sequence[int] | None = None,
                  eos_id: int | None = None, pad_id: int | None = None,
                  max_length: int | None = None) -> NBCEOutput:
    r"""Generates an answer to ``question`` over ``n`` contexts with NBCE.

    Each step: $m = (\beta+1)\,\mathcal P[\log p(T\mid S_k)] - \beta\log p(T)$ with the
    reference loop's truncation, entropy, stickiness and $-\infty$ rule
    (:func:`~diffusionlab.nbce.nbce_step`), then the token $\arg\max m$ (greedy,
    ``temperature=0``) or a sample from $\mathrm{softmax}(m/\tau)$, fed to every row.

    Args:
      apply: the model's pure ``apply(params, tokens, cache)`` with ``init_cache``.
      params: its parameters.
      contexts: ``n >= 1`` contexts, token id sequences (or strings, with ``tokenizer``).
      question: the question (token ids, or a string with ``tokenizer``).
      max_new_tokens: decoding steps.
      beta: $\beta \ge -1$.
      eta: stickiness $\eta$.
      top_p: nucleus mass in (0, 1]; 1 switches truncation off.
      pooling: one of :data:`~diffusionlab.nbce.POOLINGS` (``"min_entropy"``,
        ``"average"``, ``"max"``, and the selection rules ``"margin"``, ``"entropy_gap"``,
        ``"max_kl"`` of :func:`~diffusionlab.nbce.nbce_step`).
      gap: the ``"entropy_gap"`` pooling's entropy window in nats, ``>= 0``.
      temperature: 0 for greedy decoding; > 0 samples (needs ``key``).
      key: PRNG key of the sampled tokens; greedy decoding draws nothing and needs none (a
        key given with ``temperature=0`` is checked, then not used).
      tokenizer: encodes string inputs (``encode``, ``bos_id``, ``eos_id``, ``pad_id``).
      prefix: tokens starting every row; default ``[tokenizer.bos_id]`` with a tokenizer,
        else none.
      eos_id: stops a row's answer; default ``tokenizer.eos_id`` or 2.
      pad_id: default ``apply.pad_id`` (or 0).
      max_length: the model's maximum length; default ``apply.max_length`` when present.

    Returns:
      An :class:`NBCEOutput` (tokens, per-step choices and entropies).

    Raises:
      ValueError: empty ``contexts``; a context plus question longer than ``max_length``
        (the message points to :func:`~diffusionlab.nbce.split_into_chunks`); ``beta < -1``;
        ``top_p`` outside (0, 1]; unknown pooling; ``gap < 0``; ``max_new_tokens < 1``; bad
        temperature.
    """
    validate_hyperparameters(beta=beta, top_p=top_p, pooling=pooling, gap=gap)
    _checks.check_real(eta, "eta")
    max_new_tokens = _checks.check_int(max_new_tokens, "max_new_tokens", low=1)
    _checks.check_real(temperature, "temperature", low=0)
    if temperature > 0 and key is None:
        raise ValueError("sampling (temperature > 0) needs a key")
    if key is not None:
        _checks.check_key(key)
    contexts, question, prefix, eos_id = encoded_inputs(apply, contexts, question,
                                                        tokenizer=tokenizer, prefix=prefix,
                                                        eos_id=eos_id)
    pad_id = getattr(apply, "pad_id", 0) if pad_id is None else pad_id
    max_length = getattr(apply, "max_length", None) if max_length is None else max_length
    prompts = nbce_prompts(contexts, question, prefix=prefix or (), pad_id=pad_id,
                           max_length=max_length)
    logits, cache = nbce_prefill(apply, params, prompts, max_new_tokens=max_new_tokens)
    greedy = temperature == 0
    return _nbce_decode(apply, params, logits, cache, None if greedy else key,
                       max_new_tokens=max_new_tokens, beta=beta, eta=eta, top_p=top_p,
                       temperature=max(temperature, 1e-6), pooling=pooling,
                       greedy=greedy, eos_id=2 if eos_id is None else eos_id, gap=gap)
