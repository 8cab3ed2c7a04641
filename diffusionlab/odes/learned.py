r"""Learned velocity fields with one network budget: gravity, VP, flow matching, reflow.

Every method trains the same time-conditioned MLP (:class:`diffusionlab.nn.MLP`) on
flattened data with :func:`diffusionlab.train.fit`, and differs only in its target, its
time variable and its prior:

* gravity: the net is a denoiser :math:`D_\theta\approx\mathbb E[x_0\mid x_t]`, loss
  :math:`\|D_\theta - x_0\|^2 = t^2\|v_\theta - z\|^2`, velocity
  :math:`v_\theta = (x - D_\theta)/t`; heights :math:`\log t` uniform on
  :math:`[\log t_\min, \log T]`, integrated in :math:`\log t`; the gravity prior at ``T``,
  centred at the training data's mean (``Budget.gravity_prior_centre``).
* vp: noise prediction :math:`\varepsilon_\theta`, :math:`t\in[10^{-3}, 1]`, prior
  :math:`\mathcal N(0, I)` at :math:`t = 1`.
* cfm: the velocity :math:`v_\theta` of straight paths, :math:`t\in[0, 1]`, prior
  :math:`\mathcal N(0, I)`.
* reflow: cfm fine-tuned once on its own couplings (noise, ODE image).

Each method is a small final :class:`Algorithm` (``ALGORITHMS[method]``); :func:`fit` takes
its name.

The gravity loss is the unbiased conditional target of :func:`diffusionlab.odes.gravity.
conditional_loss` weighted by :math:`t^2` (the same minimiser, and bounded: :math:`z` is
Cauchy, with no variance, but :math:`x_0` is bounded). ``Budget(gravity_target="batch")``
trains on PFGM's normalised field of the training batch instead (:func:`gravity_batch_loss`),
biased at finite batch size (Su, https://kexue.fm/archives/9305). The input is scaled by
:math:`1/\sqrt{1+t^2}` so that the network sees order-one inputs at every height.

The gravity prior. The exact law at the top, :math:`p_T = \mathbb E_{x_0}\,p_T(\cdot\mid x_0)`,
is the field of the data seen from far away: that of a point mass at the data's centre of
mass (Su's far-field argument). Centred there, :math:`p_T(\cdot\mid\bar x)` matches it up to
the data's quadrupole, :math:`O(s^2/T^2)` for a spread :math:`s`; centred at the origin it
is off by the dipole :math:`O(\|\bar x\|/T)` as well. So by default :func:`fit` stores the
training data's mean with a gravity model and draws the prior around it
(``Budget(gravity_prior_centre="origin")`` keeps the origin).

References: 苏剑林, https://kexue.fm/archives/9305 (gravity), https://kexue.fm/archives/9379
(flow matching), https://kexue.fm/archives/9497 (rectified flow).
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any, ClassVar, final

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from diffusionlab import _checks, nn, train
from diffusionlab.odes import flows, gravity, vp
from diffusionlab.odes._checks import dimension, float_input, sample_count
from diffusionlab.odes.generate import TIMES, Generated, generate

METHODS = ("gravity", "vp", "cfm", "reflow")


PRIOR_CENTRES = ("mean", "origin")
GRAVITY_TARGETS = ("conditional", "batch")
"""The gravity regression targets (``Budget.gravity_target``): the unbiased conditional
target, or PFGM's normalised field of the training batch."""


