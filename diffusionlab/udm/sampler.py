r"""The generic reverse sampler: predict :math:`\hat x_0`, then correct with the process's kernel.

For :math:`t=T,\dots,1` (or a strided subset when ``steps < T``):

1. :math:`\hat x_0\leftarrow` ``process.draw_x0(predict_x0(x_t, t), x_t, t)``;
2. :math:`x_s\leftarrow` ``process.reverse_step(x_t, x0_hat, t, s=s)``;

and the sample is ``process.finish(x_0, last x0_hat)``. One compiled loop per process
configuration, predictor structure and batch shape: the number of steps is a traced loop bound
and the times a traced array, so a sweep over step counts compiles once, plus once for the
full chain (``steps = T``, whose times are computed from the loop counter, which runs
faster). A trajectory, whose length is the number of steps, compiles once per step count.
The keys: ``key`` is split into one key per step and each of those into (predict, kernel)
keys, all before the loop, so the samples equal those of a Python loop that splits as it goes.

Reference: 苏剑林, 生成扩散模型漫谈（十）：统一扩散模型（理论篇）, https://kexue.fm/archives/9262
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from diffusionlab import _checks as base
from diffusionlab.udm import _checks


def reverse_times(T: int, steps: int) -> np.ndarray:
    """The ``steps + 1`` strictly decreasing integer times from ``T`` to ``0`` (evenly spaced).

    Raises:
      TypeError: if ``T`` or ``steps`` is not an integer.
      ValueError: unless ``1 ≤ steps ≤ T ≤ 2**31 - 1`` (and the times fit in memory).
    """
    T = base.check_int(T, "T", low=1)
    steps = base.check_int(steps, "steps", low=1, high=T)
    base.check_fits_memory("steps", 3 * 8.0 * (steps + 1), "the reverse times")
    return np.round(np.linspace(T, 0, steps + 1)).astype(np.int32)


# Up to this many times (T + 1), the traced-steps loop keeps all of them in one array.
_MAX_TRACED_TIMES = 1 << 14


def _step_functions(process, predict_x0, x_T, key, t0):
    """The (predict, step) pair of the loop and its initial carry ``(x_T, zeros like x0_hat)``."""
    batch = x_T.shape[:1]

    def predict(x, t_B, key):
        return process.draw_x0(predict_x0(x, t_B), x, t_B, key=key)

    def step(x, t, s, k_predict, k_kernel):
        t_B, s_B = jnp.full(batch, t), jnp.full(batch, s)
        x0_hat = predict(x, t_B, k_predict)
        return process.reverse_step(x, x0_hat, t_B, key=k_kernel, s=s_B), x0_hat

    x0_like = jax.eval_shape(predict, x_T, jnp.full(batch, t0), key)
    return step, (x_T, jnp.zeros(x0_like.shape, x0_like.dtype))


def _step_keys(key, steps: int):
    # The per-step keys are split before the loop, in one vectorised split: the same keys as
    # splitting each step's key inside the body, without a threefry loop per step.
    return jax.vmap(jax.random.split)(jax.random.split(key, steps))


@eqx.filter_jit
def _sample_jit(process, predict_x0, x_T, key, steps: int, trajectory: bool):
    # Arrays in ``process`` and ``predict_x0`` (parameters) are traced; everything else (the
    # process's configuration, the predictor's function, ``steps``) is static: one program
    # per step count. Used for trajectories (their length is ``steps``) and when the key's
    # split is not prefix-stable (see ``_traced_steps_ok``).
    times = reverse_times(process.T, steps)
    step, carry = _step_functions(process, predict_x0, x_T, key, times[0])

    def scan_step(carry, inputs):
        x, _ = carry
        x, x0_hat = step(x, *inputs)
        return (x, x0_hat), (x if trajectory else None)

    keys = _step_keys(key, steps)
    inputs = (jnp.asarray(times[:-1]), jnp.asarray(times[1:]), keys[:, 0], keys[:, 1])
    (x_last, x0_hat), path = jax.lax.scan(scan_step, carry, inputs)
    sample = process.finish(x_last, x0_hat)
    if trajectory:
        return sample, jnp.concatenate([x_T[None], path], axis=0)
    return sample


@eqx.filter_jit
def _sample_traced_steps(process, predict_x0, x_T, key, times, steps, every_step: bool):
    # ``times`` is ``(T + 1,)``: the reverse times of ``steps`` steps, then padding; ``steps``
    # a traced int32. One program serves every step count of a process below ``T``, and one
    # ``steps == T`` (``every_step``), whose time is ``T - i``: XLA compiles a time that is a
    # constant affine function of the loop counter into a faster body than one read from an
    # array (measured 1.3x at batch 4096, 2-D, 200 steps on CPU), and that is the default.
    T = times.shape[0] - 1
    step, carry = _step_functions(process, predict_x0, x_T, key, jnp.int32(T))
    keys = _step_keys(key, T)  # key i does not depend on how many are split

    def body(i, carry):
        x, _ = carry
        t, s = (T - i, T - i - 1) if every_step else (times[i], times[i + 1])
        return step(x, t, s, keys[i, 0], keys[i, 1])

    x_last, x0_hat = jax.lax.fori_loop(0, steps, body, carry)
    return process.finish(x_last, x0_hat)


def _traced_steps_ok(key, T: int) -> bool:
    """Whether the traced-steps loop draws the step loop's keys: the ``i``-th key of
    ``jax.random.split(key, n)`` must not depend on ``n``. That holds for JAX's default keys
    (threefry under ``jax_threefry_partitionable``, the default, and rbg), not for threefry
    without it; it is checked once per key implementation and setting."""
    if T + 1 > _MAX_TRACED_TIMES:
        return False
    typed = key if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else jax.random.wrap_key_data(key)
    return _split_is_prefix_stable(str(jax.random.key_impl(typed)),
                                   bool(jax.config.jax_threefry_partitionable))


@functools.cache
def _split_is_prefix_stable(impl: str, partitionable: bool) -> bool:
    del partitionable  # part of the cache key: the setting changes threefry's split
    with jax.ensure_compile_time_eval():  # concrete even when first asked inside a trace
        probe = jax.random.key(0, impl=impl)
        few, more = (jax.random.key_data(jax.random.split(probe, n)) for n in (2, 3))
        return bool(np.array_equal(np.asarray(few), np.asarray(more)[:2]))


def sample(
    process,
    predict_x0: Callable[[jax.Array, jax.Array], jax.Array],
    x_T,
    *,
    key,
    steps: int | None = None,
    trajectory: bool = False,
):
    r"""Runs the reverse process from ``x_T`` down to ``t = 0``.

    .. math:: \hat x_0\sim q(x_0\mid x_t),\qquad x_{s}\sim p(x_{s}\mid x_t,x_0=\hat x_0).

    Args:
      process: any UDM process (a :class:`~diffusionlab.udm.Process`: ``HotDiffusion``,
        ``ColdDiffusion``, ``EditDiffusion``, ``MaskDiffusion``, ``EncoderDiffusion``,
        ``CustomDiffusion`` or your own).
      predict_x0: ``predict_x0(x_t_B..., t_B) -> prediction``: :math:`\hat x_0`, or logits for
        the discrete processes. Any callable (network, oracle). A pytree callable such as
        ``jax.tree_util.Partial(apply, params)`` (or an ``equinox.Module``) has its arrays
        traced, so new parameters do not recompile; a plain function is static (a new
        closure recompiles). This is the library's one convention for a function with
        parameters (``equinox.filter_jit``).
      x_T: a batch ``(B, ...)`` from the terminal law (``process.prior``): ``(B,) + event_shape``
        floats (token ids for the discrete processes, latents ``(B, D)`` for
        ``EncoderDiffusion``). An empty batch gives empty samples; half-precision floats are
        sampled in float32.
      key: PRNG key.
      steps: number of reverse steps, ``1 <= steps <= T``; default ``T``. Fewer steps jump
        ``t -> s`` along evenly spaced integer times. The count is traced: sampling at
        several counts below ``T`` compiles one program, and ``steps = T`` one more (for
        ``T < 16384``; a trajectory compiles one per count, since its length is the count).
      trajectory: also return the states ``(steps + 1, B, ...)`` from ``x_T`` to ``x_0``.

    Returns:
      The samples (and the trajectory if asked).

    Raises:
      TypeError: if ``process`` is not a UDM process, ``predict_x0`` not callable, ``x_T`` not
        an array of the process's kind (real floats, or integer token ids), ``key`` not a PRNG
        key, ``steps`` not an integer or ``trajectory`` not a bool.
      ValueError: if ``steps`` is outside ``[1, T]``, ``x_T`` is not ``(B,) + event_shape``
        (one batch axis) or (when concrete) holds NaN/inf or token ids outside the vocabulary.
    """
    _checks.check_process(process)
    base.check_callable(predict_x0, "predict_x0")
    T = base.check_int(process.T, "process.T", low=1)
    steps = T if steps is None else base.check_int(steps, "steps", low=1, high=T)
    if not isinstance(trajectory, (bool, np.bool_)):
        raise TypeError(f"trajectory must be a bool; got {base._describe(trajectory)}")
    base.check_key(key)
    x_T = _checks.states(process, x_T, "x_T", allow_mask=True)
    if x_T.ndim < 1:
        raise ValueError(f"x_T must be a batch (B, ...); got shape {x_T.shape}")
    if process.event_shape is not None:
        expected = process.state_shape(x_T.shape[:1] + tuple(process.event_shape))
        if x_T.shape != tuple(expected):
            raise ValueError(f"x_T must have shape {tuple(expected)} (one batch axis, then the "
                             f"shape of one state of the process); got {x_T.shape}")
    if trajectory or not _traced_steps_ok(key, T):
        return _sample_jit(process, predict_x0, x_T, key, int(steps), bool(trajectory))
    times = np.zeros(T + 1, np.int32)
    times[: steps + 1] = reverse_times(T, steps)
    return _sample_traced_steps(process, predict_x0, x_T, key, jnp.asarray(times),
                                jnp.int32(steps), steps == T)
