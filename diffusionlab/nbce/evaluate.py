"""Exact-match accuracy of NBCE and of its baselines on multi-document questions.

The methods compared (each answers one :class:`~diffusionlab.lm.data.QAExample`):

* ``nbce``: one row per document plus the empty-context row, merged by :mod:`.step`;
* ``truncate``: the documents concatenated, keeping only the last ``L`` tokens;
* ``concat``: all documents concatenated, run far beyond the trained length ``L``;
* ``oracle``: only the documents that hold the answer's facts.

Questions are batched: NBCE rows of many questions go through one ``vmap``-ed prefill, and
every decoding variant (pooling, β, η, top-p) reuses that prefill.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from diffusionlab.lm.data import QACorpus, QAExample
from diffusionlab.lm.decode import generate, left_pad
from diffusionlab.lm.tokenizer import ByteTokenizer
from diffusionlab.nbce.combine import ensemble_decode
from diffusionlab.nbce.generate import nbce_decode, nbce_prefill, nbce_prompts
from diffusionlab.nbce.step import (
    DEFAULT_GAP,
    SELECTIONS,
    nbce_step_unchecked,
    validate_hyperparameters,
)

__all__ = ["NBCESettings", "RowAnswers", "baseline_answers", "exact_match", "first_choice_hits",
           "first_choice_rates", "held_out_questions", "nbce_answers", "row_answers"]

BASELINES = ("truncate", "concat", "oracle")


def held_out_questions(corpus: QACorpus, num_documents: int, *, seeds: Sequence[int],
                       count: int) -> list[QAExample]:
    """``count`` one-key questions over ``num_documents`` documents of ``corpus``'s test split
    per seed, seed after seed (``len(seeds) * count`` in all).

    Seed ``s`` draws from ``numpy.random.default_rng([s, num_documents])``, so experiments that
    ask at the same corpus, n and seed ask the same questions, and their scores pair.
    """
    test = dataclasses.replace(corpus, split="test")
    questions = []
    for seed in seeds:
        rng = np.random.default_rng([seed, num_documents])
        questions += [test.single(num_documents, rng) for _ in range(count)]
    return questions


@dataclasses.dataclass(frozen=True)
class NBCESettings:
    """One NBCE decoding variant (greedy); ``gap`` is read by the ``"entropy_gap"`` pooling
    only."""

    pooling: str = "min_entropy"
    beta: float = 0.25
    eta: float = 0.1
    top_p: float = 0.95
    gap: float = DEFAULT_GAP

    def __post_init__(self):
        validate_hyperparameters(beta=self.beta, top_p=self.top_p, pooling=self.pooling,
                                 gap=self.gap)


def exact_match(answers: Sequence[str], examples: Sequence[QAExample]) -> np.ndarray:
    """1.0 where the generated answer equals the expected one exactly, else 0.0."""
    return np.asarray([a == e.answer for a, e in zip(answers, examples, strict=True)], float)


def _batch_size(total: int, limit: int) -> int:
    """Questions per batch for ``total`` questions and at most ``limit`` per batch (at least
    one): the fewest batches, filled evenly. Every batch is padded to this size (one compiled
    program), so the padding is under one question per batch, never a batch of copies."""
    limit = max(1, min(total, limit))
    batches = -(-total // limit)
    return -(-total // batches)


def _chunks(total: int, size: int):
    for start in range(0, total, size):
        yield slice(start, min(start + size, total))


def _batched(fn, inputs: Sequence[np.ndarray], size: int):
    """``fn`` over the leading axis of ``inputs`` in batches of ``size``, the last padded with
    copies of its first row (one program for all batches); ``fn``'s outputs (a pytree of
    arrays) come back concatenated on the host, the padding cut off."""
    outs = []
    for part in _chunks(inputs[0].shape[0], size):
        batch = [x[part] for x in inputs]
        missing = size - batch[0].shape[0]
        if missing:
            batch = [np.concatenate([x, np.repeat(x[:1], missing, 0)]) for x in batch]
        out = fn(*[jnp.asarray(x) for x in batch])
        outs.append(jax.tree.map(lambda a, keep=size - missing: np.asarray(a)[:keep], out))
    return jax.tree.map(lambda *parts: np.concatenate(parts), *outs)


@functools.partial(jax.jit, static_argnames=("apply", "max_new_tokens", "poolings", "choices",
                                             "ensemble", "eos_id"))
def _nbce_batch(apply, params, prompts_QxRxP, hyper, top_p, *, max_new_tokens, poolings,
                choices=(), ensemble=False, eos_id=2):
    """Prefill once per question, then decode every setting: ``hyper[i]`` is an ``(S_i, 4)``
    array of (β, η, top-p, gap) for pooling ``poolings[i]``, vmapped so that values are
    traced. From the same prefill: the first choice of each selection in ``choices`` (at
    top-p ``top_p``) and, with ``ensemble``, the parallel ensemble's tokens over the ``n``
    context rows (the empty-context row weighted 0)."""

    def one(prompts_RxP):
        logits, cache = nbce_prefill(apply, params, prompts_RxP, max_new_tokens=max_new_tokens)

        def decode(pooling, values_4):
            return nbce_decode(apply, params, logits, cache,
                               max_new_tokens=max_new_tokens, beta=values_4[0],
                               eta=values_4[1], top_p=values_4[2], temperature=1.0,
                               pooling=pooling, greedy=True, gap=values_4[3]).tokens

        tokens = tuple(jax.vmap(functools.partial(decode, pooling))(values_Sx4)
                       for pooling, values_Sx4 in zip(poolings, hyper, strict=True))
        first = _first_choice_ids(logits, top_p, choices)
        rows = logits.shape[0]
        weights = jnp.where(jnp.arange(rows) > 0, 1.0 / (rows - 1), 0.0)
        mixed = ensemble_decode(apply, params, logits, cache, weights,
                                max_new_tokens=max_new_tokens, eos_id=eos_id) if ensemble \
            else jnp.zeros((0,), jnp.int32)
        return tokens, first, mixed

    return jax.vmap(one)(prompts_QxRxP)


def _nbce_prompt_batch(apply, examples: Sequence[QAExample], tokenizer: ByteTokenizer) -> np.ndarray:
    """``(Q, n+1, L)`` NBCE rows of every example, each padded to ``apply.max_length``."""
    num_docs = {len(e.documents) for e in examples}
    if len(num_docs) != 1:
        raise ValueError(f"examples must share their number of documents, got {num_docs}")
    return np.stack([
        nbce_prompts([tokenizer.encode(d) for d in e.documents], tokenizer.encode(e.question),
                     prefix=[tokenizer.bos_id], pad_id=apply.pad_id, max_length=apply.max_length,
                     length=apply.max_length)
        for e in examples])


def _first_choice_ids(logits_RxV, top_p, poolings):
    """``(len(poolings),)`` document index (0-based, the empty row -1) each selection picks
    from the rows' next-token logits at the first answer token."""
    return jnp.stack([nbce_step_unchecked(logits_RxV, beta=0.0, eta=0.0, top_p=top_p,
                                          prev_choice=jnp.int32(0), pooling=pooling)[1] - 1
                      for pooling in poolings]) if poolings else jnp.zeros((0,), jnp.int32)


