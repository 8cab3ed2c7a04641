r"""Traces by forward-mode autodiff: exact, or Hutchinson's unbiased estimate.

The divergence of a field is the trace of its Jacobian,
:math:`\nabla\cdot f(x) = \operatorname{tr}\partial_x f(x)`, and a second-order term of a
generator is the trace of a Hessian. Both are traces of a matrix :math:`M` that is never
formed, only probed through the quadratic form :math:`v^\top M v` (one Jacobian-vector
product, or two nested ones for a Hessian):

.. math:: \operatorname{tr}M = \sum_{i=1}^d e_i^\top M e_i
          = \mathbb E_v\big[v^\top M v\big]\quad\text{whenever }\mathbb E[vv^\top] = I .

The exact sum costs :math:`d` products; Hutchinson's estimate with :math:`P` probes costs
:math:`P`, unbiased; with Rademacher probes its variance is
:math:`\frac2P\sum_{i\ne j}\bar M_{ij}^2`, :math:`\bar M = (M + M^\top)/2` (no diagonal term:
the smallest among probes with independent unit-variance entries).

The divergence functions take a field over a *batch* of independent examples, ``(B, ...)``
mapped row by row (a generative ODE's velocity is written that way); they return one
divergence per example, from :math:`d` (or one) products of the whole batch. For one
example, map with ``jax.vmap(fn)`` over a batch of one, or batch the caller.

Reference: Hutchinson, *A stochastic estimator of the trace of the influence matrix for
Laplacian smoothing splines* (1990); FFJORD (Grathwohl et al., arXiv:1810.01367) for its use
in the instantaneous change of variables, 苏剑林, https://kexue.fm/archives/9379.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

__all__ = ["exact_divergence", "exact_trace", "hutchinson_divergence", "hutchinson_trace"]


def exact_divergence(fn: Callable[[jax.Array], jax.Array],
                     x: jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""``(fn(x), div)``: the field and its exact divergence per example,
    :math:`\nabla\cdot f(x_b) = \sum_i (J_b e_i)_i`, by :math:`d` JVPs of the whole batch.

    The tangent :math:`e_i` is set in every example at once; since ``fn`` maps the examples
    independently, the :math:`i`-th output coordinate of each example is its own
    :math:`\partial_i f_i`.

    Args:
      fn: maps ``(B, ...)`` to ``(B, ...)`` (the same shape), example by example.
      x: ``(B, ...)``; :math:`d` is the size of one example.

    Returns:
      ``fn(x)`` cast to ``x``'s dtype, shape ``x.shape``, and the divergences ``(B,)``.

    Raises:
      ValueError: ``x`` has no batch axis (a scalar).
    """
    if jnp.ndim(x) < 1:
        raise ValueError(f"x must have shape (B, ...); got {jnp.shape(x)}")
    b = x.shape[0]
    flat = x.reshape(b, -1)
    dim = flat.shape[1]

    def f(z):
        return fn(z.reshape(x.shape)).reshape(b, dim).astype(x.dtype)

    def column(i):
        tangent = jnp.broadcast_to(jax.nn.one_hot(i, dim, dtype=x.dtype), (b, dim))
        return jax.jvp(f, (flat,), (tangent,))[1][:, i]

    value = f(flat)
    return value.reshape(x.shape), jnp.sum(jax.vmap(column)(jnp.arange(dim)), axis=0)


def hutchinson_divergence(fn: Callable[[jax.Array], jax.Array], x: jax.Array,
                          probe: jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""``(fn(x), v^\top J v)``: the field and Hutchinson's one-probe estimate of its
    divergence per example, unbiased when :math:`\mathbb E[vv^\top] = I` (Rademacher or
    standard normal probes). Average over independent probes (``jax.vmap`` over ``probe``)
    to reduce the variance.

    Args:
      fn: maps ``(B, ...)`` to ``(B, ...)`` (the same shape), example by example.
      x: ``(B, ...)``.
      probe: ``x.shape``; one probe per example.

    Returns:
      ``fn(x)`` cast to ``x``'s dtype, shape ``x.shape``, and the estimates ``(B,)``.

    Raises:
      ValueError: ``probe``'s shape is not ``x``'s, or ``x`` has no batch axis.
    """
    if jnp.ndim(x) < 1 or jnp.shape(probe) != jnp.shape(x):
        raise ValueError(f"need x of shape (B, ...) and a probe of its shape; got x "
                         f"{jnp.shape(x)}, probe {jnp.shape(probe)}")
    value, jvp = jax.jvp(lambda z: fn(z).astype(x.dtype), (x,), (probe,))
    return value, jnp.sum((jvp * probe).reshape(x.shape[0], -1), axis=1)


def exact_trace(quadratic_form: Callable[[jax.Array], jax.Array],
                directions_PxD: jax.Array) -> jax.Array:
    r""":math:`\sum_p q(u_p)` for :math:`q(v) = v^\top M v`: the trace of :math:`M` when the
    directions are the identity's rows, and :math:`\operatorname{tr}(G^\top M G)` when they
    are the columns of :math:`G`.

    Args:
      quadratic_form: ``q(v_D) -> (...)``, any output shape (one trace per output).
      directions_PxD: ``(P, d)`` directions.

    Returns:
      The sum over directions, shaped like one ``q`` output.
    """
    return jnp.sum(jax.vmap(quadratic_form)(directions_PxD), axis=0)


def hutchinson_trace(quadratic_form: Callable[[jax.Array], jax.Array],
                     probes_PxD: jax.Array) -> jax.Array:
    r"""Hutchinson's estimate :math:`\frac1P\sum_p q(v_p)` of :math:`\operatorname{tr}M`,
    unbiased when :math:`\mathbb E[vv^\top] = I` (for probes :math:`v = Gz`, of
    :math:`\operatorname{tr}(GG^\top M)`).

    Args:
      quadratic_form: ``q(v_D) -> (...)``, any output shape.
      probes_PxD: ``(P, d)`` probes, ``P >= 1``.

    Returns:
      The mean over probes, shaped like one ``q`` output.
    """
    return jnp.mean(jax.vmap(quadratic_form)(probes_PxD), axis=0)
