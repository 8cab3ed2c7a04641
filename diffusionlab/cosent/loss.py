r"""CoSENT: a ranking loss on pair scores, in a dense $O(B^2)$ and a sorted $O(B\log B)$ form.

:func:`cosent_loss` picks the faster of the two forms from the (static) batch size; both give
the same value and gradient up to rounding. :func:`cosent_loss_sorted` is the sorted form alone.

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

__all__ = ["METHODS", "SORTED_FROM_BATCH", "cosent_loss", "cosent_loss_sorted"]

METHODS = ("auto", "dense", "sorted")
"""Valid values of ``cosent_loss(..., method=)``."""

# "auto" uses the sorted form from this batch size on. Jitted value_and_grad on the 2-core
# CPU of the development machine (float32, labels in 0..5, best of 30 calls, two runs):
#   B =   64: dense  53 /  57 us, sorted  77 /  71 us
#   B =  128: dense  75 /  84 us, sorted  99 / 127 us
#   B =  160: dense 100 / 121 us, sorted 138 / 141 us
#   B =  192: dense 195 / 302 us, sorted 107 / 115 us
#   B =  256: dense 287 / 426 us, sorted 118 / 173 us
#   B = 1024: dense 1859 us,      sorted 324 us
#   B = 8192: dense 2.66 s,       sorted 16 ms  (benchmarks/cosent.py, less load: 1.36 s, 2.6 ms)
# Below the crossover both cost tens of microseconds (dispatch-bound); above it the dense
# form's B x B matrix dominates. benchmarks/cosent.py re-measures the ratio. One cost is not
# in these figures: compiling the sorted form's value_and_grad takes about 15-20 s on this
# CPU (the gradient of cumlogsumexp), the dense one about 1 s; it is paid once per shape.
SORTED_FROM_BATCH = 192


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


def _check_method(method) -> None:
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}; got {method!r}")


def _choose_method(batch_size: int, method: str) -> str:
    """``"dense"`` or ``"sorted"``: ``method`` itself, or for ``"auto"`` the faster one at
    ``batch_size`` (the sorted form from :data:`SORTED_FROM_BATCH` pairs on).

    Raises:
      ValueError: ``method`` is not one of :data:`METHODS`.
    """
    _check_method(method)
    if method == "auto":
        return "sorted" if batch_size >= SORTED_FROM_BATCH else "dense"
    return method


def _dense(s_B, labels):
    r"""The loss of scaled scores ``s_B`` over the $B\times B$ comparison matrix."""
    # Row a is the pair that should score higher, column b the one that should score lower.
    should_exceed_BxB = labels[:, None] > labels[None, :]
    diff_BxB = jnp.where(should_exceed_BxB, s_B[None, :] - s_B[:, None], -jnp.inf)
    terms = jnp.concatenate([jnp.zeros((1,), s_B.dtype), diff_BxB.reshape(-1)])
    return jax.nn.logsumexp(terms)


def _sorted(s_B, labels):
    r"""The loss of scaled scores ``s_B`` by sorting on the labels ($O(B\log B)$)."""
    order_B = jnp.argsort(labels, stable=True)
    y_B, s_B = labels[order_B], s_B[order_B]
    # Inclusive cumulative logsumexp of the sorted scaled scores ...
    cum_B = jax.lax.cumlogsumexp(s_B)
    # ... read at the last pair whose label is strictly lower (-1: none, empty sum).
    last_lower_B = jnp.searchsorted(y_B, y_B, side="left") - 1
    lower_B = jnp.where(last_lower_B >= 0, cum_B[jnp.maximum(last_lower_B, 0)], -jnp.inf)
    terms = jnp.concatenate([jnp.zeros((1,), s_B.dtype), lower_B - s_B])
    return jax.nn.logsumexp(terms)


def cosent_loss(scores, labels, *, scale: float = 20.0, method: str = "auto") -> jax.Array:
    r"""CoSENT loss of one batch of pairs, over all $B^2$ ordered comparisons.

    .. math::
        \mathcal L = \operatorname{logsumexp}\big(\{0\}\cup\{\lambda(s_b - s_a) : y_a > y_b\}\big)
                   = \log\Big(1 + \sum_{y_a > y_b} e^{\lambda (s_b - s_a)}\Big).

    Two exact forms compute it. ``"dense"`` builds the $B\times B$ matrix of differences
    ($O(B^2)$ time and memory); ``"sorted"`` (:func:`cosent_loss_sorted`) sorts by label and
    takes a cumulative logsumexp ($O(B\log B)$ time, $O(B)$ memory). ``"auto"`` chooses
    from the batch size, which is static, so the choice is made at trace time and works
    under ``jit``: dense below :data:`SORTED_FROM_BATCH` pairs, where it is faster, sorted
    from there on (at $B = 8192$ the sorted form is over 100x faster on CPU). The two agree
    to float rounding: relative 2e-5 in value and 1e-4 in gradient in float32 (tested), 1e-12 in
    float64.

    Excluded comparisons (ties, $y_a \le y_b$) are masked with $-\infty$ rather than by
    subtracting a large constant: $10^{12}$ overflows fp16 and $0\cdot\infty$ then gives NaN.
    The prepended 0 is the "1 +"; when every label ties only it remains, so the loss is
    exactly 0 with zero gradient.

    Args:
      scores: ``(B,)`` pair scores: cosines for a bi-encoder, or raw head outputs for a
        cross-encoder (then use ``scale=1``; the head absorbs the scale).
      labels: ``(B,)`` graded labels (float or int); only their order matters.
      scale: $\lambda > 0$; 20 for cosine scores.
      method: ``"auto"`` (default), ``"dense"`` or ``"sorted"``.

    Returns:
      A scalar (float32, or float64 for float64 scores): one loss per batch, not a mean.

    Raises:
      ValueError: mismatched or non-1-D shapes, an empty batch, non-finite labels,
        ``scale <= 0``, or ``method`` not one of ``"auto"``, ``"dense"``, ``"sorted"``.

    Reference: "CoSENT（一）", https://kexue.fm/archives/8847
    """
    _check_method(method)
    scores, labels, scale = _validate(scores, labels, scale)
    form = _dense if _choose_method(scores.shape[0], method) == "dense" else _sorted
    return form(scale * scores, labels)


def cosent_loss_sorted(scores, labels, *, scale: float = 20.0) -> jax.Array:
    r"""The same value as :func:`cosent_loss`, in $O(B\log B)$ time and $O(B)$ memory.

    The double sum factorises over the higher-labelled pair $a$:

    .. math::
        \sum_{y_a > y_b} e^{\lambda(s_b - s_a)}
          = \sum_a e^{-\lambda s_a}\,\underbrace{\sum_{b:\,y_b < y_a} e^{\lambda s_b}}_{e^{C_a}},
        \qquad \mathcal L = \operatorname{logsumexp}\big(\{0\}\cup\{C_a - \lambda s_a\}\big).

    After sorting by label, $C_a$ is a cumulative logsumexp read just before the first pair
    of $a$'s tie group, so ties stay excluded and no $B\times B$ matrix is formed. It is
    ``cosent_loss(..., method="sorted")``.

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
    return _sorted(scale * scores, labels)
