"""Exact-match answers and decoding cost of the rival combination rules on the QA corpus.

The batched counterparts of :func:`~diffusionlab.nbce.combine_generate` for the experiments:
many questions at once (``vmap``), the three parallel-encoding rules through one compiled
program (their differences are traced values, :func:`~diffusionlab.nbce.parallel.rule_options`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from diffusionlab import _checks
from diffusionlab.lm.data import QAExample
from diffusionlab.lm.decode import prefill
from diffusionlab.lm.tokenizer import ByteTokenizer
from diffusionlab.nbce.combine import APE_SCALE, APE_TEMPERATURE, ensemble_decode
from diffusionlab.nbce.cost import DecodingCost, DecodingProgram, measure, prefilled_program
from diffusionlab.nbce.evaluate import _batch_size, _batched, _nbce_prompt_batch
from diffusionlab.nbce.parallel import (
    PARALLEL_RULES,
    ParallelOptions,
    encode_blocks,
    pad_contexts,
    parallel_decode,
    parallel_prefill,
    query_phase,
    rule_options,
)

__all__ = ["COMBINE_RULES", "combine_answers", "parallel_answers", "rule_cost", "rule_program"]

COMBINE_RULES = ("ensemble", *PARALLEL_RULES)


def _options(rule: str, n: int, temperature: float = APE_TEMPERATURE,
             scale: float = APE_SCALE) -> ParallelOptions:
    return rule_options(rule, n, temperature=temperature, scale=scale)


def _parallel_inputs(apply, examples: Sequence[QAExample], tokenizer: ByteTokenizer):
    """``(Q, n, C)`` right-padded contexts (``C = L - 1 - question``) and ``(Q, q)`` questions."""
    questions = [tokenizer.encode(e.question) for e in examples]
    if len({len(q) for q in questions}) != 1:
        raise ValueError("the batched rules need questions of one length (no padding inside "
                         "the query row)")
    width = apply.max_length - 1 - len(questions[0])
    contexts = np.stack([pad_contexts([tokenizer.encode(d) for d in e.documents],
                                      pad_id=apply.pad_id, length=width) for e in examples])
    return contexts, np.stack(questions).astype(np.int32)


@functools.partial(jax.jit, static_argnames=("apply", "max_new_tokens", "eos_id"))
def _parallel_batch(apply, params, prefix_P, sequential, options_R, contexts_QxNxC, questions_QxL,
                    *, max_new_tokens: int, eos_id: int):
    """``(Q, R, T)`` tokens of every question under ``R`` rule settings that share one block
    encoding (``sequential``); the settings are traced, so every rule and APE setting shares
    this program."""

    def one(contexts_NxC, question_L):
        state = encode_blocks(apply, params, prefix_P, contexts_NxC, sequential,
                              own_slots=question_L.shape[0] + max_new_tokens)
        # A loop over the settings, not a vmap: XLA:CPU (jaxlib 0.10) crashed with SIGSEGV
        # running the vmapped form at n = 2, two settings, 144 questions.
        return jax.lax.map(lambda options: query_phase(
            apply, params, state, question_L, options, max_new_tokens=max_new_tokens,
            eos_id=eos_id), options_R)

    return jax.vmap(one)(contexts_QxNxC, questions_QxL)


@functools.partial(jax.jit, static_argnames=("apply", "max_new_tokens", "eos_id"))
def _ensemble_batch(apply, params, rows_QxNxP, *, max_new_tokens: int, eos_id: int):
    n = rows_QxNxP.shape[1]

    def one(rows_NxP):
        logits, cache = prefill(apply, params, rows_NxP, max_new_tokens=max_new_tokens)
        return ensemble_decode(apply, params, logits, cache, jnp.full((n,), 1.0 / n),
                               max_new_tokens=max_new_tokens, eos_id=eos_id)

    return jax.vmap(one)(rows_QxNxP)


def _documents_and_batch(examples: Sequence[QAExample], rows_per_batch: int) -> tuple[int, int]:
    """The examples' common number of documents ``n`` and how many questions go in a batch."""
    if not examples:
        raise ValueError("examples must be non-empty")
    n = len(examples[0].documents)
    if any(len(e.documents) != n for e in examples):
        raise ValueError("examples must share their number of documents")
    return n, _batch_size(len(examples), rows_per_batch // n)


def combine_answers(apply, params, examples: Sequence[QAExample], rules: Sequence[str], *,
                    tokenizer: ByteTokenizer, max_new_tokens: int,
                    rows_per_batch: int = 1024, ape_temperature: float = APE_TEMPERATURE,
                    ape_scale: float = APE_SCALE) -> dict[str, list[str]]:
    """Greedy answers of every example under every rule in ``rules`` (``"ensemble"``,
    ``"pcw"``, ``"ape"``, ``"exact"``), with the BOS token as prefix.

    All examples must have the same number of documents and question length. ``"ape"`` uses
    the attention temperature ``ape_temperature`` and scale ``ape_scale`` (> 0; default 0.9
    each, the APE paper's); they are traced, so a sweep compiles one program per shape.

    Returns:
      ``{rule: [answer text per example]}``.

    Raises:
      ValueError: an unknown rule, examples of different sizes, ``ape_temperature`` or
        ``ape_scale`` not > 0.
    """
    ape_temperature = _checks.check_real(ape_temperature, "ape_temperature", low=0,
                                         low_open=True)
    ape_scale = _checks.check_real(ape_scale, "ape_scale", low=0, low_open=True)
    unknown = [r for r in rules if r not in COMBINE_RULES]
    if unknown:
        raise ValueError(f"rules must be among {COMBINE_RULES}; got {unknown}")
    n, size = _documents_and_batch(examples, rows_per_batch)
    answers: dict[str, list[str]] = {}
    if "ensemble" in rules:
        rows = _nbce_prompt_batch(apply, examples, tokenizer)[:, 1:]
        tokens = _batched(functools.partial(_ensemble_batch, apply, params,
                                            max_new_tokens=max_new_tokens,
                                            eos_id=tokenizer.eos_id), [rows], size)
        answers["ensemble"] = [tokenizer.decode(t) for t in tokens]
    parallel = [r for r in rules if r in PARALLEL_RULES]
    if parallel:
        got = parallel_answers(apply, params, examples,
                               [_options(rule, n, ape_temperature, ape_scale) for rule in parallel],
                               tokenizer=tokenizer, max_new_tokens=max_new_tokens,
                               rows_per_batch=rows_per_batch)
        answers.update(zip(parallel, got, strict=True))
    return {r: answers[r] for r in rules}


def parallel_answers(apply, params, examples: Sequence[QAExample],
                     options: Sequence[ParallelOptions], *, tokenizer: ByteTokenizer,
                     max_new_tokens: int, rows_per_batch: int = 1024) -> list[list[str]]:
    """Greedy answers of every example under each parallel-encoding setting in ``options``
    (:func:`~diffusionlab.nbce.parallel.rule_options`: PCW, APE at any T and S, the exact
    block merge), with the BOS token as prefix.

    The blocks are encoded once per question for all settings that place them alike (PCW and
    APE at every T, S; the exact merge apart) and only the query phase runs per setting, so an
    APE grid costs one encoding, not one per cell. Answers equal :func:`combine_answers`'
    one rule at a time, up to float rounding in near-tied greedy choices.

    Args:
      examples: questions with one number of documents ``n`` and one question length.
      options: ``R`` settings, each built for ``n`` documents.
      rows_per_batch: about how many documents are encoded at once (memory).

    Returns:
      ``R`` lists of answer texts, in the order of ``options``, one per example.

    Raises:
      ValueError: empty ``options`` or ``examples``, examples of different sizes.
      TypeError: an entry of ``options`` that is not a ``ParallelOptions``.
    """
    if not options:
        raise ValueError("options must hold at least one ParallelOptions")
    bad = [type(o).__name__ for o in options if not isinstance(o, ParallelOptions)]
    if bad:
        raise TypeError(f"options must be ParallelOptions (rule_options); got {bad}")
    _, size = _documents_and_batch(examples, rows_per_batch)
    contexts, questions = _parallel_inputs(apply, examples, tokenizer)
    prefix = jnp.asarray([tokenizer.bos_id], jnp.int32)
    answers: list[list[str] | None] = [None] * len(options)
    for sequential in (False, True):
        group = [i for i, o in enumerate(options) if bool(o.sequential) == sequential]
        if not group:
            continue
        stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *[options[i] for i in group])
        tokens_QxRxT = _batched(functools.partial(_parallel_batch, apply, params, prefix,
                                                  jnp.asarray(sequential), stacked,
                                                  max_new_tokens=max_new_tokens,
                                                  eos_id=tokenizer.eos_id),
                                [contexts, questions], size)
        for k, i in enumerate(group):
            answers[i] = [tokenizer.decode(t) for t in tokens_QxRxT[:, k]]
    return answers