@dataclasses.dataclass(frozen=True)
class Budget:
    r"""The network budget shared by every method (an MLP), the gravity heights, the
    gravity prior's centre and the gravity regression target.

    Attributes:
      hidden, depth, time_dim: the MLP's width, depth and time-embedding size (≥ 1).
      gravity_T: the gravity prior's height :math:`T` (> ``gravity_t_min``).
      gravity_t_min: the height where gravity sampling stops (> 0).
      gravity_prior_centre: ``"mean"`` (default: :func:`fit` centres the gravity prior at
        the training data's mean, the far field's centre of mass) or ``"origin"``.
      gravity_target: the gravity regression target, one of ``GRAVITY_TARGETS``:
        ``"conditional"`` (default: the unbiased conditional target, :func:`gravity_loss`) or
        ``"batch"`` (PFGM's normalised field of the training batch, biased at finite batch
        size, :func:`gravity_batch_loss`; the batch is ``TrainConfig.batch_size`` points).
      gravity_gamma: PFGM's :math:`\gamma \ge 0` in :math:`E/(\|E\| + \gamma)`, used by the
        ``"batch"`` target only.

    Raises:
      TypeError, ValueError: naming the bad field.
    """

    hidden: int = 128
    depth: int = 3
    time_dim: int = 64
    gravity_T: float = 40.0
    gravity_t_min: float = 1e-3
    gravity_prior_centre: str = "mean"
    gravity_target: str = "conditional"
    gravity_gamma: float = 1e-3

    def __post_init__(self):
        for name in ("hidden", "depth", "time_dim"):
            _checks.check_int(getattr(self, name), name, low=1)
        _checks.check_choice(self.gravity_prior_centre, "gravity_prior_centre",
                             PRIOR_CENTRES)
        _checks.check_choice(self.gravity_target, "gravity_target", GRAVITY_TARGETS)
        _checks.check_real(self.gravity_gamma, "gravity_gamma", low=0.0)
        t_min = _checks.check_real(self.gravity_t_min, "gravity_t_min", low=0.0, low_open=True)
        _checks.check_real(self.gravity_T, "gravity_T", low=float(t_min), low_open=True)


@dataclasses.dataclass(frozen=True)
class LearnedModel:
    """A trained model: ``apply(params, x, t_B)``, its (EMA) parameters, and how to sample.

    ``prior_centre`` is where the prior is centred, a tuple of ``dim`` floats (hashable, so
    that :meth:`log_prior` can be a static argument of a jitted likelihood), or ``None`` for
    the origin; :func:`fit` sets it to the training data's mean for gravity (see
    :class:`Budget`) and leaves it ``None`` for the other methods.
    """

    method: str
    apply: Callable = dataclasses.field(repr=False)
    params: Any = dataclasses.field(repr=False)
    budget: Budget
    dim: int
    history: dict = dataclasses.field(default_factory=dict, repr=False)
    prior_centre: tuple[float, ...] | None = None

    def __post_init__(self):
        if self.prior_centre is not None:
            centre = tuple(float(v) for v in self.prior_centre)
            if len(centre) != self.dim or not all(math.isfinite(v) for v in centre):
                raise ValueError(f"prior_centre must be None or {self.dim} finite floats; got "
                                 f"{len(centre)} values")
            object.__setattr__(self, "prior_centre", centre)

    @property
    def algorithm(self) -> Algorithm:
        """The :class:`Algorithm` named by ``method``."""
        return ALGORITHMS[self.method]

    @property
    def T(self) -> float:
        return self.algorithm.prior_time(self.budget)

    @property
    def t_end(self) -> float:
        return self.algorithm.end_time(self.budget)

    @property
    def time(self) -> str:
        return self.algorithm.time

    def velocity(self) -> jax.tree_util.Partial:
        """The ODE right-hand side ``v(x, t)`` as a pytree (params are its leaves).

        Its function is equal across models of one method, budget and architecture, so jitted
        solvers compile once for all of them.
        """
        return jax.tree_util.Partial(_Field(self.method, self.apply, self.budget), self.params)

    def sample_prior(self, num: int, *, key) -> jax.Array:
        """``num`` draws ``(num, dim)`` of the prior at ``T`` (around ``prior_centre``)."""
        return self.algorithm.sample_prior(num, self.dim, self.budget, key=key,
                                           centre=self.prior_centre)

    def log_prior(self) -> Callable:
        """The prior's log-density ``x_T -> (B,)``, a hashable function."""
        return self.algorithm.log_prior(self.budget, centre=self.prior_centre)