@functools.partial(jax.jit, static_argnames=("apply", "poolings"))
def _first_choices(apply, params, prompts_QxRxP, top_p, poolings=("min_entropy",)):
    def one(prompts_RxP):
        logits_RxPxV, _ = apply(params, prompts_RxP, None)
        return _first_choice_ids(logits_RxPxV[:, -1], top_p, poolings)

    # One question at a time bounds the memory at (n+1) rows.
    return jax.lax.map(one, prompts_QxRxP)


def first_choice_rates(apply, params, examples: Sequence[QAExample], *,
                       tokenizer: ByteTokenizer, top_p: float = 0.95,
                       poolings: Sequence[str] = ("min_entropy",)) -> dict[str, np.ndarray]:
    """:func:`first_choice_hits` for several selections at once (one prefill per question).

    Returns:
      ``{pooling: (Q,) array of 1.0 / 0.0}``.

    Raises:
      ValueError: a pooling that is not a selection (:data:`~diffusionlab.nbce.step.SELECTIONS`).
    """
    poolings = tuple(poolings)
    bad = [p for p in poolings if p not in SELECTIONS]
    if bad or not poolings:
        raise ValueError(f"poolings must be a non-empty list among {SELECTIONS}; got {poolings}")
    prompts = _nbce_prompt_batch(apply, examples, tokenizer)
    chosen = np.asarray(_first_choices(apply, params, jnp.asarray(prompts), jnp.float32(top_p),
                                       poolings=poolings))
    return {p: np.asarray([c in e.relevant for c, e in zip(chosen[:, i], examples, strict=True)],
                          float) for i, p in enumerate(poolings)}


