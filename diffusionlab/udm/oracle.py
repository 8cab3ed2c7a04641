r"""Exact :math:`\hat x_0` predictors for a finite training set: the empirical posterior.

For training points :math:`x^{(1)},\dots,x^{(N)}` drawn with equal weights, Bayes' rule over the
set gives the ideal model :math:`q(x_0\mid x_t)` in closed form,

.. math:: p(x_0=x^{(i)}\mid x_t)=w_i(x_t)=
          \frac{p(x_t\mid x_0=x^{(i)})}{\sum_j p(x_t\mid x_0=x^{(j)})},

so a sampler driven by it has no network error: what is left is the sampler's own
(discretisation and kernel) error. :func:`empirical_predictor` returns it in the form the
trained networks take (``predict_x0(x_t, t)``, for :func:`diffusionlab.udm.sample`):

* **hot** (:class:`~diffusionlab.udm.HotDiffusion`): :math:`p(x_t\mid x^{(i)})=
  \mathcal N(\bar\alpha_t x^{(i)},\bar\beta_t^2 I)`, a softmax attention over the set; the
  prediction is the posterior mean :math:`\sum_i w_i x^{(i)}`;
* **cold with noise** (:class:`~diffusionlab.udm.ColdDiffusion`, ``sigma > 0``):
  :math:`p(x_t\mid x^{(i)})=\mathcal N(D_t(x^{(i)}),\sigma^2 I)`; the posterior mean;
* **encoder** (:class:`~diffusionlab.udm.EncoderDiffusion`):
  :math:`p(x_t\mid x^{(i)})=\mathcal N(\bar\alpha_t\mathcal F_\phi(x^{(i)}),\bar\beta_t^2 I)`;
  the posterior mean in data space (what the decoder is trained to output). The encoder's
  kernel re-encodes it, and :math:`\mathcal F_\phi(\mathbb E[x_0\mid x_t])\ne
  \mathbb E[\mathcal F_\phi(x_0)\mid x_t]`, so even this exact predictor lands on the
  training points with unequal frequencies (a bias of the model's design, not of a network);
* **mask** (:class:`~diffusionlab.udm.MaskDiffusion`): :math:`p(x_t\mid x^{(i)})=
  \mathbb 1[x^{(i)}\text{ agrees with }x_t\text{ on every unmasked position}]/\binom lt`;
* **edit** (:class:`~diffusionlab.udm.EditDiffusion`, the invertible forward map):
  :math:`p(x_t\mid x^{(i)})=\mathbb 1[\mathrm{Ham}(x_t,x^{(i)})=t]/\big(\binom lt(K-1)^t\big)`.

For the two discrete processes the prediction is what their network head gives the sampler:
logits of the exact per-position posterior marginals
:math:`q(x_0^j=k\mid x_t)=\sum_i w_i\,\mathbb 1[x^{(i)}_j=k]`, as
:math:`\log\max(q,\text{tiny})` (the floor keeps them finite: :math:`\log` of the smallest
normal float, about :math:`-87` in float32 and :math:`-708` in float64, which no Gumbel draw of
the predict step can overcome, so impossible tokens are never drawn).

The normalising constants (:math:`\binom lt`, the Gaussian's) do not depend on :math:`i` and
cancel. The sums over the set run blockwise (a ``lax.scan`` over blocks of ``block_size``
training points with a running log-sum-exp), so memory is
:math:`O(B\cdot\text{block\_size}\cdot d)` whatever :math:`N`.

Processes without an oracle: cold diffusion with ``sigma = 0`` (a deterministic degradation:
:math:`p(x_t\mid x_0)` is a point mass on :math:`D_t(x_0)`, not a density, so the posterior
is the indicator of :math:`D_t(x^{(i)})=x_t`, degenerate and never met exactly by the
sampler's states), and :class:`~diffusionlab.udm.CustomDiffusion` (its forward map
:math:`\mathcal F_t(x_0,\varepsilon)` is an arbitrary function of Gaussian noise, whose law
has no closed form in general).

Reference: 苏剑林, 生成扩散模型漫谈（十）：统一扩散模型（理论篇）, https://kexue.fm/archives/9262
(the predict-then-correct decomposition); 生成扩散模型漫谈（十一）：统一扩散模型（应用篇）,
https://kexue.fm/archives/9271 (the forward laws).
"""

from __future__ import annotations

import math
from typing import final

