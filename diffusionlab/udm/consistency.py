r"""Monte Carlo check of the kernel consistency constraint.

.. math:: \int p(x_s\mid x_t,x_0)\,p(x_t\mid x_0)\,dx_t=p(x_s\mid x_0).

For a fixed :math:`x_0`, draw :math:`x_t\sim p(x_t\mid x_0)` and apply the kernel with the
true :math:`x_0`; independently draw :math:`x_s\sim p(x_s\mid x_0)` with ``forward``. The two
samples must share every feature mean: :math:`(x, x^2)` per coordinate for continuous data,
token indicators per position for discrete data. Each feature gives a two-sample z-score.

Reference: 苏剑林, 生成扩散模型漫谈（十）：统一扩散模型（理论篇）, https://kexue.fm/archives/9262
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class ConsistencyResult(NamedTuple):
    """Two-sample z-scores of feature means, kernel route versus direct forward draw.

    Attributes:
      z: per-feature z-scores of the informative features (those not constant and equal in both).
      max_abs_z: the largest :math:`|z|`.
      rms_z: root-mean-square z (about 1 when the constraint holds).
      num: Monte Carlo sample size per route.
    """

    z: np.ndarray
    max_abs_z: float
    rms_z: float
    num: int


def inconsistent_kernel(process, x_t, x0_hat, t, s, *, sigma_tilde, key):
    r"""A negative control that violates the constraint: Gaussian interpolation without the
    :math:`\sqrt{1-\tilde\sigma^2}` factor, so the noise variance grows to :math:`1+\tilde\sigma^2`."""
    k_inverse, k_fresh = jax.random.split(key)
    recovered = process.invert(x0_hat, x_t, t, key=k_inverse)
    fresh = process.draw_noise(x0_hat, key=k_fresh)
    return process.apply(x0_hat, s, recovered + sigma_tilde * fresh)


def _features(x, vocab: int | None):
    x = x.reshape(x.shape[0], -1)
    if vocab is not None:
        return jax.nn.one_hot(x, vocab + 1).reshape(x.shape[0], -1)
    return jnp.concatenate([x, x**2], axis=-1)


@functools.partial(jax.jit, static_argnames=("process", "kernel_fn", "num", "kernel_kwargs"))
def _routes(process, kernel_fn, x0, t, s, key, *, num, kernel_kwargs):
    k_t, k_kernel, k_direct = jax.random.split(key, 3)
    x0s = jnp.broadcast_to(x0, (num,) + x0.shape)
    t_b, s_b = jnp.full((num,), t), jnp.full((num,), s)
    x_t = process.apply(x0s, t_b, process.draw_noise(x0s, key=k_t))
    via_kernel = kernel_fn(process, x_t, x0s, t_b, s_b, key=k_kernel, **dict(kernel_kwargs))
    direct = process.apply(x0s, s_b, process.draw_noise(x0s, key=k_direct))
    return via_kernel, direct


def marginal_consistency(
    process, kernel_fn, x0, t: int, s: int | None = None, *, key, num: int = 4096, **kernel_kwargs
) -> ConsistencyResult:
    r"""Compares :math:`x_s` through ``kernel_fn`` with a direct draw from :math:`p(x_s\mid x_0)`.

    Args:
      process: a UDM process (hashable: all fields static).
      kernel_fn: one of :mod:`diffusionlab.udm.kernels` (or any with that signature).
      x0: one example, shape ``event_shape``.
      t, s: the step ``t -> s`` (``s = t - 1`` by default).
      key: PRNG key; num: samples per route.
      **kernel_kwargs: e.g. ``sigma_tilde`` for the Gaussian-interpolation kernel.

    Returns:
      A :class:`ConsistencyResult`.
    """
    s = t - 1 if s is None else s
    if not 0 <= s < t <= process.T:
        raise ValueError(f"need 0 <= s < t <= T={process.T}; got t={t}, s={s}")
    via_kernel, direct = _routes(
        process,
        kernel_fn,
        jnp.asarray(x0),
        t,
        s,
        key,
        num=num,
        kernel_kwargs=tuple(sorted(kernel_kwargs.items())),
    )
    vocab = process.vocab if jnp.issubdtype(direct.dtype, jnp.integer) else None
    a = np.asarray(_features(via_kernel, vocab), np.float64)
    b = np.asarray(_features(direct, vocab), np.float64)
    diff = a.mean(0) - b.mean(0)
    se = np.sqrt((a.var(0, ddof=1) + b.var(0, ddof=1)) / num)
    # float round-off makes "equal" deterministic features differ by ~1e-7, not by a z-score
    tiny = 1e-5 * (1.0 + np.abs(b.mean(0)))
    z = np.where(se > 0, diff / np.where(se > 0, se, 1.0), np.where(np.abs(diff) <= tiny, 0.0, np.inf))
    # features constant and equal in both samples (impossible tokens, say) carry no information
    z = z[(se > 0) | (np.abs(diff) > tiny)]
    return ConsistencyResult(z, float(np.max(np.abs(z))), float(np.sqrt(np.mean(z**2))), num)


def reverse_step_kernel(process, x_t, x0_hat, t, s, *, key):
    """The process's own ``reverse_step`` seen as a kernel (e.g. hot diffusion's DDPM preset)."""
    return process.reverse_step(x_t, x0_hat, t, key=key, s=s)


class Case(NamedTuple):
    """One consistency check: a process, a kernel (with its keyword arguments) and a step."""

    process_name: str
    process: object
    kernel_name: str
    kernel_fn: object
    kernel_kwargs: dict
    x0: object
    t: int
    s: int
    consistent: bool  # False only for the negative control


def standard_cases(T: int = 20) -> list[Case]:
    """Every kernel family on hot, noisy cold, edit and mask diffusion, at ``t -> t-1`` and a jump.

    Also a negative control (:func:`inconsistent_kernel`) that must fail.
    """
    from diffusionlab.udm.cold import ColdDiffusion
    from diffusionlab.udm.edit import EditDiffusion
    from diffusionlab.udm.hot import HotDiffusion
    from diffusionlab.udm.kernels import baseline_kernel, deterministic_kernel, gaussian_interpolation_kernel
    from diffusionlab.udm.mask import MaskDiffusion

    hot = HotDiffusion.ddpm(T=T, event_shape=(4,))
    cold = ColdDiffusion("blur", sigma=0.2, T=T, event_shape=(4, 4, 1))
    edit = EditDiffusion(length=8, vocab=4)
    mask = MaskDiffusion(length=8, vocab=4)
    x_vec = jnp.array([1.0, -0.5, 0.25, 2.0])
    x_img = jnp.linspace(-1.0, 1.0, 16).reshape(4, 4, 1)
    tokens = jnp.array([0, 1, 2, 3, 3, 2, 1, 0])
    continuous = [
        ("baseline", baseline_kernel, {}),
        ("deterministic", deterministic_kernel, {}),
        ("gaussian interpolation (σ̃=0.5)", gaussian_interpolation_kernel, {"sigma_tilde": 0.5}),
    ]
    discrete = continuous[:2]
    t = T // 2
    cases = []
    for s in (t - 1, t - 4):
        for name, fn, kw in continuous:
            cases.append(Case("hot", hot, name, fn, kw, x_vec, t, s, True))
        cases.append(Case("hot", hot, "DDPM reverse_step", reverse_step_kernel, {}, x_vec, t, s, True))
        for name, fn, kw in continuous:
            cases.append(Case("cold blur σ=0.2", cold, name, fn, kw, x_img, t, s, True))
    for s in (3, 1):
        for name, fn, kw in discrete:
            cases.append(Case("edit", edit, name, fn, kw, tokens, 4, s, True))
            cases.append(Case("mask", mask, name, fn, kw, tokens, 4, s, True))
    cases.append(
        Case(
            "hot",
            hot,
            "control: no √(1-σ̃²)",
            inconsistent_kernel,
            {"sigma_tilde": 0.5},
            x_vec,
            t,
            t - 1,
            False,
        )
    )
    return cases
