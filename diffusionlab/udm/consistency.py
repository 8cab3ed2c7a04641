r"""Monte Carlo check of the kernel consistency constraint.

.. math:: \int p(x_s\mid x_t,x_0)\,p(x_t\mid x_0)\,dx_t=p(x_s\mid x_0).

For a fixed :math:`x_0`, draw :math:`x_t\sim p(x_t\mid x_0)` and apply the kernel with the
true :math:`x_0`; independently draw :math:`x_s\sim p(x_s\mid x_0)` with ``forward``. Two checks
compare the two samples:

* :func:`marginal_consistency`: every feature mean, :math:`(x, x^2)` per coordinate for
  continuous data, token indicators per position for discrete data; each feature gives a
  two-sample z-score. It sees the law of one coordinate at a time, not the joint law.
* :func:`hamming_consistency` (discrete processes): the law of the Hamming distance
  :math:`d(x_s,x_0)`, the number of edited positions for edit diffusion and of masks for mask
  diffusion (a mask differs from every token), by a two-sample chi-square test. The forward
  laws put all their mass on :math:`d=s`; a kernel that edits each position independently with
  probability :math:`s/l` (:func:`binomial_count_kernel`) has the same one-position marginals,
  passes the first check and fails this one.

Reference: 苏剑林, 生成扩散模型漫谈（十）：统一扩散模型（理论篇）, https://kexue.fm/archives/9262
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats as scipy_stats


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


class HammingConsistencyResult(NamedTuple):
    r"""Two-sample chi-square test of the law of :math:`d(x_s,x_0)`, kernel route versus direct draw.

    Attributes:
      distances: the distinct Hamming distances seen in either sample, ascending.
      kernel_counts, forward_counts: how often each occurs in the kernel route and in the direct
        forward draws (``num`` each).
      chi2: the chi-square statistic of the :math:`2\times k` table (0 when both samples sit on
        one distance), after pooling the distances seen fewer than :data:`MIN_CELL` times in all.
      dof: its degrees of freedom, ``k - 1`` for the ``k`` columns left after pooling.
      p_value: :math:`P(\chi^2_{\mathrm{dof}}\ge` ``chi2`` :math:`)` (1 when ``dof`` is 0).
      num: Monte Carlo sample size per route.
    """

    distances: np.ndarray
    kernel_counts: np.ndarray
    forward_counts: np.ndarray
    chi2: float
    dof: int
    p_value: float
    num: int


#: Distances seen fewer times than this (both routes together) are pooled into one column of
#: the chi-square table, so that no expected count is tiny.
MIN_CELL = 10


def binomial_count_kernel(process, x_t, x0_hat, t, s, *, key):
    r"""A negative control with the right marginals and the wrong joint law: the fresh-noise
    kernel run for a random number of steps :math:`N\sim\mathrm{Binomial}(l, s/l)` instead of
    ``s``, :math:`x_s=\mathcal F_N(\hat x_0,\varepsilon')`.

    For edit and mask diffusion the acted-on set is uniform given its size, so each position is
    acted on independently with probability :math:`s/l`, exactly as under the forward law at
    ``s`` one position at a time; but :math:`d(x_s,\hat x_0)=N` is Binomial instead of ``s``.
    """
    del x_t, t
    k_count, k_noise = jax.random.split(key)
    length = x0_hat.shape[-1]
    probability = (jnp.asarray(s) / length)[..., None]
    count = jnp.sum(jax.random.uniform(k_count, x0_hat.shape) < probability, axis=-1)
    return process.apply(x0_hat, count, process.draw_noise(x0_hat, key=k_noise))


def chi2_two_sample(a, b):
    r"""Chi-square test of homogeneity of two samples of integers (a :math:`2\times k` table).

    Values seen fewer than :data:`MIN_CELL` times in both samples together are pooled into one
    column; if that column is still below :data:`MIN_CELL` it joins the smallest other column.

    Args:
      a, b: 1-D integer samples (any sizes ≥ 1).

    Returns:
      ``(values, counts_a, counts_b, chi2, dof, p_value)``; ``chi2 = 0``, ``dof = 0`` and
      ``p_value = 1`` when a single column is left.

    Raises:
      ValueError: if a sample is empty or not 1-D.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 1 or b.ndim != 1 or a.size == 0 or b.size == 0:
        raise ValueError(f"a and b must be non-empty 1-D samples; got shapes {a.shape}, {b.shape}")
    values = np.union1d(a, b)
    counts = np.stack([np.sum(a[:, None] == values, 0), np.sum(b[:, None] == values, 0)])
    total = counts.sum(0)
    rare = total < MIN_CELL
    table = counts[:, ~rare]
    if rare.any():
        pooled = counts[:, rare].sum(1, keepdims=True)
        if pooled.sum() >= MIN_CELL or table.shape[1] == 0:
            table = np.concatenate([table, pooled], axis=1)
        else:
            smallest = int(np.argmin(table.sum(0)))
            table = table.copy()
            table[:, smallest] += pooled[:, 0]
    dof = table.shape[1] - 1
    if dof == 0:
        return values, counts[0], counts[1], 0.0, 0, 1.0
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    chi2 = float(np.sum((table - expected) ** 2 / expected))
    return values, counts[0], counts[1], chi2, dof, float(scipy_stats.chi2.sf(chi2, dof))


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


