r"""One NBCE decoding step: truncate, score by entropy, pool, merge with the empty-context row.

The generalised naive-Bayes formula (Su, "NBCE: extending an LLM's context length with naive
Bayes", https://kexue.fm/archives/9617, and the supplementary notes,
https://kexue.fm/archives/9632) combines the next-token log-probabilities of ``n`` contexts
$\ell_k = \log p(T\mid S_k)$ with the empty-context row $\ell_0 = \log p(T)$:

$$\log p(T\mid S_1,\dots,S_n) = (\beta+1)\,\mathcal P[\ell_1,\dots,\ell_n] - \beta\,\ell_0
+ \text{const}.$$

The reference loop, step by step: log-softmax per row; top-p truncation per row (row 0
included) *without* renormalising; entropy $H_r = -\sum_v e^{\ell_{rv}}\mathrm{clip}(\ell_{rv},
-100, 0)$; stickiness $H_{k'} \leftarrow H_{k'}-\eta$ for the previous choice $k'$; the choice
$k = 1 + \arg\min_{r\ge1} H_r$; and the merge, which falls back to the pooled term wherever the
empty-context row was truncated away ($\ell_{0v} = -\infty$).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from diffusionlab import _checks

POOLINGS = ("min_entropy", "average", "max", "margin", "entropy_gap", "max_kl")
# The poolings that select one whole row (the others combine rows element-wise or a subset).
SELECTIONS = ("min_entropy", "margin", "max_kl")

# The reference code's stand-in for -inf in the clip and in the merge's finiteness test.
_LOG_FLOOR = -100.0


def _logprobs(logprobs_RxV) -> jax.Array:
    """``(R, V)`` real log-probabilities: -inf (a removed token) is allowed, NaN and +inf not."""
    logprobs_RxV = _checks.float_array(logprobs_RxV, "logprobs_RxV", ndim=2, layout="(R, V)",
                                       finite=False)
    values = _checks.concrete(logprobs_RxV)
    if values is not None and np.any(np.isnan(values) | (values == np.inf)):
        raise ValueError("logprobs_RxV must hold log-probabilities (-inf allowed); got NaN or +inf")
    return logprobs_RxV


def top_p_truncate(logprobs_RxV: jax.Array, top_p: float | jax.Array) -> jax.Array:
    r"""Nucleus truncation per row, keeping the original log-probabilities (no renormalising).

    Sorting each row ascending, a token is removed when the cumulative probability up to and
    including it is $\le 1-p$; the most probable token is always kept. ``top_p = 1`` removes
    only tokens of probability exactly zero.

    Args:
      logprobs_RxV: normalised log-probabilities, one distribution per row.
      top_p: nucleus mass $p\in(0,1]$.

    Returns:
      The same array with the removed entries set to $-\infty$.
    """
    logprobs_RxV = _logprobs(logprobs_RxV)
    _checks.check_real(top_p, "top_p", low=0, high=1, low_open=True, scalar=False)
    _checks.check_fits_memory("logprobs_RxV", 4.0 * logprobs_RxV.shape[0]
                              * logprobs_RxV.shape[1] ** 2, "the pairwise comparison")
    probs_RxV = jnp.exp(logprobs_RxV)
    vocab = probs_RxV.shape[-1]
    index_V = jnp.arange(vocab)
    # Token u comes no later than v in the stable ascending order (ties by index). The mass
    # up to and including v is then one masked sum, which XLA fuses: on CPU this is several
    # times faster than sorting, and it is the same rule, ties included.
    p_u, p_v = probs_RxV[:, None, :], probs_RxV[:, :, None]
    no_later = (p_u < p_v) | ((p_u == p_v) & (index_V[None, None, :] <= index_V[None, :, None]))
    cumulative_RxV = jnp.sum(jnp.where(no_later, p_u, 0.0), axis=-1)
    # The last token of that order (the most probable, highest index among ties) stays.
    last_R = vocab - 1 - jnp.argmax(probs_RxV[:, ::-1], axis=-1)
    remove_RxV = (cumulative_RxV <= 1.0 - top_p) & (index_V[None, :] != last_R[:, None])
    return jnp.where(remove_RxV, -jnp.inf, logprobs_RxV)


def truncated_entropy(logprobs_RxV: jax.Array) -> jax.Array:
    r"""$H_r = -\sum_v e^{\ell_{rv}}\,\mathrm{clip}(\ell_{rv}, -100, 0)$, NaN-free on $-\infty$ entries.

    The clip turns $0\cdot(-\infty)$ into $0\cdot(-100) = 0$; the result is the entropy of the
    truncated, un-renormalised distribution.
    """
    logprobs_RxV = _logprobs(logprobs_RxV)
    return -jnp.sum(jnp.exp(logprobs_RxV) * jnp.clip(logprobs_RxV, _LOG_FLOOR, 0.0), axis=-1)


def _masked_average(logprobs_NxV: jax.Array, member_N: jax.Array) -> jax.Array:
    """Mean of the rows with ``member_N`` true (at least one must be)."""
    weights_N = member_N.astype(logprobs_NxV.dtype)
    weights_N = weights_N / jnp.sum(weights_N)
    # A token truncated away by any member is vetoed (-inf); the where keeps 0 * -inf out.
    finite_NxV = jnp.where(member_N[:, None], logprobs_NxV, 0.0)
    average_V = jnp.sum(weights_N[:, None] * finite_NxV, axis=0)
    vetoed_V = jnp.any(member_N[:, None] & jnp.isneginf(logprobs_NxV), axis=0)
    average_V = jnp.where(vetoed_V, -jnp.inf, average_V)
    # If the members' nuclei share no token at all, that leaves nothing to decode; fall back
    # to the mean of the clipped log-probabilities, the same clip the entropy uses, so that
    # the vote stays defined.
    clipped_V = jnp.sum(weights_N[:, None] * jnp.where(
        member_N[:, None], jnp.clip(logprobs_NxV, _LOG_FLOOR, 0.0), 0.0), axis=0)
    return jnp.where(jnp.any(jnp.isfinite(average_V)), average_V, clipped_V)


def _pool(logprobs_NxV: jax.Array, choice_index: jax.Array, pooling: str,
          member_N: jax.Array | None = None) -> jax.Array:
    """The pooled context term $\\mathcal P[\\ell_1..\\ell_n]$ (rows 1..n passed as ``N x V``)."""
    if pooling in SELECTIONS:
        return logprobs_NxV[choice_index]
    if pooling == "max":
        return jnp.max(logprobs_NxV, axis=0)
    if pooling == "entropy_gap":
        return _masked_average(logprobs_NxV, member_N)
    average_V = jnp.mean(logprobs_NxV, axis=0)
    # A token truncated away by any context is vetoed (-inf). If the contexts' nuclei share no
    # token at all, that leaves nothing to decode; fall back to the mean of the clipped
    # log-probabilities, the same clip the entropy uses, so that the vote stays defined.
    clipped_V = jnp.mean(jnp.clip(logprobs_NxV, _LOG_FLOOR, 0.0), axis=0)
    return jnp.where(jnp.any(jnp.isfinite(average_V)), average_V, clipped_V)


def top2_margin(logprobs_RxV: jax.Array) -> jax.Array:
    r"""$\ell_{r,(1)} - \ell_{r,(2)}$: each row's top-1 minus its top-2 log-probability.

    Computed on full (untruncated) log-probabilities it is finite; a row of one token has no
    runner-up and its margin is $+\infty$. ``(R, V)`` in, ``(R,)`` out, ``V >= 2``.
    """
    top_Rx2, _ = jax.lax.top_k(logprobs_RxV, 2)
    return top_Rx2[:, 0] - top_Rx2[:, 1]


def kl_from_empty(logprobs_RxV: jax.Array) -> jax.Array:
    r"""$\mathrm{KL}(p_r\,\|\,p_0) = \sum_v p_{rv}(\ell_{rv} - \ell_{0v})$ for every row,
    on full log-probabilities (row 0 gives 0): how far a context moves the prediction away
    from the empty context's. ``(R, V)`` in, ``(R,)`` out."""
    diff_RxV = logprobs_RxV - logprobs_RxV[:1]
    return jnp.sum(jnp.exp(logprobs_RxV) * jnp.where(jnp.exp(logprobs_RxV) > 0, diff_RxV, 0.0),
                   axis=-1)


