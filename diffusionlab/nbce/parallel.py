r"""Parallel encoding of independent contexts and exact attention over their blocks.

Three training-free rules share one mechanism: each context $S_k$ is encoded on its own (its
tokens attend to the shared prefix and to themselves only), and the question and the answer
then attend to every block at once. They differ in the positions of the blocks, in how the
prefix is counted, and in how the attention over the context keys is weighted:

* ``"pcw"``, Parallel Context Windows (Ratner et al., ACL 2023, arXiv:2212.10947): every
  window is ``prefix + S_k`` with the same position ids $0,1,\dots$ (left-aligned); the task
  tokens take positions after the longest window and attend to all windows (so to ``n``
  copies of the prefix);
* ``"ape"``, Adaptive Parallel Encoding (Yang, Chen & Chen, ICLR 2025): the contexts follow one
  shared prefix, with the same position ids; at query time the attention logits to context
  keys are divided by a temperature $T$ and the context part's log-sum-exp is multiplied by a
  scale $S$ before it is merged with the prefix and query parts;
* ``"exact"``, the query phase of Star Attention (Acharya et al., 2024): the blocks take the
  positions of the concatenation ``prefix + S_1 + … + S_n`` and the query's attention over
  all blocks is merged exactly from the per-block log-sum-exps (:func:`merge_attention`), so
  it equals full attention over the concatenated keys; what it loses is only position
  extrapolation (positions run past the trained length).

The attention of one query over a group of keys returns its output $o_g$ and log-sum-exp
$m_g$; the groups (prefix, context blocks, the query's own tokens) are merged with
$o = \sum_g e^{m_g - M} o_g$, $M = \log\sum_g e^{m_g}$. APE replaces the context group's
$m_c$ by $S\,m_c$ (with its logits divided by $T$); at $T = S = 1$ and without a prefix it
is PCW. PCW's ``n`` identical prefix copies are one prefix group with $m + \log n$.

Token shift (:class:`~diffusionlab.lm.shift.TokenShift`): a block's first tokens see the last
tokens of the prefix (``"exact"``: of the concatenation before the block). The question's
first tokens see the last tokens before it: in ``"exact"`` those of the concatenation; in
``"pcw"`` and ``"ape"``, where the windows are unordered, the mean over windows of each
window's last tokens (the shift is linear, so this is the mean of the shift terms). With one
context every rule is ordinary decoding of ``prefix + S_1 + question``.

The model must be a :class:`~diffusionlab.lm.LanguageModel` used through its
:class:`~diffusionlab.lm.LMApply`: the attention is recomputed here from its own modules
(RoPE, the blocks' projections, norms and MLPs), the model itself is unchanged.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from diffusionlab.nn.transformer import rotary_embedding

__all__ = ["PARALLEL_RULES", "ParallelOptions", "ParallelState", "attention_parts",
           "encode_blocks", "merge_attention", "pad_contexts", "parallel_decode",
           "parallel_prefill", "query_phase", "rule_options"]

PARALLEL_RULES = ("pcw", "ape", "exact")


def attention_parts(q_BxLxHxK, k_BxSxHxK, v_BxSxHxK, mask_BxLxS, *, temperature=1.0):
    r"""Softmax attention of queries over one group of keys, with its log-sum-exp.

    $o = \sum_s e^{z_s - m} v_s$ with $z_s = q\cdot k_s/(\sqrt K\,T)$ over the unmasked keys
    and $m = \log\sum_s e^{z_s}$.

    Args:
      q_BxLxHxK, k_BxSxHxK, v_BxSxHxK: queries, keys, values (rotary embedding applied).
      mask_BxLxS: bool, True where query ``l`` may attend key ``s``.
      temperature: $T > 0$ dividing the logits.

    Returns:
      ``(o_BxLxHxK, lse_BxLxH)``; a query with no visible key gets $o = 0$, $m = -\infty$
      (it then drops out of :func:`merge_attention`).
    """
    dtype = jnp.promote_types(q_BxLxHxK.dtype, jnp.float32)
    logits = jnp.einsum("blhk,bshk->blhs", q_BxLxHxK.astype(dtype), k_BxSxHxK.astype(dtype))
    logits = logits / (math.sqrt(q_BxLxHxK.shape[-1]) * temperature)
    logits = jnp.where(mask_BxLxS[:, :, None, :], logits, -jnp.inf)
    peak = jnp.max(logits, axis=-1, initial=-jnp.inf)
    peak = jnp.where(jnp.isfinite(peak), peak, 0.0)
    weights = jnp.exp(logits - peak[..., None])
    total = jnp.sum(weights, axis=-1)
    o = jnp.einsum("blhs,bshk->blhk", weights, v_BxSxHxK.astype(dtype))
    o = o / jnp.where(total > 0, total, 1.0)[..., None]
    return o, jnp.log(total) + peak


def merge_attention(outputs_GxNxK, lses_GxN):
    r"""Exact attention over the union of ``G`` key groups from each group's output and LSE.

    $$o = \frac{\sum_g e^{m_g - M} o_g}{\sum_g e^{m_g - M}},\qquad M = \max_g m_g,$$
    returned with $\log\sum_g e^{m_g}$. Equal to one softmax over all the groups' keys: the
    query phase of Star Attention (Acharya et al., 2024), the blocks' partial softmaxes
    merged as in online softmax.

    Args:
      outputs_GxNxK: ``(G, ..., K)`` per-group attention outputs.
      lses_GxN: ``(G, ...)`` per-group log-sum-exps ($-\infty$ for a group with no key).

    Returns:
      ``(o (..., K), lse (...))``; where every group is empty, $o = 0$ and $-\infty$.
    """
    peak = jnp.max(lses_GxN, axis=0, keepdims=True)
    peak = jnp.where(jnp.isfinite(peak), peak, 0.0)
    weights = jnp.exp(lses_GxN - peak)
    total = jnp.sum(weights, axis=0)
    o = jnp.sum(weights[..., None] * outputs_GxNxK, axis=0)
    return o / jnp.where(total > 0, total, 1.0)[..., None], jnp.log(total) + peak[0]


class ParallelOptions(NamedTuple):
    """A rule as traced values, so that the three rules share one compiled program.

    Attributes:
      sequential: bool scalar; True: the blocks take the positions of the concatenation
        (``"exact"``), False: every block starts after the prefix (``"pcw"``, ``"ape"``).
      prefix_copies: how many copies of the prefix the query sees (``n`` for ``"pcw"``, else 1).
      temperature: $T$ dividing the query's logits to context keys.
      scale: $S$ multiplying the context part's log-sum-exp.
    """

    sequential: jax.Array
    prefix_copies: jax.Array
    temperature: jax.Array
    scale: jax.Array


def rule_options(rule: str, n: int, *, temperature: float = 1.0,
                 scale: float = 1.0) -> ParallelOptions:
    """The :class:`ParallelOptions` of ``rule`` (``"pcw"``, ``"ape"`` or ``"exact"``) over
    ``n`` contexts; ``temperature`` and ``scale`` are used by ``"ape"`` only."""
    if rule not in PARALLEL_RULES:
        raise ValueError(f"rule must be one of {PARALLEL_RULES}; got {rule!r}")
    ape = rule == "ape"
    return ParallelOptions(jnp.asarray(rule == "exact"),
                           jnp.float32(n if rule == "pcw" else 1),
                           jnp.float32(temperature if ape else 1.0),
                           jnp.float32(scale if ape else 1.0))


class ParallelState(NamedTuple):
    """What the query phase carries: the context blocks' keys and values (fixed after the
    prefill), the prefix's, and the query row's own growing cache.

    Shapes: ``context_keys``/``context_values`` ``(depth, n, C, H, K)``, ``context_valid``
    ``(n, C)``; ``prefix_keys``/``prefix_values`` ``(depth, 1, p, H, K)``; ``own_keys``/
    ``own_values`` ``(depth, 1, Q + T, H, K)``; ``own_length`` and ``next_position`` int32
    scalars; ``history`` ``(1, W, D)``, the token shift's last ``W`` inputs.
    """

    context_keys: jax.Array
    context_values: jax.Array
    context_valid: jax.Array
    prefix_keys: jax.Array
    prefix_values: jax.Array
    own_keys: jax.Array
    own_values: jax.Array
    own_length: jax.Array
    next_position: jax.Array
    history: jax.Array


def _qkv(block, x_BxLxD, positions_BxL):
    batch, length, _ = x_BxLxD.shape
    attention = block.attention
    qkv = attention.qkv(block.attention_norm(x_BxLxD))
    qkv = qkv.reshape(batch, length, 3, attention.num_heads, attention.head_dim)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    return rotary_embedding(q, positions_BxL), rotary_embedding(k, positions_BxL), v


def _finish_block(block, x_BxLxD, y_BxLxHxK):
    batch, length, dim = x_BxLxD.shape
    x_BxLxD = x_BxLxD + block.attention.out(y_BxLxHxK.reshape(batch, length, dim)
                                            .astype(x_BxLxD.dtype))
    return x_BxLxD + block.mlp_out(jax.nn.gelu(block.mlp_in(block.mlp_norm(x_BxLxD))))


def _embed(model, tokens_BxL, valid_BxL, history_BxWxD):
    x_BxLxD = model.trunk.embed(tokens_BxL)
    if model.shift is None:
        return x_BxLxD, history_BxWxD
    return model.shift(x_BxLxD, valid_BxL, history_BxWxD)


def _tail_history(model, tails):
    """The token shift's history from ``(tokens_BxW, present_BxW)`` (zeros where absent, as
    at the start of a sequence)."""
    tokens_BxW, present_BxW = tails
    return jnp.where(present_BxW[..., None], model.trunk.embed(tokens_BxW), 0.0)


def _tails(tokens_BxL, valid_BxL, width: int):
    """The last ``width`` valid tokens of each row (wherever its pads are), oldest first, and
    which of those ``width`` slots hold a token."""
    # rank 1 is the last valid token of the row, 2 the one before it, ...
    rank_BxL = jnp.flip(jnp.cumsum(jnp.flip(valid_BxL, 1), axis=1), 1)
    slot_W = width - jnp.arange(width)
    pick_BxLxW = valid_BxL[..., None] & (rank_BxL[..., None] == slot_W[None, None, :])
    tokens_BxW = jnp.sum(jnp.where(pick_BxLxW, tokens_BxL[..., None], 0), axis=1)
    return tokens_BxW.astype(jnp.int32), jnp.any(pick_BxLxW, axis=1)


def _layout(sequential, context_valid_NxC, prefix_length: int):
    """Per-row position offsets of the blocks and the question's first position."""
    lengths_N = jnp.sum(context_valid_NxC, axis=1, dtype=jnp.int32)
    offsets_N = prefix_length + jnp.where(sequential, jnp.cumsum(lengths_N) - lengths_N, 0)
    start = prefix_length + jnp.where(sequential, jnp.sum(lengths_N), jnp.max(lengths_N))
    return offsets_N, start