@dataclasses.dataclass(frozen=True)
class _Field:
    """``field(params, x, t)``: a method's velocity with its network; equal (and hashed) by value."""

    method: str
    apply: Callable
    budget: Budget

    def __call__(self, params, x, t):
        return ALGORITHMS[self.method].velocity(self.apply, self.budget, params, x, t)


@dataclasses.dataclass(frozen=True)
class GravityLogPrior:
    r"""The gravity prior's log-density at height ``T`` around ``centre`` (``None``: the
    origin), :math:`\log p_T(x - c\mid 0)`; ``(B, d) -> (B,)``. Hashable and equal by value,
    so that it can be a static argument of a jitted likelihood shared by equal models."""

    T: float
    centre: tuple[float, ...] | None = None

    def __call__(self, x):
        if self.centre is not None:
            x = x - jnp.asarray(self.centre, jnp.result_type(x, jnp.float32))[None, :]
        return gravity.prior_log_density(x, self.T)


def gravity_prior_centre(data, budget: Budget) -> tuple[float, ...] | None:
    r"""The gravity prior's centre for training data ``(N, d)``: the data's mean (computed in
    float64 on the host) when ``budget.gravity_prior_centre == "mean"``, else ``None``
    (the origin).

    Raises:
      TypeError, ValueError: a bad ``data`` or ``budget``.
    """
    _check_budget(budget)
    data, _ = float_input(data, "data", ndim=2, allow_empty=False)
    if budget.gravity_prior_centre == "origin":
        return None
    return tuple(float(v) for v in np.mean(np.asarray(data, np.float64), axis=0))


def _time_feature(t_B, budget: Budget):
    # log t mapped onto [0, 1]: the gravity heights span decades.
    lo, hi = math.log(budget.gravity_t_min), math.log(budget.gravity_T)
    return (jnp.log(t_B) - lo) / (hi - lo)


def gravity_denoiser(apply, budget: Budget, params, x, t_B):
    r""":math:`D_\theta(x, t)`, the network's estimate of :math:`\mathbb E[x_0\mid x_t = x]`."""
    scale = jax.lax.rsqrt(1.0 + t_B * t_B)[:, None]
    return apply(params, x * scale, _time_feature(t_B, budget))


def _gravity_velocity(apply, budget, params, x, t):
    t_B = jnp.broadcast_to(jnp.asarray(t, x.dtype), x.shape[:1])
    return (x - gravity_denoiser(apply, budget, params, x, t_B)) / t_B[:, None]


def _vp_velocity(apply, budget, params, x, t):
    return vp.probability_flow(functools.partial(apply, params))(x, t)


def _direct_velocity(apply, budget, params, x, t):
    return apply(params, x, jnp.broadcast_to(jnp.asarray(t, x.dtype), x.shape[:1]))




def _gravity_draws(budget: Budget, x0, key):
    r"""The training heights ``(B,)``, :math:`\log t` uniform on :math:`[\log t_\min, \log T]`,
    and points :math:`x_t\sim p_t(\cdot\mid x_0)` ``(B, d)``: both targets draw these alike."""
    key_t, key_x = jax.random.split(key)
    log_t = jax.random.uniform(key_t, x0.shape[:1], x0.dtype, math.log(budget.gravity_t_min),
                               math.log(budget.gravity_T))
    t = jnp.exp(log_t)
    return gravity.conditional_sample(x0, t, key=key_x), t


def gravity_loss(apply, budget: Budget, params, x0, key) -> jax.Array:
    r"""Per-example :math:`\|D_\theta(x_t, t) - x_0\|^2` with :math:`\log t\sim U[\log t_\min,
    \log T]` and :math:`x_t\sim p_t(\cdot\mid x_0)` (exact Cauchy draw): the unbiased
    conditional target, ``budget.gravity_target == "conditional"``."""
    x_t, t = _gravity_draws(budget, x0, key)
    return jnp.sum((gravity_denoiser(apply, budget, params, x_t, t) - x0) ** 2, axis=1)


