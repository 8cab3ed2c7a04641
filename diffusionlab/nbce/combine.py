r"""Training-free rules that combine ``n`` independently encoded contexts at decoding time.

Every rule answers a question over contexts $S_1,\dots,S_n$, each short enough for the model,
without fine-tuning, and decodes greedily:

* ``"nbce"``: naive-Bayes context extension (Su, https://kexue.fm/archives/9617):
  $(\beta+1)\,\mathcal P[\log p(T\mid S_k)] - \beta\log p(T)$ per token
  (:func:`~diffusionlab.nbce.nbce_generate`);
* ``"ensemble"``: the parallel ensemble (Yang et al., "Revisiting Parallel Context Windows",
  ACL 2023 Findings): a weighted mean of the rows' next-token *probabilities*,
  $p = \sum_k w_k\,p(T\mid S_k)$ (:func:`ensemble_step`); average-pooled NBCE with
  $\beta = 0$ is instead a mean of *log*-probabilities (a product of experts);
* ``"pcw"``, ``"ape"``, ``"exact"``: one query over the contexts' keys and values, encoded in
  parallel (:mod:`diffusionlab.nbce.parallel`): Parallel Context Windows (Ratner et al., ACL
  2023), Adaptive Parallel Encoding (Yang, Chen & Chen, ICLR 2025) and the exact merge of the
  per-block log-sum-exps (the query phase of Star Attention, Acharya et al. 2024).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from diffusionlab import _checks
from diffusionlab.lm.decode import check_prompts, prefill
from diffusionlab.nbce.generate import encoded_inputs, nbce_generate, nbce_prompts
from diffusionlab.nbce.parallel import (
    pad_contexts,
    parallel_decode,
    parallel_prefill,
    rule_options,
)

__all__ = ["RULES", "check_weights", "combine_generate", "ensemble_decode", "ensemble_step"]

RULES = ("nbce", "pcw", "ensemble", "ape", "exact")

# The options each rule reads; passing another rule's option is an error.
_OPTIONS = {
    "nbce": ("beta", "eta", "top_p", "pooling", "gap"),
    "ensemble": ("weights",),
    "ape": ("attention_temperature", "attention_scale"),
    "pcw": (),
    "exact": (),
}
# APE's defaults (Yang, Chen & Chen, ICLR 2025).
APE_TEMPERATURE = 0.9
APE_SCALE = 0.9


def check_weights(weights, n: int) -> np.ndarray:
    """The ensemble's ``n`` weights: non-negative, summing to 1 (to 1e-6); None gives
    ``1/n`` each.

    Raises:
      ValueError: naming ``weights``, for a wrong length, a negative or non-finite entry, or a
        sum other than 1.
    """
    if weights is None:
        return np.full(n, 1.0 / n)
    if isinstance(weights, (list, tuple)):
        weights = np.asarray(weights, np.float64)
    weights = np.asarray(_checks.float_array(weights, "weights", ndim=1), np.float64)
    if weights.shape != (n,):
        raise ValueError(f"weights must hold one weight per context (n={n}); got shape "
                         f"{weights.shape}")
    if np.any(weights < 0):
        raise ValueError(f"weights must be non-negative; got {weights.tolist()}")
    if abs(float(weights.sum()) - 1.0) > 1e-6:
        raise ValueError(f"weights must sum to 1; they sum to {float(weights.sum()):.8g}")
    return weights


def ensemble_step(logits_NxV, weights_N):
    r"""The parallel ensemble's next-token log-probabilities $\log\sum_k w_k\,p(T\mid S_k)$.

    Args:
      logits_NxV: ``(n, V)`` next-token logits, one row per context.
      weights_N: ``(n,)`` non-negative weights summing to 1.

    Returns:
      ``(V,)`` normalised log-probabilities of the mixture (computed in at least float32).
    """
    dtype = jnp.promote_types(jnp.asarray(logits_NxV).dtype, jnp.float32)
    logprobs_NxV = jax.nn.log_softmax(jnp.asarray(logits_NxV, dtype), axis=-1)
    log_w = jnp.log(jnp.asarray(weights_N, dtype))
    return jax.nn.logsumexp(logprobs_NxV + log_w[:, None], axis=0)


@functools.partial(jax.jit, static_argnames=("apply", "max_new_tokens", "eos_id"))
def ensemble_decode(apply, params, logits_NxV, cache, weights_N, *, max_new_tokens: int,
                    eos_id: int):
    """Greedy parallel-ensemble decoding from prefilled rows ``prefix + S_k + question``:
    each step takes $\\arg\\max_v \\sum_k w_k p_k(v)$ and feeds it to every row (a
    ``lax.scan``). Returns ``(T,)`` int32 tokens."""
    rows = logits_NxV.shape[0]

    def step(carry, _):
        logits_NxV, cache, done = carry
        token = jnp.argmax(ensemble_step(logits_NxV, weights_N)).astype(jnp.int32)
        token = jnp.where(done, eos_id, token)
        done = done | (token == eos_id)
        logits_Nx1xV, cache = apply(params, jnp.full((rows, 1), token, jnp.int32), cache)
        return (logits_Nx1xV[:, -1], cache, done), token

    _, tokens = jax.lax.scan(step, (logits_NxV, cache, jnp.zeros((), bool)), None,
                             length=max_new_tokens)
    return tokens


def _check_parallel_model(apply, rule: str) -> None:
    from diffusionlab.lm.model import LMApply
    if not isinstance(apply, LMApply):
        raise TypeError(f"rule={rule!r} recomputes the attention of a diffusionlab.lm "
                        f"LanguageModel: apply must be an LMApply (diffusionlab.lm.pure); got "
                        f"{type(apply).__name__}")


def combine_generate(apply, params, contexts, question, *, rule: str, max_new_tokens: int,
                     tokenizer=None, prefix: Sequence[int] | None = None,
                     eos_id: int | None = None, pad_id: int | None = None,
                     max_length: int | None = None, beta: float | None = None,
                     eta: float | None = None, top_p: float | None = None,
                     pooling: str | None = None, gap: float | None = None, weights=None,
                     attention_temperature: float | None = None,
                     attention_scale: float | None = None) -> jax.Array:
    r"""Greedy answer to ``question`` over ``n`` contexts, combined by one training-free rule.

    Rules (each context is encoded on its own; nothing is fine-tuned):

    * ``"nbce"``: $(\beta+1)\,\mathcal P[\log p(T\mid S_k)] - \beta\log p(T)$ (Su,
      https://kexue.fm/archives/9617), by :func:`~diffusionlab.nbce.nbce_generate`;
      options ``beta`` (0.25), ``eta`` (0.1), ``top_p`` (0.95), ``pooling``
      (``"min_entropy"``).
    * ``"ensemble"``: $\arg\max_v\sum_k w_k\,p(v\mid S_k)$, a weighted mean of probabilities
      (Yang et al., ACL 2023 Findings); option ``weights`` (default $1/n$ each).
    * ``"pcw"``: Parallel Context Windows (Ratner et al., ACL 2023): the windows
      ``prefix + S_k`` attend within themselves with the same position ids; the question and
      answer attend to all of them, from the position after the longest window.
    * ``"ape"``: Adaptive Parallel Encoding (Yang, Chen & Chen, ICLR 2025): the contexts
      follow one shared ``prefix``, with the same position ids; at query time the logits to
      context keys are divided by ``attention_temperature`` $T$ and the context part's
      log-sum-exp is multiplied by ``attention_scale`` $S$ (both default 0.9). At
      $T = S = 1$ without a prefix it is ``"pcw"``.
    * ``"exact"``: the blocks take the positions of the concatenation ``prefix + S_1 + … +
      S_n`` and the query attends to all of them exactly, the per-block softmaxes merged
      through their log-sum-exps (Star Attention's query phase, Acharya et al. 2024).
      Positions run past the trained length; no length check is made.

    With ``n = 1`` every rule is ordinary greedy decoding of ``prefix + S_1 + question``
    (``"nbce"`` at ``beta = 0``; ``"ape"`` at $T = S = 1$).

    Args:
      apply: the model's pure ``apply``; ``"pcw"``, ``"ape"`` and ``"exact"`` need a
        :class:`~diffusionlab.lm.LMApply` (they recompute its attention).
      params: its parameters.
      contexts: ``n >= 1`` contexts: token id sequences, or strings with ``tokenizer``.
      question: the question (token ids, or a string with ``tokenizer``).
      rule: one of ``"nbce"``, ``"pcw"``, ``"ensemble"``, ``"ape"``, ``"exact"``.
      max_new_tokens: decoding steps, ``>= 1``.
      tokenizer: encodes string inputs (``encode``, ``bos_id``, ``eos_id``).
      prefix: tokens before every context (default ``[tokenizer.bos_id]`` with a tokenizer,
        else none); shared once by ``"ape"`` and ``"exact"``, copied into every window by
        ``"pcw"``.
      eos_id: after it the answer repeats ``eos_id``; default ``tokenizer.eos_id`` or 2.
      pad_id: default ``apply.pad_id`` (or 0).
      max_length: the trained length (default ``apply.max_length``): every
        ``prefix + context + question`` must fit, except for ``"exact"``.
      beta, eta, top_p, pooling, gap: ``"nbce"`` only (``pooling`` may be a selection rule
        for the large-n gap, ``"margin"``, ``"entropy_gap"`` with its window ``gap``, or
        ``"max_kl"``: :func:`~diffusionlab.nbce.nbce_step`).
      weights: ``"ensemble"`` only: ``(n,)`` non-negative, summing to 1.
      attention_temperature, attention_scale: ``"ape"`` only: $T > 0$, $S > 0$.

    Returns:
      ``(max_new_tokens,)`` int32 generated tokens (``eos_id`` repeated after the first EOS).

    Raises:
      ValueError: naming the argument: an unknown ``rule``; an option of another rule;
        ``attention_temperature`` or ``attention_scale`` <= 0; ``weights`` negative, of the
        wrong length or not summing to 1; empty ``contexts``; a context plus question longer
        than ``max_length``; ``max_new_tokens < 1``; and ``"nbce"``'s own checks.
      TypeError: string inputs without a tokenizer; ``"pcw"``, ``"ape"`` or ``"exact"`` with a
        model that is not an :class:`~diffusionlab.lm.LMApply`.
    """
    rule = _checks.check_choice(rule, "rule", RULES)
    given = {"beta": beta, "eta": eta, "top_p": top_p, "pooling": pooling, "gap": gap,
             "weights": weights,
             "attention_temperature": attention_temperature,
             "attention_scale": attention_scale}
    for name, value in given.items():
        if value is not None and name not in _OPTIONS[rule]:
            owner = next(r for r, names in _OPTIONS.items() if name in names)
            raise ValueError(f"{name} is an option of rule={owner!r}, not of rule={rule!r}")
    if rule == "nbce":
        options = {k: given[k] for k in _OPTIONS["nbce"] if given[k] is not None}
        return nbce_generate(apply, params, contexts, question, max_new_tokens=max_new_tokens,
                             tokenizer=tokenizer, prefix=prefix, eos_id=eos_id, pad_id=pad_id,
                             max_length=max_length, **options).tokens
    temperature = APE_TEMPERATURE if attention_temperature is None else attention_temperature
    scale = APE_SCALE if attention_scale is None else attention_scale
    if rule == "ape":
        temperature = _checks.check_real(temperature, "attention_temperature", low=0,
                                         low_open=True)
        scale = _checks.check_real(scale, "attention_scale", low=0, low_open=True)
    else:
        temperature = scale = 1.0
    max_new_tokens = _checks.check_int(max_new_tokens, "max_new_tokens", low=1)
    contexts, question, prefix, eos_id = encoded_inputs(apply, contexts, question,
                                                        tokenizer=tokenizer, prefix=prefix,
                                                        eos_id=eos_id)
    from diffusionlab.lm.decode import _vocab
    high = _vocab(apply) - 1
    prefix = _checks.check_sequences(prefix or [], "prefix", high=high, nested=False)
    eos_id = _checks.check_int(2 if eos_id is None else eos_id, "eos_id", low=-1, high=high)
    pad_id = getattr(apply, "pad_id", 0) if pad_id is None else pad_id
    pad_id = _checks.check_int(pad_id, "pad_id", low=0, high=high)
    max_length = getattr(apply, "max_length", None) if max_length is None else max_length

    if rule == "ensemble":
        weights_N = jnp.asarray(check_weights(weights, len(contexts)), jnp.float32)
        rows = nbce_prompts(contexts, question, prefix=prefix, pad_id=pad_id,
                            max_length=max_length)[1:]
        rows = check_prompts(apply, rows, max_new_tokens)
        logits, cache = prefill(apply, params, rows, max_new_tokens=max_new_tokens)
        return ensemble_decode(apply, params, logits, cache, weights_N,
                               max_new_tokens=max_new_tokens, eos_id=eos_id)

    _check_parallel_model(apply, rule)
    if any(t == pad_id for t in prefix + question) or any(pad_id in c for c in contexts):
        raise ValueError(f"contexts, question and prefix must not contain pad_id={pad_id}")
    if not question:
        raise ValueError("question must hold at least one token")
    if rule != "exact" and max_length is not None:
        # Validates the lengths exactly as NBCE's rows do (same message).
        nbce_prompts(contexts, question, prefix=prefix, pad_id=pad_id, max_length=max_length)
    blocks = jnp.asarray(pad_contexts(contexts, pad_id=pad_id))
    options = rule_options(rule, len(contexts), temperature=temperature, scale=scale)
    logits, state = parallel_prefill(apply, params, jnp.asarray(prefix, jnp.int32), blocks,
                                     jnp.asarray(question, jnp.int32), options,
                                     max_new_tokens=max_new_tokens)
    return parallel_decode(apply, params, logits, state, options,
                           max_new_tokens=max_new_tokens, eos_id=eos_id)
