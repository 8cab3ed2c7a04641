r"""Per-example score-matching losses: explicit, conditional (denoising), implicit, sliced.

All four share the scale of the explicit loss :math:`\|s_\theta-\nabla\log p\|^2`, so each
differs from it by a constant independent of :math:`\theta` (in expectation):

* conditional: :math:`\mathcal L_{CSM}-\mathcal L_{SM}=C_t\ge0` (the posterior variance of the
  conditional score);
* implicit and sliced (by parts): :math:`\mathcal L_{ISM}=\mathcal L_{SM}-\mathbb E\|\nabla\log p\|^2`.

Reference: 苏剑林, 《生成扩散模型漫谈（十八）：得分匹配 = 条件得分匹配》, https://kexue.fm/archives/9509
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from diffusionlab import _checks
from diffusionlab.divergence import exact_divergence, hutchinson_divergence
from diffusionlab.scorematching.gaussian import _check_alpha_sigma, conditional_score


def _check_batch(name: str, x, like=None, like_name: str = "score") -> jax.Array:
    """``x`` as a checked ``(B, d)`` float array (float32 at least), shaped like ``like``."""
    x = _checks.float_array(x, name, ndim=2, layout="(B, d)")
    if like is not None and x.shape != like.shape:
        raise ValueError(f"{name} must have the shape of {like_name} {like.shape}, got {x.shape}")
    return x


def explicit_score_matching_loss(score: jax.Array, true_score: jax.Array) -> jax.Array:
    r"""Explicit score matching, :math:`\|s_\theta(x_t)-\nabla\log p_t(x_t)\|^2` per example.

    Args:
      score: ``(B, d)`` model scores :math:`s_\theta(x_t)`.
      true_score: ``(B, d)`` exact marginal scores.

    Returns:
      ``(B,)`` losses.

    Raises:
      ValueError: on shapes other than two equal ``(B, d)``.
    """
    score = _check_batch("score", score)
    true_score = _check_batch("true_score", true_score, score)
    return jnp.sum((score - true_score) ** 2, axis=-1)


def conditional_score_matching_loss(
    score: jax.Array, x_t: jax.Array, x_0: jax.Array, *, alpha, sigma
) -> jax.Array:
    r"""Conditional (denoising) score matching for :math:`x_t=\alpha x_0+\sigma\varepsilon`.

    .. math:: \Big\|s_\theta(x_t)+\frac{x_t-\alpha x_0}{\sigma^2}\Big\|^2 .

    Args:
      score: ``(B, d)`` model scores at ``x_t``.
      x_t, x_0: ``(B, d)`` noisy points and the clean points they came from.
      alpha, sigma: the perturbation's scale and noise level (scalars).

    Returns:
      ``(B,)`` losses.

    Raises:
      TypeError: non-float arrays or non-real ``alpha``/``sigma``.
      ValueError: mismatched shapes, NaN/inf, ``alpha < 0`` or ``sigma ≤ 0``.
    """
    score = _check_batch("score", score)
    x_t = _check_batch("x_t", x_t, score)
    x_0 = _check_batch("x_0", x_0, score)
    _check_alpha_sigma(alpha, sigma)
    return jnp.sum((score - conditional_score(x_t, x_0, alpha=alpha, sigma=sigma)) ** 2, axis=-1)


def _divergence_estimates(score_fn, x_BxD, key, num_probes, gaussian):
    """Per-example ``vᵀ ∇s v`` averaged over probes ``(B,)``, each ``vᵀ s`` ``(B, P)``, and
    the scores ``s`` ``(B, d)``."""
    shape = (x_BxD.shape[0], num_probes, x_BxD.shape[1])
    v_BxPxD = (jax.random.normal(key, shape, x_BxD.dtype) if gaussian
               else jax.random.rademacher(key, shape, x_BxD.dtype))
    v_PxBxD = jnp.moveaxis(v_BxPxD, 1, 0)
    s_PxBxD, vjv_PxB = jax.vmap(
        lambda v_BxD: hutchinson_divergence(jax.vmap(score_fn), x_BxD, v_BxD))(v_PxBxD)
    vs_BxP = jnp.einsum("pbd,pbd->bp", v_PxBxD, s_PxBxD)
    return jnp.mean(vjv_PxB, axis=0), vs_BxP, s_PxBxD[0]


def implicit_score_matching_loss(
    score_fn: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    *,
    method: str = "exact",
    key: jax.Array | None = None,
    num_probes: int = 1,
) -> jax.Array:
    r"""Hyvärinen's implicit score matching, :math:`\|s_\theta(x)\|^2+2\operatorname{tr}\nabla_xs_\theta(x)`.

    Equals :math:`\|s_\theta-\nabla\log p\|^2-\|\nabla\log p\|^2` in expectation over
    :math:`x\sim p`, without knowing the score of :math:`p`.

    Args:
      score_fn: ``score_fn(x_D) -> (d,)`` for one example.
      x: ``(B, d)`` samples of :math:`p`.
      method: ``"exact"`` (full Jacobian trace) or ``"hutchinson"`` (Rademacher probes; unbiased).
      key: PRNG key, required for ``"hutchinson"``.
      num_probes: probes per example for ``"hutchinson"`` (≥ 1).

    Returns:
      ``(B,)`` losses.

    Raises:
      ValueError: on a bad shape, an unknown ``method``, a missing ``key`` or ``num_probes`` < 1.
    """
    _checks.check_callable(score_fn, "score_fn")
    x = _check_batch("x", x)
    _checks.check_choice(method, "method", ("exact", "hutchinson"))
    if method == "exact":
        s_BxD, trace_B = exact_divergence(jax.vmap(score_fn), x)
        return jnp.einsum("bd,bd->b", s_BxD, s_BxD) + 2.0 * trace_B
    if key is None:
        raise ValueError("key is required for method='hutchinson'")
    _checks.check_key(key)
    num_probes = _checks.check_int(num_probes, "num_probes", low=1)
    _checks.check_fits_memory("num_probes", 3.0 * x.size * num_probes * x.dtype.itemsize,
                              "the probes")
    trace_B, _, s_BxD = _divergence_estimates(score_fn, x, key, num_probes, gaussian=False)
    return jnp.sum(s_BxD**2, axis=-1) + 2.0 * trace_B


def sliced_score_matching_loss(
    score_fn: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    *,
    key: jax.Array,
    num_projections: int = 1,
) -> jax.Array:
    r"""Sliced score matching: implicit score matching along random directions :math:`v\sim\mathcal N(0,I)`.

    .. math:: (v^\top s_\theta(x))^2+2\,v^\top\nabla_xs_\theta(x)\,v,

    averaged over ``num_projections`` directions; same expectation as the implicit loss (Song et
    al., 2019, scaled by 2 to share the explicit loss's scale).

    Args:
      score_fn: ``score_fn(x_D) -> (d,)``.
      x: ``(B, d)`` samples.
      key: PRNG key for the projections.
      num_projections: directions per example (≥ 1).

    Returns:
      ``(B,)`` losses.

    Raises:
      ValueError: on a bad shape or ``num_projections`` < 1.
    """
    _checks.check_callable(score_fn, "score_fn")
    x = _check_batch("x", x)
    _checks.check_key(key)
    num_projections = _checks.check_int(num_projections, "num_projections", low=1)
    _checks.check_fits_memory("num_projections",
                              3.0 * x.size * num_projections * x.dtype.itemsize, "the projections")
    vjv_B, vs_BxP, _ = _divergence_estimates(score_fn, x, key, num_projections, gaussian=True)
    return jnp.mean(vs_BxP**2, axis=-1) + 2.0 * vjv_B