def encode_blocks(apply, params, prefix_P, contexts_NxC, sequential, *, own_slots: int):
    """The prefix and the ``n`` blocks encoded (no question yet): a :class:`ParallelState`
    whose own cache has ``own_slots`` slots for the query phase.

    What the blocks hold depends on the rule only through ``sequential`` (their positions and
    token-shift histories), so ``"pcw"`` and ``"ape"`` at any T and S share one encoding
    (:func:`query_phase` applies the rest). ``apply, params`` as in :func:`parallel_prefill`;
    ``sequential`` a bool scalar (may be traced). Called inside a traced function.
    """
    model = nnx.merge(apply.graphdef, params)
    pad = apply.pad_id
    n, context_length = contexts_NxC.shape
    p = prefix_P.shape[0]
    width = model.shift.width if model.shift is not None else 0
    dim = apply.config.dim
    heads = apply.config.num_heads
    head_dim = dim // heads
    context_valid = contexts_NxC != pad
    offsets_N, question_start = _layout(sequential, context_valid, p)

    # 1. The prefix, once: ordinary causal attention from position 0.
    prefix_keys, prefix_values = [], []
    if p:
        x, _ = _embed(model, prefix_P[None], jnp.ones((1, p), bool),
                      jnp.zeros((1, width, dim)))
        positions = jnp.arange(p, dtype=jnp.int32)[None]
        causal = jnp.tril(jnp.ones((p, p), bool))[None]
        for block in model.trunk.blocks:
            qh, kh, vh = _qkv(block, x, positions)
            y, _ = attention_parts(qh, kh, vh, causal)
            prefix_keys.append(kh)
            prefix_values.append(vh)
            x = _finish_block(block, x, y)
    else:
        prefix_keys = prefix_values = [jnp.zeros((1, 0, heads, head_dim))] * len(model.trunk.blocks)

    # 2. The blocks, in parallel: each attends to the prefix and to itself. The rows are
    # right-padded so that the token shift of a block's first tokens reaches its history.
    prefix_valid = jnp.ones((1, p), bool)
    flat = jnp.concatenate([prefix_P[None], contexts_NxC.reshape(1, -1)], axis=1)
    flat_valid = jnp.concatenate([prefix_valid, context_valid.reshape(1, -1)], axis=1)
    # Sequential blocks: block k's history is the concatenation's last tokens before it
    # (prefix, blocks < k); parallel blocks: the prefix's last tokens.
    before = jnp.arange(flat.shape[1])[None, :] < (
        p + jnp.where(sequential, jnp.arange(n), 0)[:, None] * context_length)
    history = _tail_history(model, _tails(jnp.broadcast_to(flat, (n, flat.shape[1])),
                                          before & flat_valid, width))
    x, _ = _embed(model, contexts_NxC, context_valid, history)
    positions = offsets_N[:, None] + jnp.cumsum(context_valid, axis=1, dtype=jnp.int32) - 1
    positions = jnp.maximum(positions, 0)
    own_mask = jnp.tril(jnp.ones((context_length, context_length), bool))[None] \
        & context_valid[:, None, :]
    context_keys, context_values = [], []
    for i, block in enumerate(model.trunk.blocks):
        qh, kh, vh = _qkv(block, x, positions)
        parts = [attention_parts(qh, kh, vh, own_mask)]
        if p:
            kp = jnp.broadcast_to(prefix_keys[i], (n, *prefix_keys[i].shape[1:]))
            vp = jnp.broadcast_to(prefix_values[i], (n, *prefix_values[i].shape[1:]))
            parts.append(attention_parts(qh, kp, vp, jnp.ones((n, context_length, p), bool)))
        y, _ = merge_attention(jnp.stack([o for o, _ in parts]), jnp.stack([m for _, m in parts]))
        context_keys.append(kh)
        context_values.append(vh)
        x = _finish_block(block, x, y)

    # 3. The question's token-shift history.
    # Sequential: the concatenation's last tokens; parallel: the mean over the windows.
    window = jnp.concatenate([jnp.broadcast_to(prefix_P[None], (n, p)), contexts_NxC], 1)
    window_valid = jnp.concatenate([jnp.ones((n, p), bool), context_valid], 1)
    per_window = jnp.mean(_tail_history(model, _tails(window, window_valid, width)), axis=0,
                          keepdims=True)
    question_history = jnp.where(sequential,
                                 _tail_history(model, _tails(flat, flat_valid, width)),
                                 per_window)
    depth = len(model.trunk.blocks)
    return ParallelState(
        jnp.stack(context_keys), jnp.stack(context_values), context_valid,
        jnp.stack(prefix_keys), jnp.stack(prefix_values),
        jnp.zeros((depth, 1, own_slots, heads, head_dim), x.dtype),
        jnp.zeros((depth, 1, own_slots, heads, head_dim), x.dtype),
        jnp.zeros((), jnp.int32), question_start.astype(jnp.int32), question_history)


