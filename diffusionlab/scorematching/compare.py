r"""Score matching against conditional score matching on the same pairs: values, gap, gradients.

.. math:: \mathcal L_{CSM}(\theta)-\mathcal L_{SM}(\theta)
   =\frac{d}{\sigma^2}-\mathbb E_{x_t}\|\nabla\log p_t(x_t)\|^2=C_t,

since :math:`\mathbb E\|\nabla\log p_t(x_t\mid x_0)\|^2=\mathbb E\|\varepsilon\|^2/\sigma^2=d/\sigma^2`.
The right-hand side does not involve :math:`\theta`, which gives a second, θ-free estimate of
the same constant to set against the measured gap.

Reference: 苏剑林, 《生成扩散模型漫谈（十八）：得分匹配 = 条件得分匹配》, https://kexue.fm/archives/9509
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from diffusionlab import _checks
from diffusionlab.scorematching.losses import (
    conditional_score_matching_loss,
    explicit_score_matching_loss,
)


class LossComparison(NamedTuple):
    """Monte Carlo means (and standard errors) of SM, CSM and their gap on one set of pairs.

    Attributes:
      sm, csm: the two losses.
      gap, gap_se: mean of the per-pair difference CSM − SM and its standard error.
      constant, constant_se: the θ-free estimate :math:`d/\\sigma^2-\\mathbb E\\|\\nabla\\log p_t\\|^2`.
    """

    sm: jax.Array
    csm: jax.Array
    gap: jax.Array
    gap_se: jax.Array
    constant: jax.Array
    constant_se: jax.Array


def _mean_se(values_N):
    return jnp.mean(values_N), jnp.std(values_N, ddof=1) / jnp.sqrt(values_N.shape[0])


def compare_losses(score: jax.Array, x_t: jax.Array, x_0: jax.Array, *, alpha, sigma,
                   true_score: jax.Array) -> LossComparison:
    r"""SM and CSM of one set of model scores, on the same ``(x_0, x_t)`` pairs.

    Args:
      score: ``(N, d)`` model scores :math:`s_\theta(x_t)`.
      x_t, x_0: ``(N, d)`` pairs with :math:`x_t=\alpha x_0+\sigma\varepsilon`.
      alpha, sigma: the perturbation (scalars).
      true_score: ``(N, d)`` exact marginal scores :math:`\nabla\log p_t(x_t)`.

    Returns:
      A :class:`LossComparison`.
    """
    csm_N = conditional_score_matching_loss(score, x_t, x_0, alpha=alpha, sigma=sigma)
    true_score = _checks.float_array(true_score, "true_score", ndim=2)
    x_t = _checks.float_array(x_t, "x_t", ndim=2)
    if x_t.shape[0] < 2:
        raise ValueError(f"x_t must hold N ≥ 2 pairs for a standard error; got shape {x_t.shape}")
    sm_N = explicit_score_matching_loss(score, true_score)
    gap, gap_se = _mean_se(csm_N - sm_N)
    constant, constant_se = _mean_se(x_t.shape[1] / sigma**2 - jnp.sum(true_score**2, axis=-1))
    return LossComparison(jnp.mean(sm_N), jnp.mean(csm_N), gap, gap_se, constant, constant_se)


def loss_gradients(apply: Callable[[Any, jax.Array], jax.Array], params: Any, x_t: jax.Array,
                   x_0: jax.Array, *, alpha, sigma, true_score: jax.Array) -> tuple[Any, Any]:
    r""":math:`(\nabla_\theta\mathcal L_{SM},\nabla_\theta\mathcal L_{CSM})` on the same pairs.

    Args:
      apply: ``apply(params, x_t) -> (N, d)`` model scores.
      params: the model parameters (a pytree).
      x_t, x_0, alpha, sigma, true_score: as for :func:`compare_losses`.

    Returns:
      Two pytrees shaped like ``params``; equal in expectation.
    """

    _checks.check_callable(apply, "apply")
    x_t = _checks.float_array(x_t, "x_t", ndim=2)
    x_0 = _checks.float_array(x_0, "x_0", ndim=2)
    true_score = _checks.float_array(true_score, "true_score", ndim=2)
    for name, other in (("x_0", x_0), ("true_score", true_score)):
        if other.shape != x_t.shape:
            raise ValueError(f"{name} must have the shape of x_t {x_t.shape}; got {other.shape}")
    from diffusionlab.scorematching.gaussian import _check_alpha_sigma
    _check_alpha_sigma(alpha, sigma)

    def sm(p):
        return jnp.mean(explicit_score_matching_loss(apply(p, x_t), true_score))

    def csm(p):
        return jnp.mean(conditional_score_matching_loss(apply(p, x_t), x_t, x_0, alpha=alpha,
                                                        sigma=sigma))

    return jax.grad(sm)(params), jax.grad(csm)(params)


def gradient_agreement(grad_reference: Any, grad_other: Any) -> tuple[jax.Array, jax.Array]:
    r"""How closely two gradients (pytrees of the same structure) agree, flattened to vectors.

    .. math:: \cos=rac{\langle g_a,g_bangle}{\|g_a\|\,\|g_b\|},\qquad
       \delta=rac{\|g_b-g_a\|}{\|g_a\|}.

    Args:
      grad_reference: :math:`g_a`, e.g. :math:`
abla_	heta\mathcal L_{SM}` (non-zero).
      grad_other: :math:`g_b`, e.g. :math:`
abla_	heta\mathcal L_{CSM}`, shaped like it.

    Returns:
      ``(cosine, relative_difference)``: scalars; cosine in :math:`[-1, 1]` (1 when the
      gradients point the same way), relative difference ≥ 0 (0 when they are equal). A zero
      gradient gives NaN.

    Raises:
      ValueError: the two pytrees differ in structure or in a leaf's shape.
    """
    leaves_a, tree_a = jax.tree.flatten(grad_reference)
    leaves_b, tree_b = jax.tree.flatten(grad_other)
    if tree_a != tree_b or any(jnp.shape(a) != jnp.shape(b) for a, b in zip(leaves_a, leaves_b,
                                                                             strict=True)):
        raise ValueError("grad_reference and grad_other must be pytrees of the same structure "
                         f"and shapes; got {tree_a} and {tree_b}")
    flat_a = jnp.concatenate([jnp.ravel(a) for a in leaves_a])
    flat_b = jnp.concatenate([jnp.ravel(b) for b in leaves_b])
    cosine = flat_a @ flat_b / (jnp.linalg.norm(flat_a) * jnp.linalg.norm(flat_b))
    return cosine, jnp.linalg.norm(flat_b - flat_a) / jnp.linalg.norm(flat_a)