def gravity_normalised_field(apply, budget: Budget, params, x, t_B) -> jax.Array:
    r"""The network's normalised field :math:`s_\theta = -\sqrt{d+1}\,(x - D_\theta,\ t)\,/
    \|(x - D_\theta,\ t)\|`, ``(B, d+1)`` with the ``t`` component last: the direction of
    the velocity :math:`(v_\theta, 1)` reversed, scaled as PFGM's target.

    Args:
      apply, params: the network; budget: its :class:`Budget`.
      x: ``(B, d)``; t_B: ``(B,)``, > 0.
    """
    e = -jnp.concatenate([x - gravity_denoiser(apply, budget, params, x, t_B), t_B[:, None]],
                         axis=1)
    return math.sqrt(x.shape[1] + 1) * e / jnp.linalg.norm(e, axis=1, keepdims=True)


def gravity_batch_loss(apply, budget: Budget, params, x0, key) -> jax.Array:
    r"""Per-example PFGM loss :math:`\|s_\theta(x_t, t) - \hat s_B(x_t, t)\|^2` on PFGM's
    normalised batch target (``budget.gravity_target == "batch"``).

    The heights and points are drawn as in :func:`gravity_loss` (same key, same draws); the
    target is :math:`\hat s_B = \sqrt{d+1}\,E_B/(\|E_B\| + \gamma)`, with :math:`E_B` the
    empirical field of the ``B`` training points ``x0`` of the batch (each point's own source
    among them), :func:`diffusionlab.odes.gravity.pfgm_target` with
    ``gamma = budget.gravity_gamma``, as :func:`diffusionlab.odes.batch_target.batch_target_bias`
    computes it. The network enters through its normalised field
    :func:`gravity_normalised_field`, of norm :math:`\sqrt{d+1}`: the loss's minimiser over
    that direction at :math:`(x, t)` is the direction of :math:`\mathbb E_B[\hat s_B]`, the
    velocity ``mean_x / mean_t`` of :class:`~diffusionlab.odes.batch_target.BatchTargetBias`,
    biased at finite ``B`` (Su, https://kexue.fm/archives/9305; PFGM, arXiv:2209.11178 §3.3).

    Args:
      apply, params: the network; budget: its :class:`Budget`.
      x0: ``(B, d)`` the training batch; key: the batch's PRNG key.

    Returns:
      ``(B,)`` per-example losses, each in :math:`[0, 4(d+1)]`. Cost :math:`O(B^2 d)`.
    """
    x_t, t = _gravity_draws(budget, x0, key)
    target = gravity._pfgm_target(x_t, t, x0, jnp.asarray(budget.gravity_gamma, x_t.dtype))
    field = gravity_normalised_field(apply, budget, params, x_t, t)
    return jnp.sum((field - jax.lax.stop_gradient(target)) ** 2, axis=1)


class Algorithm(abc.ABC):
    """What one training method fixes: its velocity from the network, its loss, its time
    variable and interval, and its prior. The network and its budget are shared.

    Attributes:
      name: the ``method`` string of :func:`fit`.
      time: the integration variable, ``"linear"`` or ``"log"``.
      data_ndim: the rank of the training data: 2 for points ``(N, d)``, 3 for pairs.
    """

    name: ClassVar[str]
    time: ClassVar[str]
    data_ndim: ClassVar[int]

    @abc.abstractmethod
    def prior_time(self, budget: Budget) -> float:
        """The time ``T`` of the prior."""

    @abc.abstractmethod
    def end_time(self, budget: Budget) -> float:
        """The time ``t_end`` at which sampling stops."""

    @abc.abstractmethod
    def velocity(self, apply, budget: Budget, params, x, t) -> jax.Array:
        """The ODE velocity ``v(x, t)`` of the network ``apply(params, x, t_B)``."""

    @abc.abstractmethod
    def loss(self, apply, budget: Budget) -> Callable:
        """The per-example loss ``loss(params, batch, key) -> (B,)`` for :func:`train.fit`."""

    @abc.abstractmethod
    def sample_prior(self, num: int, dim: int, budget: Budget, *, key,
                     centre: tuple[float, ...] | None = None) -> jax.Array:
        """``num`` draws ``(num, dim)`` of the prior at ``T``, around ``centre`` (``None``:
        the origin) where the method's prior has a centre."""

    @abc.abstractmethod
    def log_prior(self, budget: Budget, *,
                  centre: tuple[float, ...] | None = None) -> Callable:
        """The prior's log-density ``x_T -> (B,)`` (a hashable function)."""