def query_phase(apply, params, state: ParallelState, question_Q, options: ParallelOptions, *,
                max_new_tokens: int, eos_id: int):
    """The question over encoded blocks (:func:`encode_blocks`), then ``max_new_tokens``
    greedy tokens under ``options`` (its temperature, scale and prefix copies; its
    ``sequential`` was the encoding's). Returns ``(T,)`` int32 tokens; called inside a traced
    function, so that a map over ``options`` shares the encoding."""
    model = nnx.merge(apply.graphdef, params)
    logits_V, state = _query_step(model, state, question_Q[None], options)
    return _greedy_tokens(model, logits_V, state, options, max_new_tokens=max_new_tokens,
                          eos_id=eos_id)


def _parallel_prefill(apply, params, prefix_P, contexts_NxC, question_Q, options, *,
                      max_new_tokens: int):
    state = encode_blocks(apply, params, prefix_P, contexts_NxC, options.sequential,
                          own_slots=question_Q.shape[0] + max_new_tokens)
    return _query_step(nnx.merge(apply.graphdef, params), state, question_Q[None], options)


def _query_step(model, state: ParallelState, tokens_1xL, options: ParallelOptions):
    """Runs query tokens (the question, or one answer token) over all blocks; returns
    ``(last-position logits (V,), state)``."""
    length = tokens_1xL.shape[1]
    n = state.context_valid.shape[0]
    p = state.prefix_keys.shape[2]
    x, history = _embed(model, tokens_1xL, jnp.ones((1, length), bool), state.history)
    positions = (state.next_position + jnp.arange(length, dtype=jnp.int32))[None]
    slots = state.own_keys.shape[2]
    query_slot = state.own_length + jnp.arange(length)
    own_mask = (jnp.arange(slots)[None, :] <= query_slot[:, None])[None]
    context_mask = jnp.broadcast_to(state.context_valid[:, None, :],
                                    (n, length, state.context_valid.shape[1]))
    own_keys, own_values = [], []
    for i, block in enumerate(model.trunk.blocks):
        qh, kh, vh = _qkv(block, x, positions)
        keys = jax.lax.dynamic_update_slice(state.own_keys[i], kh.astype(state.own_keys.dtype),
                                            (0, state.own_length, 0, 0))
        values = jax.lax.dynamic_update_slice(state.own_values[i], vh.astype(state.own_values.dtype),
                                              (0, state.own_length, 0, 0))
        own_keys.append(keys)
        own_values.append(values)
        o_own, m_own = attention_parts(qh, keys, values, own_mask)
        # The context blocks: one partial softmax per block, merged exactly.
        o_blocks, m_blocks = attention_parts(jnp.broadcast_to(qh, (n, *qh.shape[1:])),
                                             state.context_keys[i], state.context_values[i],
                                             context_mask,
                                             temperature=options.temperature)
        o_ctx, m_ctx = merge_attention(o_blocks[:, None], m_blocks[:, None])
        outputs, lses = [o_own, o_ctx], [m_own, options.scale * m_ctx]
        if p:
            o_pre, m_pre = attention_parts(qh, state.prefix_keys[i], state.prefix_values[i],
                                           jnp.ones((1, length, p), bool))
            outputs.append(o_pre)
            # PCW's windows each hold a copy of the prefix: n identical groups.
            lses.append(m_pre + jnp.log(options.prefix_copies))
        y, _ = merge_attention(jnp.stack(outputs), jnp.stack(lses))
        x = _finish_block(block, x, y)
    logits = model.trunk.logits(model.trunk.final_norm(x))[0, -1]
    state = state._replace(own_keys=jnp.stack(own_keys), own_values=jnp.stack(own_values),
                           own_length=state.own_length + length,
                           next_position=state.next_position + length, history=history)
    return logits, state