def nbce_step_unchecked(logits_RxV, *, beta, eta, top_p, prev_choice, pooling: str,
                        gap=0.0):
    """:func:`nbce_step` without argument validation, for use inside jitted loops.

    ``prev_choice`` is an int32 scalar; 0 means "no previous choice" (row 0 is never chosen).
    """
    full_RxV = jax.nn.log_softmax(logits_RxV.astype(jnp.float32), axis=-1)
    logprobs_RxV = top_p_truncate(full_RxV, top_p)
    entropies_R = truncated_entropy(logprobs_RxV)
    rows_R = jnp.arange(entropies_R.shape[0])
    bonus_R = jnp.where((rows_R == prev_choice) & (prev_choice > 0), eta, 0.0)
    if pooling == "margin":
        # Largest top-1 / top-2 margin wins; the stickiness bonus adds to the previous margin.
        choice_index = jnp.argmax((top2_margin(full_RxV) + bonus_R)[1:])
    elif pooling == "max_kl":
        choice_index = jnp.argmax((kl_from_empty(full_RxV) + bonus_R)[1:])
    else:
        sticky_R = entropies_R - bonus_R
        # argmin returns the first minimiser: ties go to the lowest context index.
        choice_index = jnp.argmin(sticky_R[1:])
    choice = (choice_index + 1).astype(jnp.int32)
    member_N = None
    if pooling == "entropy_gap":
        sticky_N = (entropies_R - bonus_R)[1:]
        member_N = sticky_N <= jnp.min(sticky_N) + gap
    pooled_V = _pool(logprobs_RxV[1:], choice_index, pooling, member_N)
    empty_V = logprobs_RxV[0]
    merged_V = (1.0 + beta) * pooled_V - beta * empty_V
    # -inf rule: where the empty-context row was truncated, keep the pooled term alone.
    merged_V = jnp.where(empty_V > _LOG_FLOOR, merged_V, pooled_V)
    # A token the pooled term excludes stays excluded, also at beta = -1 where (1+beta)*(-inf)
    # would be NaN (the limit from beta > -1 is -inf).
    merged_V = jnp.where(jnp.isneginf(pooled_V), -jnp.inf, merged_V)
    return merged_V, choice, entropies_R