@final
class GravityAlgorithm(Algorithm):
    r"""The gravity denoiser: :math:`v_\theta = (x - D_\theta)/t`, :math:`\log t` uniform on
    :math:`[\log t_\min, \log T]`, integrated in :math:`\log t`; the gravity prior at ``T``."""

    name = "gravity"
    time = "log"
    data_ndim = 2

    def prior_time(self, budget):
        return budget.gravity_T

    def end_time(self, budget):
        return budget.gravity_t_min

    def velocity(self, apply, budget, params, x, t):
        return _gravity_velocity(apply, budget, params, x, t)

    def loss(self, apply, budget):
        if budget.gravity_target == "batch":
            return functools.partial(gravity_batch_loss, apply, budget)
        return functools.partial(gravity_loss, apply, budget)

    def sample_prior(self, num, dim, budget, *, key, centre=None):
        x = gravity.sample_prior(num, dim, budget.gravity_T, key=key)
        if centre is None:
            return x
        return x + jnp.asarray(centre, x.dtype)[None, :]

    def log_prior(self, budget, *, centre=None):
        return GravityLogPrior(budget.gravity_T, centre)


class _NormalPriorAlgorithm(Algorithm):
    r"""Abstract: a method on :math:`t\in[t_{\rm end}, 1]`, integrated in :math:`t`, with the
    prior :math:`\mathcal N(0, I)` at :math:`t = 1` (the data are standardised; ``centre``
    must be ``None``)."""

    time = "linear"

    def prior_time(self, budget):
        return 1.0

    def sample_prior(self, num, dim, budget, *, key, centre=None):
        _no_centre(self.name, centre)
        _checks.check_key(key)
        return jax.random.normal(key, (sample_count(num, dim, jnp.float32), dim))

    def log_prior(self, budget, *, centre=None):
        _no_centre(self.name, centre)
        return flows.standard_normal_log_density


def _no_centre(name, centre):
    if centre is not None:
        raise ValueError(f"centre must be None for method {name!r} (its prior is N(0, I)); "
                         f"got {len(centre)} values")


@final
class VPAlgorithm(_NormalPriorAlgorithm):
    r"""VP noise prediction :math:`\varepsilon_\theta`, :math:`t\in[10^{-3}, 1]`."""

    name = "vp"
    data_ndim = 2

    def end_time(self, budget):
        return 1e-3

    def velocity(self, apply, budget, params, x, t):
        return _vp_velocity(apply, budget, params, x, t)

    def loss(self, apply, budget):
        return lambda params, x0, key: vp.vp_loss(functools.partial(apply, params), x0, key=key)


class _StraightPathAlgorithm(_NormalPriorAlgorithm):
    r"""Abstract: the network is the velocity :math:`v_\theta` of straight paths from data at
    :math:`t = 0` to noise at :math:`t = 1`."""

    def end_time(self, budget):
        return 0.0

    def velocity(self, apply, budget, params, x, t):
        return _direct_velocity(apply, budget, params, x, t)


@final
class FlowMatchingAlgorithm(_StraightPathAlgorithm):
    """Conditional flow matching on data points."""

    name = "cfm"
    data_ndim = 2

    def loss(self, apply, budget):
        return lambda params, x0, key: flows.cfm_loss(functools.partial(apply, params), x0,
                                                      key=key)


