"""Random orderings of sequence positions: the noise of the discrete (edit and mask) processes.

The noise of a discrete process includes priorities :math:`u\\in[0,1)^l`; ``F_t`` acts on the
``t`` positions of lowest priority. Inverting recovers the *set* of acted-on positions from
``(x_0, x_t)``; their order is uniformly random, so the inverse draws it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def first_positions(priorities, count):
    """Boolean mask of the ``count`` positions of lowest priority (``count`` has the batch shape)."""
    # rank_i = #{j : u_j < u_i}, ties broken by index; an O(l^2) count compiles and runs faster
    # than a double argsort at the sequence lengths used here (l <= a few hundred)
    u_i, u_j = priorities[..., :, None], priorities[..., None, :]
    index = jnp.arange(priorities.shape[-1])
    earlier = (index[None, :] < index[:, None]).reshape((1,) * (priorities.ndim - 1) + 2 * index.shape)
    before = (u_j < u_i) | ((u_j == u_i) & earlier)
    rank = jnp.sum(before, axis=-1)
    return rank < jnp.asarray(count)[..., None]


def priorities_putting_first(changed, *, key):
    """Priorities with every ``changed`` position before every other one, each group in random order."""
    u = jax.random.uniform(key, jnp.shape(changed))
    return jnp.where(changed, 0.5 * u, 0.5 + 0.5 * u)


def as_logits(prediction, vocab: int):
    """Logits ``(..., l, vocab)``; integer tokens become near-one-hot logits (margin 100)."""
    prediction = jnp.asarray(prediction)
    if jnp.issubdtype(prediction.dtype, jnp.integer):
        return 100.0 * jax.nn.one_hot(prediction, vocab)
    return prediction