# Compiled once per pooling; called outside jit it saves an op-by-op dispatch per step.
_nbce_step_jit = jax.jit(nbce_step_unchecked, static_argnames=("pooling",))


# Default entropy window of the "entropy_gap" pooling, in nats.
DEFAULT_GAP = 0.5


def validate_hyperparameters(*, beta, top_p, pooling, gap=DEFAULT_GAP) -> None:
    """Raises ValueError for ``beta < -1``, ``top_p`` outside (0, 1], an unknown pooling or
    ``gap < 0`` (TypeError for non-numbers), naming the argument."""
    _checks.check_real(beta, "beta", low=-1)  # Su: any beta >= -1 is reasonable
    _checks.check_real(top_p, "top_p", low=0, high=1, low_open=True)
    _checks.check_choice(pooling, "pooling", POOLINGS)
    _checks.check_real(gap, "gap", low=0)


def nbce_step(logits, *, beta=0.25, eta=0.1, top_p=0.95, prev_choice=None,
              pooling="min_entropy", gap=DEFAULT_GAP):
    r"""Merges the next-token predictions of ``n`` contexts and the empty context (NBCE).

    $$m_v = \begin{cases}(1+\beta)\,\mathcal P_v - \beta\,\ell_{0v} & \ell_{0v} > -100\\
    \mathcal P_v & \text{otherwise,}\end{cases}$$

    with $\ell$ the top-p-truncated log-softmax of ``logits`` and $\mathcal P$ the pooling:
    ``"min_entropy"`` takes the whole row $\ell_k$, $k = 1+\arg\min_{r\ge1}(H_r -
    \eta\,[r=k'])$; ``"average"`` the mean over rows $1..n$; ``"max"`` the element-wise max.

    Selection rules for the large-n gap, where an irrelevant context can look more certain
    than the relevant one (this codebase's extensions, not in the essays):

    * ``"margin"``: the whole row with the largest top-1 minus top-2 log-probability of its
      full (untruncated) distribution, $k = 1+\arg\max_{r\ge1}(\ell_{r,(1)}-\ell_{r,(2)}
      + \eta\,[r=k'])$;
    * ``"entropy_gap"``: min-entropy when the runner-up's entropy is more than ``gap`` above
      the minimum; otherwise the average of every row within ``gap`` of the minimum (the
      sticky entropies $H_r-\eta[r=k']$). ``gap = 0`` is min-entropy (averaging exact ties), a
      gap wider than every entropy difference is average pooling;
    * ``"max_kl"``: the whole row that moves furthest from the empty context,
      $k = 1+\arg\max_{r\ge1}(\mathrm{KL}(p_r\|p_0) + \eta\,[r=k'])$ on full
      distributions: a context that lacks the fact should leave the prior as it is, even when
      the prior is a confident "unknown".

    Args:
      logits: ``(n+1, V)`` next-token logits; row 0 is the empty-context row.
      beta: weight $\beta \ge -1$; $\beta = n-1$ with average pooling is plain naive Bayes.
      eta: stickiness bonus $\eta$ given to the previous choice's entropy.
      top_p: nucleus mass in (0, 1]; 1 switches truncation off.
      prev_choice: the previous step's choice (1..n), or None / 0 on the first step.
      pooling: one of :data:`POOLINGS`: ``"min_entropy"``, ``"average"``, ``"max"``,
        ``"margin"``, ``"entropy_gap"`` or ``"max_kl"``.
      gap: ``"entropy_gap"`` only: the entropy window in nats, ``>= 0``.

    Returns:
      ``(merged_logprobs (V,), choice (int32 scalar in 1..n), entropies (n+1,))``. The merged
      vector is unnormalised (decode with argmax or a softmax); the entropies are those of the
      truncated rows before the stickiness bonus. ``choice`` is the selected row for
      ``"margin"`` and ``"max_kl"`` and the min-entropy row for every other pooling; it is
      carried as the stickiness state.

    Raises:
      ValueError: logits not 2-D or with fewer than 2 rows (for ``"margin"``, fewer than 2
        columns), ``beta < -1``, ``top_p`` outside (0, 1], an unknown pooling, or
        ``gap < 0``.

    Reference: Su, "NBCE: extending an LLM's context length with naive Bayes",
    https://kexue.fm/archives/9617; "Supplementary notes and analysis of NBCE",
    https://kexue.fm/archives/9632.
    """
    logits = _checks.float_array(logits, "logits", ndim=2,
                                 layout="(n+1, V), at least 2 rows")
    _checks.check_real(eta, "eta")
    if logits.shape[0] < 2:
        raise ValueError(
            f"logits must have shape (n+1, V) with n >= 1 context rows after the empty-context "
            f"row 0, i.e. at least 2 rows; got shape {logits.shape}")
    validate_hyperparameters(beta=beta, top_p=top_p, pooling=pooling, gap=gap)
    if pooling == "margin" and logits.shape[1] < 2:
        raise ValueError(f"pooling='margin' needs a vocabulary of at least 2 tokens (logits "
                         f"of shape (n+1, V >= 2)); got shape {logits.shape}")
    # The previous choice is a context row 1..n (0 on the first step): beyond n it would
    # silently give the stickiness bonus to no row or wrap around.
    prev = _checks.check_int(0 if prev_choice is None else prev_choice, "prev_choice", low=0,
                             high=logits.shape[0] - 1)
    prev = jnp.asarray(prev, jnp.int32)
    return _nbce_step_jit(logits, beta=beta, eta=eta, top_p=top_p, prev_choice=prev,
                          pooling=pooling, gap=gap)