def first_choice_hits(apply, params, examples: Sequence[QAExample], *, tokenizer: ByteTokenizer,
                      top_p: float = 0.95, pooling: str = "min_entropy") -> np.ndarray:
    """1.0 where the selection's *first* choice is a document that holds the answer.

    The first answer token is where the contexts disagree most: the relevant document should
    predict the value's first digit sharply and every other document should be unsure. A wrong
    first choice is the usual way NBCE fails as n grows (the least uncertain of many irrelevant
    documents beats the relevant one).

    ``pooling`` names the selection: ``"min_entropy"`` (default), ``"margin"`` or
    ``"max_kl"`` (see :func:`~diffusionlab.nbce.nbce_step`); raises ValueError otherwise.
    """
    if pooling not in SELECTIONS:
        raise ValueError(f"pooling must be one of {SELECTIONS}; got {pooling!r}")
    return first_choice_rates(apply, params, examples, tokenizer=tokenizer, top_p=top_p,
                              poolings=(pooling,))[pooling]


def nbce_answers(apply, params, examples: Sequence[QAExample], settings: Sequence[NBCESettings],
                 *, tokenizer: ByteTokenizer, max_new_tokens: int,
                 rows_per_batch: int = 1024) -> dict[NBCESettings, list[str]]:
    """Greedy NBCE answers for every example under every setting.

    All examples must have the same number of documents; each row is padded to
    ``apply.max_length`` so that one compiled program serves every batch.

    Returns:
      ``{settings: [answer text per example]}``.
    """
    return row_answers(apply, params, examples, settings, tokenizer=tokenizer,
                       max_new_tokens=max_new_tokens, rows_per_batch=rows_per_batch).nbce


@dataclasses.dataclass(frozen=True)
class RowAnswers:
    """What :func:`row_answers` decodes from one prefill of the ``n + 1`` NBCE rows.

    Attributes:
      nbce: ``{settings: [answer text per example]}``.
      first_choice: ``{selection: (Q,) array}``, 1.0 where the selection's first choice is a
        document that holds the answer (:func:`first_choice_hits`).
      ensemble: the parallel ensemble's answers (equal weights over the ``n`` documents), or
        None when not asked for.
    """

    nbce: dict
    first_choice: dict
    ensemble: list[str] | None


