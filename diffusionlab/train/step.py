r"""One generic, jitted training step: loss, gradient, optimizer update and parameter EMA.

The step is a pure function of ``(state, data, step)``: the batch and the step's key are
derived from the step number, so a run resumed from a checkpoint repeats exactly what an
uninterrupted run would have done. A non-finite loss freezes the state and records the
first offending step, which the loop turns into an error (the last good checkpoint stays).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class TrainState(NamedTuple):
    """Everything a run needs to continue: a pytree, checkpointed whole.

    Attributes:
      step: number of completed steps (int32 scalar).
      params: the trained parameters.
      ema_params: exponential moving average of ``params``.
      opt_state: the optax state.
      bad_step: the first step whose loss was not finite, or -1.
    """

    step: jax.Array
    params: Any
    ema_params: Any
    opt_state: Any
    bad_step: jax.Array


def init_state(params: Any, optimizer: optax.GradientTransformation) -> TrainState:
    """A fresh :class:`TrainState` at step 0 (the EMA starts at the initial parameters)."""
    # Fresh copies: the loop donates the state's buffers, never the caller's arrays.
    params, ema = jax.tree.map(jnp.array, params), jax.tree.map(jnp.array, params)
    return TrainState(jnp.asarray(0, jnp.int32), params, ema, optimizer.init(params),
                      jnp.asarray(-1, jnp.int32))


def batch_indices(step: jax.Array, *, num_examples: int, batch_size: int, key: jax.Array) -> jax.Array:
    """Indices of the batch at ``step``: consecutive slices of one permutation per epoch.

    Example ``j`` of the batch is position ``(step·B + j) mod N`` of the permutation of
    epoch ``⌊(step·B + j)/N⌋``, so every epoch visits every example once and the order
    depends only on ``(key, step)``.
    """
    flat = step.astype(jnp.int32) * batch_size + jnp.arange(batch_size, dtype=jnp.int32)
    epoch, position = flat // num_examples, flat % num_examples
    first = epoch[0]
    # A batch spans at most two epochs when batch_size ≤ num_examples.
    perm_a = jax.random.permutation(jax.random.fold_in(key, first), num_examples)
    perm_b = jax.random.permutation(jax.random.fold_in(key, first + 1), num_examples)
    return jnp.where(epoch == first, perm_a[position], perm_b[position])


def make_train_step(
    loss_fn: Callable[[Any, Any, jax.Array], jax.Array],
    optimizer: optax.GradientTransformation,
    *,
    num_examples: int,
    batch_size: int,
    ema_decay: float,
    seed: int,
    batch_sharding=None,
) -> Callable[[TrainState, Any], tuple[TrainState, jax.Array]]:
    r"""Builds ``train_step(state, data) -> (state, loss)`` (not yet jitted).

    ``loss_fn(params, batch, key)`` returns per-example losses; the step minimises their
    mean. The EMA follows :math:`\bar\theta \leftarrow d\,\bar\theta + (1-d)\,\theta`.
    """
    data_key, step_key = jax.random.split(jax.random.key(seed))

    def train_step(state: TrainState, data: Any) -> tuple[TrainState, jax.Array]:
        index = batch_indices(state.step, num_examples=num_examples, batch_size=batch_size,
                              key=data_key)
        batch = jax.tree.map(lambda leaf: leaf[index], data)
        if batch_sharding is not None:
            batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
        key = jax.random.fold_in(step_key, state.step)

        def mean_loss(params):
            losses = loss_fn(params, batch, key)
            if losses.ndim != 1 or losses.shape[0] != batch_size:
                raise ValueError(f"loss_fn must return per-example losses of shape ({batch_size},), "
                                 f"got {losses.shape}")
            return jnp.mean(losses)

        loss, grads = jax.value_and_grad(mean_loss)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = optax.incremental_update(params, state.ema_params, 1.0 - ema_decay)
        stepped = TrainState(state.step + 1, params, ema, opt_state, state.bad_step)
        ok = jnp.isfinite(loss) & (state.bad_step < 0)
        # Freeze on the first non-finite loss so the state never absorbs NaNs.
        frozen = state._replace(bad_step=jnp.where(state.bad_step < 0, state.step, state.bad_step))
        new_state = jax.tree.map(lambda a, b: jnp.where(ok, a, b), stepped, frozen)
        return new_state, loss

    return train_step