def rule_program(apply, params, example: QAExample, rule: str, *, tokenizer: ByteTokenizer,
                 steps: int = 16) -> DecodingProgram:
    """One question under ``rule`` (``"ensemble"``, ``"pcw"``, ``"ape"``, ``"exact"``),
    prefilled and ready to time (:class:`~diffusionlab.nbce.cost.DecodingProgram`); its memory
    is the bytes of the cache (and its masks) or of the blocks' keys and values plus the
    query's own cache.

    Raises:
      ValueError: an unknown ``rule``.
    """
    if rule not in COMBINE_RULES:
        raise ValueError(f"rule must be one of {COMBINE_RULES}; got {rule!r}")
    n = len(example.documents)
    eos_id = 2  # every step runs anyway (a scan): the timing does not depend on it
    if rule == "ensemble":
        rows = jnp.asarray(_nbce_prompt_batch(apply, [example], tokenizer)[0, 1:])
        weights = jnp.full((n,), 1.0 / n)

        def run_prefill():
            return prefill(apply, params, rows, max_new_tokens=steps)

        def decode_steps(params, logits, state, max_new_tokens):
            return ensemble_decode(apply, params, logits, state, weights,
                                   max_new_tokens=max_new_tokens, eos_id=eos_id)
    else:
        contexts, questions = _parallel_inputs(apply, [example], tokenizer)
        options = _options(rule, n)
        prefix = jnp.asarray([tokenizer.bos_id], jnp.int32)
        blocks, question = jnp.asarray(contexts[0]), jnp.asarray(questions[0])

        def run_prefill():
            return parallel_prefill(apply, params, prefix, blocks, question, options,
                                    max_new_tokens=steps)

        def decode_steps(params, logits, state, max_new_tokens):
            return parallel_decode(apply, params, logits, state, options,
                                   max_new_tokens=max_new_tokens, eos_id=eos_id)
    return prefilled_program(params, run_prefill, decode_steps, steps=steps)


def rule_cost(apply, params, example: QAExample, rule: str, *, tokenizer: ByteTokenizer,
              steps: int = 16, repeats: int = 3) -> DecodingCost:
    """Times one question's prefill and ``steps`` greedy decoding steps under ``rule``
    (:func:`rule_program`), ``repeats`` times back to back; the best is kept."""
    return measure(rule_program(apply, params, example, rule, tokenizer=tokenizer, steps=steps),
                   repeats=repeats)