def row_answers(apply, params, examples: Sequence[QAExample], settings: Sequence[NBCESettings],
                *, tokenizer: ByteTokenizer, max_new_tokens: int,
                first_choice: Sequence[str] = (), ensemble: bool = False, top_p: float = 0.95,
                rows_per_batch: int = 1024) -> RowAnswers:
    """NBCE answers under every setting, the selections' first choices and the parallel
    ensemble's answers, all from one prefill of each question's ``n + 1`` rows (the empty
    context and one row per document).

    Equal to :func:`nbce_answers`, :func:`first_choice_rates` and
    :func:`~diffusionlab.nbce.combine_answers`' ``"ensemble"`` called one by one (which prefill
    the same rows three times), up to float rounding in near-tied greedy choices: the
    ensemble weights the empty-context row 0, which leaves its mixture of the n documents
    unchanged.

    Args:
      settings: the NBCE decoding variants (at least one).
      first_choice: selections (:data:`~diffusionlab.nbce.step.SELECTIONS`) whose first choice
        to score, at top-p ``top_p`` in (0, 1].
      ensemble: also decode the parallel ensemble.
      rows_per_batch: about how many rows are prefilled at once (memory).

    Returns:
      :class:`RowAnswers`.

    Raises:
      ValueError: no settings, a first-choice pooling that is not a selection, examples with
        different numbers of documents.
    """
    if not settings:
        raise ValueError("settings must hold at least one NBCESettings")
    choices = tuple(first_choice)
    bad = [p for p in choices if p not in SELECTIONS]
    if bad:
        raise ValueError(f"first_choice must be selections among {SELECTIONS}; got {bad}")
    validate_hyperparameters(beta=0.0, top_p=top_p, pooling="min_entropy")
    prompts = _nbce_prompt_batch(apply, examples, tokenizer)
    rows = prompts.shape[1]
    settings = tuple(dict.fromkeys(settings))
    poolings = tuple(dict.fromkeys(s.pooling for s in settings))
    groups = [[s for s in settings if s.pooling == p] for p in poolings]
    hyper = tuple(jnp.asarray([[s.beta, s.eta, s.top_p, s.gap] for s in group], jnp.float32)
                  for group in groups)
    size = _batch_size(len(examples),
                       rows_per_batch // (rows * (max(len(g) for g in groups) + ensemble)))
    outs, chosen, tokens = _batched(
        functools.partial(_nbce_batch, apply, params, hyper=hyper, top_p=jnp.float32(top_p),
                          max_new_tokens=max_new_tokens, poolings=poolings, choices=choices,
                          ensemble=ensemble, eos_id=tokenizer.eos_id),
        [prompts], size)
    decoded = {s: [tokenizer.decode(t) for t in tokens_QxSxT[:, k]]
               for group, tokens_QxSxT in zip(groups, outs, strict=True)
               for k, s in enumerate(group)}
    answers = {s: decoded[s] for s in settings}
    hits = {p: np.asarray([c in e.relevant for c, e in zip(chosen[:, i], examples, strict=True)],
                          float) for i, p in enumerate(choices)}
    return RowAnswers(answers, hits,
                      [tokenizer.decode(t) for t in tokens] if ensemble else None)


def _baseline_prompt(example: QAExample, method: str, tokenizer: ByteTokenizer,
                     max_length: int) -> np.ndarray:
    question = tokenizer.encode(example.question)
    if method == "oracle":
        text = " ".join(example.documents[i] for i in example.relevant)
        return tokenizer.encode(text + example.question, bos=True)
    body = tokenizer.encode(" ".join(example.documents))
    if method == "truncate":
        keep = max_length - 1 - len(question)
        return np.concatenate([[tokenizer.bos_id], body[-keep:], question]).astype(np.int32)
    return np.concatenate([[tokenizer.bos_id], body, question]).astype(np.int32)


def baseline_answers(apply, params, examples: Sequence[QAExample], method: str, *,
                     tokenizer: ByteTokenizer, max_new_tokens: int,
                     tokens_per_batch: int = 16384) -> list[str]:
    """Greedy answers of a baseline: ``"truncate"``, ``"concat"`` or ``"oracle"``."""
    if method not in BASELINES:
        raise ValueError(f"method must be one of {BASELINES}, got {method!r}")
    prompts = [_baseline_prompt(e, method, tokenizer, apply.max_length) for e in examples]
    # Lengths in buckets so that batches of similar questions share one compilation.
    bucket = apply.max_length if method != "concat" else 256
    length = -(-max(len(p) for p in prompts) // bucket) * bucket
    padded = left_pad(prompts, pad_id=apply.pad_id, length=length)
    # Concatenation is quadratic in its length: batch fewer of the long prompts at once.
    size = _batch_size(len(examples), tokens_per_batch // length if method != "concat"
                       else tokens_per_batch * 64 // (length * length))
    out = _batched(functools.partial(generate, apply, params, max_new_tokens=max_new_tokens,
                                     eos_id=tokenizer.eos_id), [padded], size)
    return [tokenizer.decode(t) for t in out]