import equinox as eqx
import jax
import jax.numpy as jnp

from diffusionlab import _checks as base
from diffusionlab.udm import _checks
from diffusionlab.udm.base import Process
from diffusionlab.udm.cold import ColdDiffusion
from diffusionlab.udm.custom import CustomDiffusion
from diffusionlab.udm.edit import EditDiffusion
from diffusionlab.udm.encoder import EncoderDiffusion
from diffusionlab.udm.hot import HotDiffusion
from diffusionlab.udm.mask import MaskDiffusion

__all__ = ["EmpiricalPredictor", "empirical_predictor"]

#: Log-likelihood penalty per violated constraint of a discrete forward law (a disagreeing
#: visible token; a Hamming distance off by one). The exact law is an indicator (log-weight 0 or
#: -inf); a finite penalty keeps the posterior defined at states no training point can produce
#: (reached by the baseline kernels, by approximate predictors, or by edit diffusion's uniform
#: start), where it falls back to the training points that violate the fewest constraints.
#: exp(-1e4) is exactly 0 in float32 and float64, so wherever some point satisfies the
#: constraints the weights are exactly the indicator's.
_VIOLATION = 1e4

_WITH_ORACLE = "HotDiffusion, ColdDiffusion with sigma > 0, EncoderDiffusion, MaskDiffusion, EditDiffusion"


def _squared_distances(x, points, scale=1.0):
    """``||x - scale * points_i||^2`` for one state ``x`` and ``points`` ``(b,) + x.shape``:
    ``(b,)``.

    Summed over the flattened event, one contiguous axis: XLA:CPU runs the multi-axis sum over
    the ``(B, b, 8, 8, 1)`` broadcast (under the predictor's vmap) about 30x slower (the hot
    digits oracle at B = 500, 100 steps: 16 s against 0.5 s per draw).
    """
    return jnp.sum((x.reshape(1, -1) - scale * points.reshape(points.shape[0], -1)) ** 2, axis=1)


