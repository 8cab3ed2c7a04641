r"""One generic, jitted training step: loss, gradient, optimizer update and parameter EMA.

The step is a pure function of ``(state, data, key)``: the batch and the step's key are
derived from the run's key and the step number, so a run resumed from a checkpoint repeats
exactly what an uninterrupted run would have done.

The step checks the whole update for finiteness: the loss, the gradient, the new
parameters (and their EMA) and the new optimizer state. The first update with a NaN or an
infinity anywhere is not applied: the state freezes at that step and records its index and
what was non-finite, which the loop turns into an error. A finite loss can still carry a
NaN gradient (``0·∞`` in a backward pass), and finite gradients can still overflow the
parameters or the optimizer's moments, so checking the loss alone would let a NaN state
through to the next checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from diffusionlab import _checks
from diffusionlab.train.sharding import check_tree

# What a non-finite update can be made of, in the order a NaN propagates: bit ``i`` of
# ``TrainState.non_finite`` is set when ``NON_FINITE_PARTS[i]`` holds a NaN or an infinity.
NON_FINITE_PARTS = ("loss", "gradient", "parameters", "optimizer state")


class TrainState(NamedTuple):
    """Everything a run needs to continue: a pytree, checkpointed whole.

    Attributes:
      step: number of completed steps (int32 scalar).
      params: the trained parameters.
      ema_params: exponential moving average of ``params``.
      opt_state: the optax state.
      bad_step: the first step whose update was not finite, or -1.
      non_finite: which parts of that update were not finite, a bit mask over
        :data:`NON_FINITE_PARTS` (0 while every update has been finite).
    """

    step: jax.Array
    params: Any
    ema_params: Any
    opt_state: Any
    bad_step: jax.Array
    non_finite: jax.Array


def check_optimizer(optimizer: Any, name: str = "optimizer") -> None:
    """Raises TypeError naming ``name`` unless ``optimizer`` has callable ``init`` and ``update``."""
    if not (callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))):
        raise TypeError(f"{name} must be an optax.GradientTransformation (with init and update); "
                        f"got {type(optimizer).__name__}")


def init_state(params: Any, optimizer: optax.GradientTransformation) -> TrainState:
    """A fresh :class:`TrainState` at step 0 (the EMA starts at the initial parameters).

    Raises:
      TypeError: ``params`` has a leaf that is not a numeric array, or ``optimizer`` is not
        an optax ``GradientTransformation``.
    """
    check_tree(params, "params")
    check_optimizer(optimizer)
    # Fresh copies: the loop donates the state's buffers, never the caller's arrays.
    params, ema = jax.tree.map(jnp.array, params), jax.tree.map(jnp.array, params)
    return TrainState(jnp.asarray(0, jnp.int32), params, ema, optimizer.init(params),
                      jnp.asarray(-1, jnp.int32), jnp.asarray(0, jnp.int32))


def non_finite_parts(mask: int) -> tuple[str, ...]:
    """The names in :data:`NON_FINITE_PARTS` whose bits are set in ``mask``."""
    return tuple(name for i, name in enumerate(NON_FINITE_PARTS) if int(mask) >> i & 1)


def all_finite(tree: Any) -> jax.Array:
    """True when every floating-point leaf of ``tree`` is free of NaNs and infinities.

    Integer, boolean and key leaves (step counters, PRNG keys) are always finite.
    """
    checks = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree) if _is_inexact(leaf)]
    return jnp.all(jnp.stack(checks)) if checks else jnp.asarray(True)


def _is_inexact(leaf: Any) -> bool:
    dtype = leaf.dtype if hasattr(leaf, "dtype") else jnp.result_type(leaf)
    return jnp.issubdtype(dtype, jnp.inexact)


def check_sizes(num_examples: Any, batch_size: Any) -> tuple[int, int]:
    """``(num_examples, batch_size)`` as ints with ``1 ≤ batch_size ≤ num_examples``.

    The two epoch permutations of :func:`batch_indices` (int32 sorts) must fit in memory.
    """
    num_examples = _checks.check_int(num_examples, "num_examples", low=1)
    batch_size = _checks.check_int(batch_size, "batch_size", low=1, high=num_examples)
    _checks.check_fits_memory("num_examples", 2 * 16.0 * num_examples, "the epoch permutations")
    return num_examples, batch_size


def batch_indices(step: jax.Array, *, num_examples: int, batch_size: int, key: jax.Array) -> jax.Array:
    """Indices of the batch at ``step``: consecutive slices of one permutation per epoch.

    Example ``j`` of the batch is position ``(step·B + j) mod N`` of the permutation of
    epoch ``⌊(step·B + j)/N⌋``, so every epoch visits every example once and the order
    depends only on ``(key, step)``.

    Args:
      step: the step, an integer scalar ≥ 0 (traced inside ``jit``).
      num_examples: N, an integer ≥ 1.
      batch_size: B, an integer in ``[1, N]``.
      key: a JAX PRNG key.

    Raises:
      TypeError: a non-integer ``step``, ``num_examples`` or ``batch_size``, or a ``key``
        that is not a PRNG key.
      ValueError: ``num_examples < 1``, ``batch_size`` outside ``[1, num_examples]``, a
        negative concrete ``step``, or sizes beyond int32 or this machine's memory.
    """
    step = _checks.check_int(step, "step", low=0)
    num_examples, batch_size = check_sizes(num_examples, batch_size)
    key = _checks.check_key(key)
    flat = jnp.asarray(step, jnp.int32) * batch_size + jnp.arange(batch_size, dtype=jnp.int32)
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
    batch_sharding=None,
) -> Callable[[TrainState, Any, jax.Array], tuple[TrainState, jax.Array]]:
    r"""Builds ``train_step(state, data, key) -> (state, loss)`` (not yet jitted).

    ``loss_fn(params, batch, key)`` returns per-example losses; the step minimises their
    mean. The EMA follows :math:`\bar\theta \leftarrow d\,\bar\theta + (1-d)\,\theta`.

    ``key`` is the run's key, the same at every step: it splits into a data key and a noise
    key, the batch of step ``n`` is :func:`batch_indices` ``(n, key=data key)`` and the
    loss's key is ``fold_in(noise key, n)``. Every step is thus a function of ``(key, n)``
    (a resumed run repeats an uninterrupted one), and the key can be a traced argument, so
    one compiled program serves every key.

    Once an update is non-finite (see the module docstring), the returned state is the
    input state with ``bad_step`` and ``non_finite`` set, and every later call returns it
    unchanged: nothing after the first bad step is applied.

    The arguments are checked here, when the step is built, not when it first runs.

    Raises:
      TypeError: ``loss_fn`` is not callable, ``optimizer`` is not an optax
        ``GradientTransformation``, ``batch_sharding`` is neither None nor a
        ``jax.sharding.Sharding``, or a size or ``ema_decay`` has the wrong type; when the
        step runs, ``key`` is not a PRNG key.
      ValueError: ``num_examples < 1``, ``batch_size`` outside ``[1, num_examples]``,
        ``ema_decay`` outside ``[0, 1)``, or a size beyond int32 or this machine's memory.
    """
    _checks.check_callable(loss_fn, "loss_fn")
    check_optimizer(optimizer)
    num_examples, batch_size = check_sizes(num_examples, batch_size)
    _checks.check_real(ema_decay, "ema_decay", low=0, high=1, high_open=True)
    if batch_sharding is not None and not isinstance(batch_sharding, jax.sharding.Sharding):
        raise TypeError(f"batch_sharding must be None or a jax.sharding.Sharding; "
                        f"got {type(batch_sharding).__name__}")

    def train_step(state: TrainState, data: Any, key: jax.Array) -> tuple[TrainState, jax.Array]:
        data_key, step_key = jax.random.split(_checks.check_key(key))
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
        parts = (loss, grads, (params, ema), opt_state)
        mask = sum(jnp.where(all_finite(part), 0, 1 << i) for i, part in enumerate(parts))
        mask = jnp.asarray(mask, jnp.int32)
        still_good = state.bad_step < 0
        ok = (mask == 0) & still_good
        stepped = TrainState(state.step + 1, params, ema, opt_state, state.bad_step,
                             state.non_finite)
        # Freeze on the first non-finite update so the state never absorbs NaNs; a state
        # that is already frozen keeps the step and the mask of its first bad update.
        frozen = state._replace(bad_step=jnp.where(still_good, state.step, state.bad_step),
                                non_finite=jnp.where(still_good, mask, state.non_finite))
        new_state = jax.tree.map(lambda a, b: jnp.where(ok, a, b), stepped, frozen)
        return new_state, loss

    return train_step