@final
class ReflowAlgorithm(_StraightPathAlgorithm):
    r"""Rectified flow: flow matching fine-tuned on its own couplings (noise, ODE image);
    each training example is a pair :math:`(\hat x_0, x_1)` stacked on the last axis."""

    name = "reflow"
    data_ndim = 3

    def loss(self, apply, budget):
        return lambda params, pair, key: flows.rectified_loss(
            functools.partial(apply, params), pair[..., 0], pair[..., 1], key=key)


ALGORITHMS: dict[str, Algorithm] = {a.name: a for a in (
    GravityAlgorithm(), VPAlgorithm(), FlowMatchingAlgorithm(), ReflowAlgorithm())}
"""One instance per method name; ``tuple(ALGORITHMS) == METHODS``."""


def _loss(method, apply, budget):
    return ALGORITHMS[method].loss(apply, budget)


def _check_budget(budget):
    if not isinstance(budget, Budget):
        raise TypeError(f"budget must be a learned.Budget; got {type(budget).__name__}")


def _check_model(model):
    if not isinstance(model, LearnedModel):
        raise TypeError(f"model must be a LearnedModel (from learned.fit); got "
                        f"{type(model).__name__}")


def init_network(dim: int, budget: Budget, *, key):
    """The shared MLP ``(apply, params)`` for data of dimension ``dim``.

    Raises:
      TypeError, ValueError: ``dim`` not an integer ≥ 1, ``budget`` not a :class:`Budget`,
        a bad ``key``.
    """
    dim = dimension(dim)
    _check_budget(budget)
    _checks.check_key(key)
    module = nn.MLP(dim, dim, hidden=budget.hidden, depth=budget.depth,
                    time_dim=budget.time_dim, rngs=nnx.Rngs(params=key))
    return nn.pure(module)


def fit(method: str, data, *, budget: Budget, config: train.TrainConfig, key,
        init: LearnedModel | None = None, progress: bool = False) -> LearnedModel:
    """Trains one method on ``data`` ``(N, d)`` (or, for ``reflow``, on pairs ``(N, d, 2)``).

    Args:
      method: one of ``METHODS``.
      data: training data.
      budget: the shared network budget.
      config: the training configuration (identical across methods for a fair comparison).
      key: the run's PRNG key: split into the key of the initial parameters and the key of
        the training run (data order and noise, see :func:`diffusionlab.train.fit`).
      init: start from this model's parameters (reflow fine-tunes cfm).
      progress: show the progress bar.

    Returns:
      A :class:`LearnedModel` holding the EMA parameters (and, for gravity, the prior's
      centre: the data's mean unless ``budget.gravity_prior_centre == "origin"``).

    Raises:
      TypeError, ValueError: naming the bad argument (``data`` must be finite floats of
        shape ``(N, d)``, or ``(N, d, 2)`` for reflow, with ``N ≥ 1``; half precision is
        trained in float32).
    """
    _checks.check_choice(method, "method", METHODS)
    data, _ = float_input(data, "data", ndim=ALGORITHMS[method].data_ndim,
                          allow_empty=False)
    if method == "reflow" and data.shape[2] != 2:
        raise ValueError(f"data must have shape (N, d, 2) (pairs) for reflow; got {data.shape}")
    _check_budget(budget)
    if not isinstance(config, train.TrainConfig):
        raise TypeError(f"config must be a train.TrainConfig; got {type(config).__name__}")
    _checks.check_key(key)
    if init is not None:
        _check_model(init)
    dim = data.shape[1]
    init_key, train_key = jax.random.split(key)
    apply, params = init_network(dim, budget, key=init_key)
    if init is not None:
        params = init.params
    result = train.fit(_loss(method, apply, budget), params, data, config=config,
                       key=train_key, progress=progress)
    ema_params = debiased_ema(result.ema_params, params, decay=config.ema_decay,
                              steps=len(result.history["step"]))
    centre = gravity_prior_centre(data, budget) if method == "gravity" else None
    return LearnedModel(method, apply, ema_params, budget, dim, result.history,
                        prior_centre=centre)