@final
class EmpiricalPredictor(eqx.Module):
    r"""``predict_x0(x_t, t)`` from the exact posterior over a finite training set.

    Build it with :func:`empirical_predictor`. It is a pytree (an ``equinox.Module``): the
    training set is traced under ``equinox.filter_jit`` and the process's configuration and
    ``block_size`` are static, so a new training set of the same shape does not recompile.

    Attributes:
      process: the UDM process whose forward law gives :math:`p(x_t\mid x_0)`.
      data: the training points, ``(N,) + event_shape`` (floats, or token ids).
      anchors: what :math:`x_t` is compared with: the training points, or their encodings
        :math:`\mathcal F_\phi(x^{(i)})`, ``(N, D)``, for the encoder model.
      block_size: training points per block of the blockwise sums.
    """

    process: Process
    data: jax.Array
    anchors: jax.Array
    block_size: int = eqx.field(static=True)

    # --- the forward law, for one state -----------------------------------------------------

    def _log_likelihood(self, x, t, anchors):
        r""":math:`\log p(x\mid x_0=a_i)` up to a constant in ``i``, for one state ``x`` at time
        ``t`` (a scalar) and anchors ``(b,) + x.shape``; returns ``(b,)``."""
        p = self.process
        if isinstance(p, (HotDiffusion, EncoderDiffusion)):
            c = (p.latent if isinstance(p, EncoderDiffusion) else p).coefficients
            alpha_bar = jnp.asarray(c.alpha_bar, x.dtype)[t]
            beta_bar = jnp.asarray(c.beta_bar, x.dtype)[t]
            return -_squared_distances(x, anchors, alpha_bar) / (2.0 * beta_bar**2)
        if isinstance(p, ColdDiffusion):
            degraded = p.degrade(anchors, jnp.full(anchors.shape[:1], t))
            return -_squared_distances(x, degraded) / (2.0 * p.sigma**2)
        if isinstance(p, MaskDiffusion):
            visible = (x != p.mask_id)[None]
            disagree = jnp.sum(visible & (anchors != x[None]), axis=-1)
            return -_VIOLATION * disagree.astype(self._dtype(x))
        # EditDiffusion
        hamming = jnp.sum(anchors != x[None], axis=-1)
        return -_VIOLATION * jnp.abs(hamming - t).astype(self._dtype(x))

    @property
    def _discrete(self) -> bool:
        return isinstance(self.process, (MaskDiffusion, EditDiffusion))

    def _dtype(self, x_t):
        """The compute dtype: at least float32, float64 where the data or the states are."""
        if self._discrete:
            return jnp.result_type(float)
        return jnp.promote_types(jnp.asarray(x_t).dtype, self.data.dtype)

    def _values(self, data, dtype):
        """What the posterior averages: the points, or their tokens one-hot."""
        if self._discrete:
            return jax.nn.one_hot(data, self.process.vocab, dtype=dtype)
        return data.astype(dtype)

    def _inputs(self, x_t, t):
        """Checked ``(x_BxE, t_B, batch)`` with the batch axes flattened."""
        if self._discrete:
            x_t = self.process.check_states(x_t, "x_t", allow_mask=True)
        else:
            x_t = _checks.data(x_t, "x_t")
        t = _checks.times(t, low=1, high=self.process.T)
        event = tuple(self.anchors.shape[1:])
        batch = _checks.batch_shape(x_t, event, t, name="x_t")
        x = x_t.reshape((math.prod(batch),) + event)
        if not self._discrete:
            x = x.astype(self._dtype(x_t))
        return x, jnp.broadcast_to(t, batch).reshape(-1), batch

    # --- the predictor ----------------------------------------------------------------------

    def __call__(self, x_t, t):
        r"""The exact prediction at ``x_t``: :math:`\mathbb E[x_0\mid x_t]` (continuous) or the
        logits of the posterior marginals (discrete), summed blockwise.

        Args:
          x_t: states, ``batch + state shape`` (``(B, D)`` latents for the encoder model;
            token ids, with the mask id for mask diffusion, for the discrete processes).
          t: integer time(s) in ``[1, T]``, a scalar or the batch shape.

        Returns:
          ``batch + event_shape`` posterior means (in at least float32, float64 where the data
          or ``x_t`` are), or logits ``batch + (length, vocab)``.

        Raises:
          TypeError: if ``x_t`` is not an array of the process's kind or ``t`` not integer(s).
          ValueError: if ``x_t``'s trailing axes are not the state shape, ``t``'s shape is
            neither scalar nor the batch shape, or (when concrete) ``t`` lies outside
            ``[1, T]``, ``x_t`` holds NaN/inf or token ids outside the vocabulary.
        """
        x, t, batch = self._inputs(x_t, t)
        dtype = self._dtype(x_t)
        n, size = self.anchors.shape[0], self.block_size
        blocks = -(-n // size)
        pad = blocks * size - n

        def blocked(a):
            a = jnp.concatenate([a, jnp.repeat(a[:1], pad, axis=0)], axis=0) if pad else a
            return a.reshape((blocks, size) + a.shape[1:])

        valid = (jnp.arange(blocks * size) < n).reshape(blocks, size)  # padding: weight 0
        values_like = jax.eval_shape(lambda d: self._values(d, dtype), self.data[:1])
        out_shape = (x.shape[0],) + values_like.shape[1:]
        log_likelihood = jax.vmap(self._log_likelihood, in_axes=(0, 0, None))

        def step(carry, block):
            running_max, total, acc = carry
            anchors, data, ok = block
            anchors = anchors if self._discrete else anchors.astype(dtype)
            log_w = jnp.where(ok[None, :], log_likelihood(x, t, anchors).astype(dtype), -jnp.inf)
            new_max = jnp.maximum(running_max, jnp.max(log_w, axis=1))
            scale = jnp.exp(running_max - new_max)  # 0 at the first block (running max -inf)
            w = jnp.exp(log_w - new_max[:, None])
            values = self._values(data, dtype)
            acc = acc * scale.reshape(scale.shape + (1,) * (acc.ndim - 1)) + jnp.tensordot(w, values, axes=1)
            return (new_max, total * scale + jnp.sum(w, axis=1), acc), None

        init = (jnp.full(x.shape[:1], -jnp.inf, dtype), jnp.zeros(x.shape[:1], dtype),
                jnp.zeros(out_shape, dtype))
        (_, total, acc), _ = jax.lax.scan(step, init, (blocked(self.anchors), blocked(self.data), valid))
        mean = acc / total.reshape(total.shape + (1,) * (acc.ndim - 1))
        if self._discrete:
            mean = jnp.log(jnp.maximum(mean, jnp.finfo(dtype).tiny))
        return mean.reshape(batch + mean.shape[1:])

    def weights(self, x_t, t):
        r"""The posterior weights :math:`w_i(x_t)=p(x_0=x^{(i)}\mid x_t)` over the training set,
        ``batch + (N,)``, all at once (memory :math:`O(B\cdot N\cdot d)`; for inspection and tests).

        Args and Raises: as :meth:`__call__`.
        """
        x, t, batch = self._inputs(x_t, t)
        dtype = self._dtype(x_t)
        anchors = self.anchors if self._discrete else self.anchors.astype(dtype)
        log_w = jax.vmap(self._log_likelihood, in_axes=(0, 0, None))(x, t, anchors)
        w = jax.nn.softmax(log_w.astype(dtype), axis=-1)
        return w.reshape(batch + w.shape[1:])


def empirical_predictor(process, data, *, block_size: int = 256) -> EmpiricalPredictor:
    r"""The exact :math:`\hat x_0` predictor of ``process`` for the finite training set ``data``.

    .. math:: p(x_0=x^{(i)}\mid x_t)\propto p(x_t\mid x_0=x^{(i)}),\qquad
              \hat x_0=\mathbb E[x_0\mid x_t]=\textstyle\sum_i w_i\,x^{(i)}

    (logits of the posterior marginals for the discrete processes; see the module docstring
    for each process's :math:`p(x_t\mid x_0)`). Use it in place of a trained network:
    ``udm.sample(process, udm.empirical_predictor(process, data), x_T, key=key)``. With the
    full number of steps the samples reproduce training points (memorisation): the sampler's
    error alone, without the network's.

    Args:
      process: a :class:`~diffusionlab.udm.HotDiffusion`,
        :class:`~diffusionlab.udm.ColdDiffusion` with ``sigma > 0``,
        :class:`~diffusionlab.udm.EncoderDiffusion` (its encoder as trained),
        :class:`~diffusionlab.udm.MaskDiffusion` or :class:`~diffusionlab.udm.EditDiffusion`.
      data: the training points, ``(N,) + event_shape`` with ``N ≥ 1``: real floats (half
        precision is held in float32), or token ids in ``[0, vocab)``.
      block_size: training points per block of the blockwise sums, an integer ≥ 1.

    Returns:
      An :class:`EmpiricalPredictor` (a pytree: pass it to :func:`~diffusionlab.udm.sample`).

    Raises:
      TypeError: if ``process`` is not a UDM process, or is one without a closed-form
        :math:`p(x_t\mid x_0)` (:class:`~diffusionlab.udm.CustomDiffusion`, or a process class
        of your own); if ``data`` is not an array of the process's kind; if ``block_size`` is
        not an integer.
      ValueError: for a ``ColdDiffusion`` with ``sigma = 0`` (a deterministic forward map has
        no density), ``data`` of another shape than ``(N,) + event_shape`` or with ``N = 0``,
        NaN/inf or token ids outside the vocabulary in ``data``, or ``block_size < 1``.
    """
    _checks.check_process(process)
    if isinstance(process, CustomDiffusion) or not isinstance(
        process, (HotDiffusion, ColdDiffusion, EncoderDiffusion, MaskDiffusion, EditDiffusion)
    ):
        raise TypeError(
            f"process must have a closed-form forward density p(x_t | x_0) ({_WITH_ORACLE}); "
            f"{type(process).__name__} has none (an arbitrary forward map of the noise)")
    if isinstance(process, ColdDiffusion) and process.sigma == 0:
        raise ValueError(
            "process: ColdDiffusion with sigma = 0 has no oracle: its forward map x_t = D_t(x_0) "
            "is deterministic, so p(x_t | x_0) is a point mass, not a density, and the posterior "
            "over the training set is degenerate; use sigma > 0")
    block_size = base.check_int(block_size, "block_size", low=1)
    if isinstance(process, (MaskDiffusion, EditDiffusion)):
        data = process.check_states(data, "data")
    else:
        data = _checks.data(data, "data")
    if data.ndim < 1 or data.shape[0] == 0:
        raise ValueError(f"data must be a batch (N, ...) of N ≥ 1 training points; got shape {data.shape}")
    if process.event_shape is not None and tuple(data.shape[1:]) != tuple(process.event_shape):
        raise ValueError(f"data must have shape (N, {', '.join(map(str, process.event_shape))}) "
                         f"(N training points of the process's event_shape); got {data.shape}")
    anchors = process.encoding(data) if isinstance(process, EncoderDiffusion) else data
    return EmpiricalPredictor(process, data, anchors, block_size)