def hamming_consistency(
    process, kernel_fn, x0, t: int, s: int | None = None, *, key, num: int = 4096, **kernel_kwargs
) -> HammingConsistencyResult:
    r"""Compares the law of :math:`d(x_s,x_0)` through ``kernel_fn`` with that of a direct draw.

    The routes are those of :func:`marginal_consistency` (the same draws at the same ``key``):
    :math:`x_t\sim p(x_t\mid x_0)` then the kernel with the true :math:`x_0`, against
    :math:`x_s\sim p(x_s\mid x_0)`. The statistic is the Hamming distance to :math:`x_0`: the
    number of edited tokens (edit diffusion) or of masks (mask diffusion), whose forward law is
    a point mass at ``s``. A consistent kernel has :math:`p\ge` any level; a kernel that gets
    only the per-position marginals right (:func:`binomial_count_kernel`) has :math:`p\approx0`.

    Args:
      process: a discrete UDM process (hashable: all fields static).
      kernel_fn: a kernel with the signature of :mod:`diffusionlab.udm.kernels`.
      x0: one example, token ids of shape ``event_shape``.
      t, s: the step ``t -> s`` (``s = t - 1`` by default), ``0 ≤ s < t ≤ T``.
      key: PRNG key; num: samples per route.
      **kernel_kwargs: keyword arguments of ``kernel_fn``.

    Returns:
      A :class:`HammingConsistencyResult` (test: :func:`chi2_two_sample`).

    Raises:
      ValueError: for times out of range, or a process whose states are not token ids.
    """
    s = t - 1 if s is None else s
    if not 0 <= s < t <= process.T:
        raise ValueError(f"need 0 <= s < t <= T={process.T}; got t={t}, s={s}")
    x0 = jnp.asarray(x0)
    if not jnp.issubdtype(x0.dtype, jnp.integer):
        raise ValueError(f"the Hamming check needs a discrete process (token ids x0); got x0 of "
                         f"dtype {x0.dtype}")
    via_kernel, direct = _routes(process, kernel_fn, x0, t, s, key, num=num,
                                 kernel_kwargs=tuple(sorted(kernel_kwargs.items())))
    distance = np.sum(np.asarray(via_kernel != x0[None]).reshape(num, -1), axis=-1)
    reference = np.sum(np.asarray(direct != x0[None]).reshape(num, -1), axis=-1)
    values, kernel_counts, forward_counts, chi2, dof, p = chi2_two_sample(distance, reference)
    return HammingConsistencyResult(values, kernel_counts, forward_counts, chi2, dof, p, num)


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
    consistent: bool  # the kernel preserves the whole law p(x_s | x_0); False for the controls
    marginals_consistent: bool | None = None  # one coordinate at a time; None: as ``consistent``

    @property
    def marginals_expected(self) -> bool:
        """Whether the marginal check should pass (``marginals_consistent``, default ``consistent``)."""
        return self.consistent if self.marginals_consistent is None else self.marginals_consistent


def standard_cases(T: int = 20) -> list[Case]:
    """Every kernel family on hot, noisy cold, edit and mask diffusion, at ``t -> t-1`` and a jump.

    Also negative controls: :func:`inconsistent_kernel` (hot; wrong marginals) and
    :func:`binomial_count_kernel` on edit and mask (right marginals, wrong Hamming law).
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
    for name, process in (("edit", edit), ("mask", mask)):
        cases.append(Case(name, process, f"control: Binomial {name} count", binomial_count_kernel,
                          {}, tokens, 4, 3, False, True))
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
