r"""CoSENT: a ranking loss on pair scores, in a dense $O(B^2)$ and a sorted $O(B\log B)$ form.

For a batch of $B$ pairs with scores $s_a$ (cosines for a bi-encoder, raw head outputs for
a cross-encoder) and graded labels $y_a$,

.. math::
    \mathcal L = \log\Big(1 + \sum_{y_a > y_b} e^{\lambda (s_b - s_a)}\Big),

one term for every ordered comparison the labels imply: the pair that should score lower
($b$) minus the pair that should score higher ($a$). Pairs with equal labels, a pair with
itself included, contribute nothing.

Reference: 苏剑林, "CoSENT（一）：比Sentence-BERT更有效的句向量方案",
https://kexue.fm/archives/8847 ; "CoSENT（三）：作为交互式相似度的损失函数",
https://kexue.fm/archives/9341 .
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from diffusionlab import _checks

__all__ = ["cosent_loss", "cosent_loss_sorted"]


def _validate(scores, labels, scale):
    """Checks shapes and values; returns ``(scores, labels, scale)`` with float scores."""
    if isinstance(scale, (bool, complex, str)) or scale is None:
        raise TypeError(f"scale must be a real Python number > 0, got {scale!r}")
    try:
        scale_value = float(scale)
    except (TypeError, jax.errors.ConcretizationTypeError):
        raise TypeError(f"scale must be a Python number (a static hyperparameter), got "
                        f"{type(scale).__name__}") from None
    if not (np.isfinite(scale_value) and scale_value > 0):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    # Labels may be graded integers; scores must be real floats (half precision is upcast).
    scores = _checks.float_array(scores, "scores", ndim=1, layout="(B,) (1-D)")
    labels = _checks.float_array(labels, "labels", ndim=1, layout="(B,) (1-D)", allow_int=True)
    if scores.shape != labels.shape:
        raise ValueError(
            f"scores and labels must have the same length, got {scores.shape[0]} and "
            f"{labels.shape[0]}")
    # Compute in at least float32: bf16/fp16 scores are upcast, so neither the scaled
    # differences nor the logsumexp lose the ordering that the loss is about.
    dtype = jnp.promote_types(scores.dtype, jnp.float32)
    return scores.astype(dtype), labels, scale_value


def cosent_loss(scores, labels, *, scale: float = 20.0) -> jax.Array:
    r"""CoSENT loss of one batch of pairs, over all $B^2$ ordered comparisons.

    .. math::
        \mathcal L = \operatorname{logsumexp}\big(\{0\}\cup\{\lambda(s_b - s_a) : y_a > y_b\}\big)
                   = \log\Big(1 + \sum_{y_a > y_b} e^{\lambda (s_b - s_a)}\Big).

    Excluded comparisons (ties, $y_a \le y_b$) are masked with $-\infty$ rather than by
    subtracting a large constant: $10^{12}$ overflows fp16 and $0\cdot\infty$ then gives NaN.
    The prepended 0 is the "1 +"; when every label ties only it remains, so the loss is
    exactly 0 with zero gradient.

    Args:
      scores: ``(B,)`` pair scores: cosines for a bi-encoder, or raw head outputs for a
        cross-encoder (then use ``scale=1``; the head absorbs the scale).
      labels: ``(B,)`` graded labels (float or int); only their order matters.
      scale: $\lambda > 0$; 20 for cosine scores.

    Returns:
      A scalar (float32, or float64 for float64 scores): one loss per batch, not a mean.

    Raises:
      ValueError: mismatched or non-1-D shapes, an empty batch, non-finite labels,
        ``scale <= 0``.

    Reference: "CoSENT（一）", https://kexue.fm/archives/8847
    """
    scores, labels, scale = _validate(scores, labels, scale)
    s_B = scale * scores
    # Row a is the pair that should score higher, column b the one that should score lower.
    should_exceed_BxB = labels[:, None] > labels[None, :]
    diff_BxB = jnp.where(should_exceed_BxB, s_B[None, :] - s_B[:, None], -jnp.inf)
    terms = jnp.concatenate([jnp.zeros((1,), s_B.dtype), diff_BxB.reshape(-1)])
    return jax.nn.logsumexp(terms)


def cosent_loss_sorted(scores, labels, *, scale: float = 20.0) -> jax.Array:
    r"""The same value as :func:`cosent_loss`, in $O(B\log B)$ time and $O(B)$ memory.

    The double sum factorises over the higher-labelled pair $a$:

    .. math::
        \sum_{y_a > y_b} e^{\lambda(s_b - s_a)}
          = \sum_a e^{-\lambda s_a}\,\underbrace{\sum_{b:\,y_b < y_a} e^{\lambda s_b}}_{e^{C_a}},
        \qquad \mathcal L = \operatorname{logsumexp}\big(\{0\}\cup\{C_a - \lambda s_a\}\big).

    After sorting by label, $C_a$ is a cumulative logsumexp read just before the first pair
    of $a$'s tie group, so ties stay excluded and no $B\times B$ matrix is formed.

    Args:
      scores: ``(B,)`` pair scores.
      labels: ``(B,)`` graded labels.
      scale: $\lambda > 0$.

    Returns:
      A scalar, equal to ``cosent_loss(scores, labels, scale=scale)`` up to rounding.

    Raises:
      ValueError: as :func:`cosent_loss`.

    Reference: "CoSENT（一）", https://kexue.fm/archives/8847
    """
    scores, labels, scale = _validate(scores, labels, scale)
    order_B = jnp.argsort(labels, stable=True)
    y_B, s_B = labels[order_B], scale * scores[order_B]
    # Inclusive cumulative logsumexp of the sorted scaled scores ...
    cum_B = jax.lax.cumlogsumexp(s_B)
    # ... read at the last pair whose label is strictly lower (-1: none, empty sum).
    last_lower_B = jnp.searchsorted(y_B, y_B, side="left") - 1
    lower_B = jnp.where(last_lower_B >= 0, cum_B[jnp.maximum(last_lower_B, 0)], -jnp.inf)
    terms = jnp.concatenate([jnp.zeros((1,), s_B.dtype), lower_B - s_B])
    return jax.nn.logsumexp(terms)
