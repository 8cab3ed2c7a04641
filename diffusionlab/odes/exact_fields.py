r"""Exact marginal fields of a finite training set, in place of a learned network.

For the empirical distribution :math:`\tilde p = \frac1N\sum_i\delta_{x_i}` each method's
regression target has a closed-form minimiser, so a method can be sampled with no network
at all. Comparing a trained model with its exact field, from the same prior draws and with
the same solver, separates the network's error (network − exact) from the error of the
method and the solver (exact − data floor). The exact fields reproduce :math:`\tilde p`
itself: their samples land on training points (memorisation, see
:mod:`diffusionlab.odes.memorisation`), so their quality is that of the training set.

* gravity: :func:`diffusionlab.odes.gravity.velocity`, the field's direction
  :math:`F_x/F_t` (the conditional target's regression function).
* cfm: :func:`diffusionlab.odes.flows.marginal_velocity` with the prior
  :math:`\mathcal N(0, I)`.
* vp: the probability flow of the exact noise predictor, :func:`vp_velocity`:
  :math:`p_t = \frac1N\sum_i\mathcal N(\alpha_t x_i, \sigma_t^2 I)` is a Gaussian mixture,
  whose score :func:`vp_score` is the posterior-weighted mean
  :math:`\nabla\log p_t(x) = -\,\mathbb E[x - \alpha_t x_0\mid x_t = x]/\sigma_t^2`.

Reflow has none: its target is the marginal velocity of the couplings (noise, image under
the first model), which depend on that model, not on the training set alone.

References: 苏剑林, 《生成扩散模型漫谈（十三）》, https://kexue.fm/archives/9305 (gravity);
《生成扩散模型漫谈（十七）》, https://kexue.fm/archives/9497 (flow matching); Song et al.,
arXiv:2011.13456 (the VP probability flow); Karras et al., arXiv:2206.00364 §B.3 (the ideal
denoiser of a finite training set).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from diffusionlab import _checks
from diffusionlab.odes import flows, gravity, learned
from diffusionlab.odes._checks import points, saturating_cast, times
from diffusionlab.odes.generate import TIMES, Generated, generate
from diffusionlab.odes.pointmass import weighted_sums
from diffusionlab.schedules import VPSchedule

EXACT_METHODS = ("gravity", "vp", "cfm")
"""The methods of :mod:`diffusionlab.odes.learned` whose exact field is computable from the
training set (reflow's is not: its couplings come from the first model)."""

_DEFAULT_SCHEDULE = VPSchedule()


def _vp_times(t, batch, dtype):
    t = times(t)
    if t.ndim > 1 or (t.ndim == 1 and t.shape[0] not in (1, batch)):
        raise ValueError(f"t must be a scalar or have shape ({batch},), one per row of x; got "
                         f"shape {t.shape}")
    _checks.check_real(t, "t", low=0.0, high=1.0, low_open=True, scalar=False)
    return jnp.broadcast_to(t.astype(dtype).reshape(-1), (batch,))


def _vp_posterior_residual(x, t, data, schedule, block):
    r""":math:`\mathbb E[x - \alpha_t x_0\mid x_t = x]` ``(B, d)`` and :math:`\sigma_t` ``(B,)``.

    Blockwise log-sum-exp over the data through :func:`weighted_sums`, in the rescaled
    variable :math:`x/\alpha_t` (so that one data array serves every query's time):
    :math:`\|x - \alpha x_i\|^2/\sigma^2 = \|x/\alpha - x_i\|^2\,\alpha^2/\sigma^2`.
    """
    alpha = jnp.exp(schedule.log_alpha(t))
    sigma = schedule.sigma(t).astype(x.dtype)
    ratio_sq = (alpha / sigma) ** 2

    def log_weight(diff, dist_sq, y, t_B):
        del diff, y, t_B
        return -0.5 * ratio_sq[:, None] * dist_sq

    sums = weighted_sums(x / alpha[:, None], t, data, log_weight, block=block)
    return alpha[:, None] * sums.displacement / sums.weight[:, None], sigma


def _check_schedule(schedule):
    if not isinstance(schedule, VPSchedule):
        raise TypeError(f"schedule must be a VPSchedule; got {type(schedule).__name__}")


def vp_score(x, t, data, *, schedule: VPSchedule = _DEFAULT_SCHEDULE,
             block: int = 512) -> jax.Array:
    r"""The exact score of the VP marginal of an empirical distribution,

    .. math:: \nabla_x\log p_t(x),\qquad
              p_t = \frac1N\sum_{i=1}^N\mathcal N(\alpha_t x_i,\ \sigma_t^2 I),\qquad
              \nabla_x\log p_t(x) = -\frac{\sum_i w_i\,(x - \alpha_t x_i)}
              {\sigma_t^2\sum_i w_i},\quad w_i = e^{-\|x - \alpha_t x_i\|^2/2\sigma_t^2},

    computed blockwise in the log domain (memory :math:`O(B\times\text{block}\times d)`, no
    underflow of the weights far from the data).

    Args:
      x: ``(B, d)`` query points; t: VP times in :math:`(0, 1]`, a scalar or ``(B,)``;
      data: ``(N, d)`` the training points, ``N ≥ 1``; schedule: the :class:`VPSchedule`
      (DDPM's linear :math:`\beta` by default, as :func:`diffusionlab.odes.vp.vp_loss`);
      block: training points per block (≥ 1).

    Returns:
      ``(B, d)``, in the inputs' dtype (computed in at least float32).

    Raises:
      TypeError, ValueError: naming the bad argument (shapes, dtypes, NaN/inf, ``t``
        outside :math:`(0, 1]`, ``block < 1``).
    """
    (residual, sigma, dtype), _ = _vp_inputs(x, t, data, schedule, block)
    return saturating_cast(-residual / (sigma ** 2)[:, None], dtype)


def _vp_inputs(x, t, data, schedule, block):
    _check_schedule(schedule)
    x, data, dtype = points(x, data)
    block = _checks.check_int(block, "block", low=1)
    t = _vp_times(t, x.shape[0], x.dtype)
    residual, sigma = _vp_posterior_residual(x, t, data, schedule, block)
    return (residual, sigma, dtype), (x, t)


def vp_noise(x, t, data, *, schedule: VPSchedule = _DEFAULT_SCHEDULE,
             block: int = 512) -> jax.Array:
    r"""The exact noise predictor :math:`\varepsilon^*(x, t) = -\sigma_t\nabla\log p_t(x)
    = \mathbb E[x - \alpha_t x_0\mid x_t = x]/\sigma_t`: the minimiser of
    :func:`diffusionlab.odes.vp.vp_loss` over the training set ``data``.

    Args, Returns, Raises: as :func:`vp_score`.
    """
    (residual, sigma, dtype), _ = _vp_inputs(x, t, data, schedule, block)
    return saturating_cast(residual / sigma[:, None], dtype)


def vp_velocity(x, t, data, *, schedule: VPSchedule = _DEFAULT_SCHEDULE,
                block: int = 512) -> jax.Array:
    r"""The VP probability-flow velocity of the exact noise predictor,

    .. math:: \frac{\mathrm dx}{\mathrm dt} = -\tfrac12\beta(t)\Big(x -
              \frac{\varepsilon^*(x, t)}{\sigma_t}\Big),

    the field :func:`diffusionlab.odes.vp.probability_flow` integrates with a network.

    Args, Returns, Raises: as :func:`vp_score`.
    """
    (residual, sigma, dtype), (x, t) = _vp_inputs(x, t, data, schedule, block)
    v = -0.5 * schedule.beta(t)[:, None] * (x - residual / (sigma ** 2)[:, None])
    return saturating_cast(v, dtype)


@dataclasses.dataclass(frozen=True)
class _ExactField:
    """``field(data, x, t)``: one method's exact velocity; equal (and hashed) by value, so
    jitted solvers compile once per method and shape."""

    method: str
    block: int = 512

    def __call__(self, data, x, t):
        if self.method == "gravity":
            return gravity.velocity(x, t, data, block=self.block)
        if self.method == "vp":
            return vp_velocity(x, t, data, block=self.block)
        return flows.marginal_velocity(x, t, data, log_prior=flows.standard_normal_log_density)


def exact_velocity(method: str, data, *, block: int = 512) -> jax.tree_util.Partial:
    r"""The exact marginal velocity ``v(x, t)`` of ``method`` for the training set ``data``
    ``(N, d)``, as a pytree whose leaf is ``data`` (a new training set of the same shape does
    not recompile a jitted solver).

    Args:
      method: one of ``EXACT_METHODS``: ``"gravity"`` (in the height :math:`t`, as
        :class:`diffusionlab.odes.learned.GravityAlgorithm`), ``"vp"`` (VP time, the
        default schedule) or ``"cfm"`` (straight paths, prior :math:`\mathcal N(0, I)`).
      data: ``(N, d)`` finite floats, ``N ≥ 1``.
      block: training points per block (≥ 1).

    Raises:
      TypeError, ValueError: an unknown ``method`` (``"reflow"`` has no exact field), bad
        ``data`` or ``block``.
    """
    _checks.check_choice(method, "method", EXACT_METHODS)
    block = _checks.check_int(block, "block", low=1)
    data = _checks.float_array(data, "data", ndim=2)
    if data.shape[0] < 1 or data.shape[1] < 1:
        raise ValueError(f"data must have shape (N, d) with N, d ≥ 1; got {data.shape}")
    return jax.tree_util.Partial(_ExactField(method, block), data)


def sample_exact(model, data, num: int, *, key, solver: str = "tsit5",
                 steps: int | None = None, rtol: float = 1e-4, atol: float = 1e-4,
                 time: str | None = None, max_steps: int = 4096) -> Generated:
    r"""Samples ``model``'s method with the exact field of ``data`` in place of its network.

    Everything else is the model's, as in :func:`diffusionlab.odes.learned.sample`: the
    prior (its height ``T`` and centre; the same ``key`` gives the same prior draws), the
    end time, the integration variable and the solver options. The samples reproduce the
    empirical distribution of ``data`` (memorisation) up to the solver's error.

    Args:
      model: a :class:`diffusionlab.odes.learned.LearnedModel` of a method in
        ``EXACT_METHODS``.
      data: ``(N, d)`` the training set (``d == model.dim``).
      num: the number of samples (≥ 1).
      key, solver, steps, rtol, atol, time: as :func:`diffusionlab.odes.learned.sample`.
      max_steps: the adaptive solver's step budget.

    Returns:
      :class:`~diffusionlab.odes.generate.Generated`.

    Raises:
      TypeError, ValueError: naming the bad argument (a reflow model has no exact field).
    """
    if not isinstance(model, learned.LearnedModel):
        raise TypeError(f"model must be a LearnedModel; got {type(model).__name__}")
    velocity = exact_velocity(model.method, data)
    if velocity.args[0].shape[1] != model.dim:
        raise ValueError(f"data must have d = {model.dim} (the model's dimension); got "
                         f"{velocity.args[0].shape[1]}")
    if time is not None:
        _checks.check_choice(time, "time", TIMES)
    x_T = model.sample_prior(num, key=key)
    return generate(velocity, x_T, model.T, t_end=model.t_end, solver=solver, steps=steps,
                    rtol=rtol, atol=atol, time=time or model.time, max_steps=max_steps)


__all__ = ["EXACT_METHODS", "exact_velocity", "sample_exact", "vp_noise", "vp_score",
           "vp_velocity"]