@functools.partial(jax.jit, static_argnames=("apply", "max_new_tokens"))
def parallel_prefill(apply, params, prefix_P, contexts_NxC, question_Q, options, *,
                     max_new_tokens: int):
    """Encodes the prefix once, the ``n`` blocks in parallel, then the question over them.

    Args:
      apply, params: a :class:`~diffusionlab.lm.LMApply` and its parameters.
      prefix_P: ``(p,)`` shared prefix tokens (``p`` may be 0).
      contexts_NxC: ``(n, C)`` contexts, right-padded with ``apply.pad_id``
        (:func:`pad_contexts`).
      question_Q: ``(Q,)`` question tokens (no padding).
      options: the rule, :func:`rule_options`.
      max_new_tokens: room kept in the query's own cache.

    Returns:
      ``(next-token logits (V,), ParallelState)``.
    """
    return _parallel_prefill(apply, params, prefix_P, contexts_NxC, question_Q, options,
                             max_new_tokens=max_new_tokens)


@functools.partial(jax.jit, static_argnames=("apply", "max_new_tokens", "eos_id"))
def parallel_decode(apply, params, logits_V, state: ParallelState, options, *,
                    max_new_tokens: int, eos_id: int):
    """Greedy decoding from :func:`parallel_prefill`: a ``lax.scan`` of ``max_new_tokens``
    steps, each one query token over all blocks. Returns ``(T,)`` int32 tokens (``eos_id``
    repeated after the first EOS)."""
    return _greedy_tokens(nnx.merge(apply.graphdef, params), logits_V, state, options,
                          max_new_tokens=max_new_tokens, eos_id=eos_id)


def _greedy_tokens(model, logits_V, state: ParallelState, options, *, max_new_tokens: int,
                   eos_id: int):
    def step(carry, _):
        logits_V, state, done = carry
        token = jnp.argmax(logits_V).astype(jnp.int32)
        token = jnp.where(done, eos_id, token)
        done = done | (token == eos_id)
        logits_V, state = _query_step(model, state, token[None, None], options)
        return (logits_V, state, done), token

    _, tokens = jax.lax.scan(step, (logits_V, state, jnp.zeros((), bool)), None,
                             length=max_new_tokens)
    return tokens


def pad_contexts(contexts, *, pad_id: int, length: int | None = None) -> np.ndarray:
    """``(n, C)`` int32 contexts padded on the right with ``pad_id`` (``C``: the longest)."""
    longest = max(len(c) for c in contexts)
    length = longest if length is None else length
    if longest > length:
        raise ValueError(f"length={length} is shorter than the longest context ({longest})")
    out = np.full((len(contexts), max(length, 1)), pad_id, np.int32)
    for k, c in enumerate(contexts):
        out[k, :len(c)] = np.asarray(c, np.int32)
    return out