def debiased_ema(ema_params, init_params, *, decay: float, steps: int):
    r"""The parameter EMA without its starting point.

    :func:`diffusionlab.train.fit` starts the EMA at the initial parameters
    :math:`\theta_0`, which keep the weight :math:`d^n` after :math:`n` steps (13.5% at
    :math:`d = 0.999`, :math:`n = 2000`). This returns
    :math:`(\bar\theta_n - d^n\theta_0)/(1 - d^n)`, the EMA-weighted mean of the trained
    iterates alone (its weights sum to one), as Adam corrects its moments' bias.

    Why it matters here: the initial network's output layer is zero, so the raw EMA is a
    network whose output is shrunk by about :math:`1-d^n`. Gravity integrates
    :math:`dx/d\log t = x - D` over decades of :math:`\log t`, so a shrunk denoiser
    :math:`D` compounds into a pull towards the origin; VP's :math:`\varepsilon/\sigma` no
    longer cancels its drift and the samples spread out; flow matching only slows its
    velocity. On 8gaussians (2000 steps) sliced W2 went from 0.444 (gravity) and 0.444 (VP)
    against 0.144 (flow matching) to 0.131 and 0.138 with this correction.

    Args:
      ema_params, init_params: pytrees of the same structure.
      decay: the EMA decay :math:`d` in ``[0, 1)``.
      steps: the number of updates :math:`n \ge 0` since ``init_params`` (0: returned as is).
    """
    _checks.check_real(decay, "decay", low=0, high=1, high_open=True)
    steps = _checks.check_int(steps, "steps", low=0)
    weight = float(decay) ** steps
    if steps == 0 or weight == 0.0:
        return ema_params
    return jax.tree.map(lambda e, p0: (e - weight * p0) / (1.0 - weight), ema_params,
                        init_params)


def fit_reflow(model: LearnedModel, num_pairs: int, *, config: train.TrainConfig, key,
               progress: bool = False) -> LearnedModel:
    r"""One reflow: couple fresh noise :math:`x_1` with its image :math:`\hat x_0` under
    ``model`` (adaptive solve), then fine-tune ``model`` on the straight paths between them."""
    noise_key, fit_key = jax.random.split(key)
    noise = jax.random.normal(noise_key, (int(num_pairs), model.dim))
    x0_hat, x1 = flows.reflow_pairs(model.velocity(), noise)
    pairs = jnp.stack([x0_hat, x1], axis=-1)
    return fit("reflow", pairs, budget=model.budget, config=config, key=fit_key, init=model,
               progress=progress)


def sample(model: LearnedModel, num: int, *, key, solver: str = "tsit5",
           steps: int | None = None, rtol: float = 1e-4, atol: float = 1e-4,
           time: str | None = None) -> Generated:
    r"""Draws ``num`` samples: prior at ``T``, then the model's ODE down to ``t_end``.

    ``time`` overrides the model's integration variable (``"linear"`` or ``"log"``). For the
    gravity denoiser an Euler step in :math:`t` is a convex combination of :math:`x` and
    :math:`D_\theta` (stable for any step), while an Euler step of size :math:`\Delta s` in
    :math:`s = \log t` multiplies :math:`x - D_\theta` by :math:`1 + \Delta s`, which
    overshoots once :math:`\Delta s < -2`.

    Raises:
      TypeError, ValueError: naming the bad argument (``num ≥ 1`` and fitting in memory,
        the solver options as :func:`diffusionlab.odes.generate`).
    """
    _check_model(model)
    if time is not None:
        _checks.check_choice(time, "time", TIMES)
    x_T = model.sample_prior(num, key=key)
    return generate(model.velocity(), x_T, model.T, t_end=model.t_end, solver=solver,
                    steps=steps, rtol=rtol, atol=atol, time=time or model.time)
