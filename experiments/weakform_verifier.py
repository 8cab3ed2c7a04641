"""The test-function verifier on correct and deliberately wrong (drift, g, p_t) triples.

Each case hands the weak-form verifier a drift, a diffusion and a density path (exact samples
or an analytic density). Correct cases must pass; the wrong ones (a dropped ½, a wrong sign,
an Itô/Stratonovich confusion, a drift off by 10%) must be rejected. Rates are measured over
seeds at the stated sample size.

Reference: 苏剑林, 《测试函数法推导连续性方程和Fokker-Planck方程》, https://kexue.fm/archives/9461
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from diffusionlab import odes, stats, udm
from diffusionlab import scorematching as sm
from diffusionlab import weakform as wf

TITLE = "Weak-form (test-function) verifier: correct SDE/ODE pairs pass, wrong ones fail"
SOURCE = "《测试函数法推导连续性方程和Fokker-Planck方程》 https://kexue.fm/archives/9461"

DATA = sm.GaussianMixture.ring(8, radius=2.0, std=0.3)
BETA_MIN, BETA_MAX = 0.1, 20.0  # linear VP schedule on t ∈ [0, 1]
SIGMA_MIN, SIGMA_MAX = 0.05, 5.0  # geometric VE schedule on t ∈ [0, 1]
OU_THETA, OU_G, OU_M0, OU_S0 = 1.0, 0.8, 1.5, 0.3
GBM_MU, GBM_SIGMA = 0.3, 0.5


@dataclasses.dataclass(frozen=True)
class Config:
    num_samples: int = 100_000
    num_times: int = 20
    num_seeds: int = 3  # replicates for the claims (per-seed pass and rejection rates)
    cases: tuple[str, ...] = ()  # empty: every case
    min_rate: float = 0.8  # the claims: per-seed pass (rejection) rate above this
    figure_cases: tuple[str, str] = ("vp_sde", "vp_sde_drift_10pct")

    @classmethod
    def quick(cls) -> Config:
        return cls(num_samples=20_000, num_times=3, num_seeds=1,
                   cases=("vp_sde", "vp_sde_drift_10pct"))


@dataclasses.dataclass(frozen=True)
class Case:
    """One verification: what is checked, against which path, and whether it should pass."""

    name: str
    description: str
    correct: bool
    drift: Callable
    g: object
    path: str  # "sampler" or "log_density"
    make_path: Callable  # num_samples -> sampler(t, key) or log_density(x, t)
    t_range: tuple[float, float]
    dim: int = 2
    log_density: Callable | None = None  # for the strong-form residual
    test_functions: Callable | None = None  # None: the verifier's default family

    def verify(self, num_samples: int, times, key) -> wf.WeakFormReport:
        path = self.make_path(num_samples)
        kwargs = ({"sampler": path, "time_derivative": "autodiff"} if self.path == "sampler"
                  else {"log_density": path, "dim": self.dim})
        return wf.verify_fokker_planck(self.drift, self.g, times=times, key=key,
                                       num_samples=num_samples,
                                       test_functions=self.test_functions, **kwargs)


# --- the processes -------------------------------------------------------------------------

def vp_alpha_sigma(t):
    log_alpha = -0.25 * t**2 * (BETA_MAX - BETA_MIN) - 0.5 * t * BETA_MIN
    return jnp.exp(log_alpha), jnp.sqrt(-jnp.expm1(2 * log_alpha))


def vp_beta(t):
    return BETA_MIN + t * (BETA_MAX - BETA_MIN)


def ve_sigma(t):
    return SIGMA_MIN * (SIGMA_MAX / SIGMA_MIN) ** t


def mixture_sampler(alpha_sigma: Callable, num: int) -> Callable:
    """x_t = α_t x_0 + σ_t ε with fixed (x_0, ε) per key: smooth in t, so autodiff in t works."""

    def sampler(t, key):
        k0, k1 = jax.random.split(key)
        a, s = alpha_sigma(t)
        return a * DATA.sample(num, key=k0) + s * jax.random.normal(k1, (num, 2))

    return sampler


def mixture_log_density(alpha_sigma: Callable) -> Callable:
    def log_density(x, t):
        a, s = alpha_sigma(t)
        return DATA.perturb(alpha=a, sigma=s).log_prob(x)

    return log_density


def mixture_score(alpha_sigma: Callable, x, t):
    a, s = alpha_sigma(t)
    return DATA.perturb(alpha=a, sigma=s).score(x)


def ve_alpha_sigma(t):
    return jnp.ones_like(t), ve_sigma(t)


def vp_drift(x, t):
    return -0.5 * vp_beta(t) * x


def vp_g(t):
    return jnp.sqrt(vp_beta(t))


def vp_flow(x, t):
    return vp_drift(x, t) - 0.5 * vp_beta(t) * mixture_score(vp_alpha_sigma, x, t)


def vp_flow_wrong_sign(x, t):
    return vp_drift(x, t) + 0.5 * vp_beta(t) * mixture_score(vp_alpha_sigma, x, t)


def ve_drift(x, t):
    return jnp.zeros_like(x)


def ve_g(t):  # g² = dσ²/dt
    return ve_sigma(t) * jnp.sqrt(2 * jnp.log(SIGMA_MAX / SIGMA_MIN))


def ve_flow(x, t):
    return -0.5 * ve_g(t) ** 2 * mixture_score(ve_alpha_sigma, x, t)


def ou_moments(t):
    decay = jnp.exp(-OU_THETA * t)
    return OU_M0 * decay, OU_S0**2 * decay**2 + OU_G**2 * (1 - decay**2) / (2 * OU_THETA)


def ou_log_density(x, t):
    mean, var = ou_moments(t)
    return -0.5 * jnp.sum((x - mean) ** 2) / var - jnp.log(2 * jnp.pi * var)


def ou_drift(x, t):
    return -OU_THETA * x


def gbm_sampler(num: int, *, stratonovich: bool) -> Callable:
    """Exact solution from x_0 = 1 of dx = μx dt + σx dW, read as Itô or as Stratonovich."""
    shift = 0.0 if stratonovich else -0.5 * GBM_SIGMA**2

    def sampler(t, key):
        return jnp.exp((GBM_MU + shift) * t + GBM_SIGMA * jnp.sqrt(t)
                       * jax.random.normal(key, (num, 1)))

    return sampler


def gbm_log_density(x, t):
    mean, var = (GBM_MU - 0.5 * GBM_SIGMA**2) * t, GBM_SIGMA**2 * t
    return (-0.5 * (jnp.log(x[0]) - mean) ** 2 / var - 0.5 * jnp.log(2 * jnp.pi * var)
            - jnp.log(x[0]))


GBM_NOISE = wf.DiffusionMatrix(lambda x, t: GBM_SIGMA * x[:, None])


def gbm_drift(x, t):
    return GBM_MU * x


# --- cases built on the ODE generators and on the unified diffusion model ------------------

ATOMS = 0.6 * DATA.means  # a small empirical data set for the point-mass fields


def atoms_sampler(conditional_sample: Callable, num: int) -> Callable:
    """x_t ~ p_t(·|x_0) with x_0 uniform over the atoms; reparameterised, so smooth in t."""

    def sampler(t, key):
        k0, k1 = jax.random.split(key)
        x0 = ATOMS[jax.random.randint(k0, (num,), 0, ATOMS.shape[0])]
        return conditional_sample(x0, t, key=k1)

    return sampler


def gravity_velocity(x, t):
    """The empirical gravity field dx/dt = F_x/F_t (posterior mean of (x_t − x_0)/t)."""
    return odes.gravity.velocity(x[None], t, ATOMS)[0]


def gravity_wrong_velocity(x, t):
    return 0.9 * gravity_velocity(x, t)


# Gravity's conditional is multivariate Cauchy: only bounded test functions with bounded,
# decaying gradients keep the weak form's expectations finite, so Gaussian bumps only.
GRAVITY_TEST_FUNCTIONS = wf.TestFunctions(
    centers=jnp.concatenate([ATOMS, jnp.zeros((1, 2)), 2.0 * ATOMS[::3]]),
    widths=jnp.full((ATOMS.shape[0] + 1 + 3,), 0.8),
    frequencies=jnp.zeros((0, 2)), phases=jnp.zeros((0,)))


def cdf_velocity(path) -> Callable:
    def velocity(x, t):
        return odes.isotropic.marginal_velocity(path, x[None], t, ATOMS)[0]

    return velocity


def cdf_sampler(path) -> Callable:
    def make(num):
        return atoms_sampler(lambda x0, t, key: odes.isotropic.conditional_sample(path, x0, t,
                                                                                  key=key), num)

    return make


HOT = udm.HotDiffusion(T=100, schedule="cosine")
_HOT_TAU = jnp.arange(HOT.T + 1, dtype=jnp.float32) / HOT.T
_HOT_ALPHA = jnp.asarray(HOT.coefficients.alpha_bar, jnp.float32)
_HOT_BETA = jnp.asarray(HOT.coefficients.beta_bar, jnp.float32)


def hot_alpha_sigma(tau):
    """UDM hot-diffusion ᾱ, β̄ at continuous τ = t/T (linear between the T + 1 steps)."""
    return jnp.interp(tau, _HOT_TAU, _HOT_ALPHA), jnp.interp(tau, _HOT_TAU, _HOT_BETA)


def hot_drift(x, tau):
    """Any path x = a x₀ + b ε is generated by dx = (a'/a) x dt + g dw, g² = (b²)' − 2(a'/a)b²."""
    rate = jax.grad(lambda s: jnp.log(hot_alpha_sigma(s)[0]))(tau)
    return rate * x


def hot_g(tau):
    rate = jax.grad(lambda s: jnp.log(hot_alpha_sigma(s)[0]))(tau)
    b2 = lambda s: hot_alpha_sigma(s)[1] ** 2  # noqa: E731
    return jnp.sqrt(jax.grad(b2)(tau) - 2 * rate * b2(tau))


def cases() -> list[Case]:
    vp = path_maker(mixture_sampler, vp_alpha_sigma)
    ve = path_maker(mixture_sampler, ve_alpha_sigma)
    vp_logp, ve_logp = mixture_log_density(vp_alpha_sigma), mixture_log_density(ve_alpha_sigma)
    vp_t, ve_t = (0.05, 1.0), (0.05, 1.0)
    return [
        Case("ou", "OU dx=-θx dt+g dw, analytic Gaussian p_t (importance-sampled)", True,
             ou_drift, OU_G, "log_density", lambda n: ou_log_density, (0.1, 2.0),
             log_density=ou_log_density),
        Case("vp_sde", "VP SDE, 8-Gaussian data, exact marginals", True, vp_drift, vp_g,
             "sampler", vp, vp_t, log_density=vp_logp),
        Case("vp_pf_ode", "VP probability-flow ODE (exact mixture score)", True, vp_flow, None,
             "sampler", vp, vp_t, log_density=vp_logp),
        Case("ve_sde", "VE SDE, 8-Gaussian data, exact marginals", True, ve_drift, ve_g,
             "sampler", ve, ve_t, log_density=ve_logp),
        Case("ve_pf_ode", "VE probability-flow ODE (exact mixture score)", True, ve_flow, None,
             "sampler", ve, ve_t, log_density=ve_logp),
        Case("gbm_ito", "geometric BM, state-dependent noise, Itô", True, gbm_drift, GBM_NOISE,
             "sampler", lambda n: gbm_sampler(n, stratonovich=False), (0.1, 1.0), dim=1,
             log_density=gbm_log_density),
        Case("gravity", "gravity ODE (Poisson field) of 8 atoms, exact conditional paths",
             True, gravity_velocity, None, "sampler",
             lambda n: atoms_sampler(odes.gravity.conditional_sample, n), (0.2, 1.5),
             test_functions=GRAVITY_TEST_FUNCTIONS),
        *[Case(f"cdf_{type(path).__name__}", f"isotropic CDF-family field, {type(path).__name__}",
               True, cdf_velocity(path), None, "sampler", cdf_sampler(path), (0.2, 1.5))
          for path in odes.CDF_FAMILY],
        Case("hot_diffusion", "UDM hot diffusion (cosine ᾱ, β̄ at τ = t/T) as a VP-type SDE",
             True, hot_drift, hot_g, "sampler", path_maker(mixture_sampler, hot_alpha_sigma),
             (0.055, 0.895), log_density=mixture_log_density(hot_alpha_sigma)),
        Case("vp_sde_dropped_half", "VP SDE checked with g²Δφ (the ½ dropped)", False, vp_drift,
             lambda t: jnp.sqrt(2.0) * vp_g(t), "sampler", vp, vp_t, log_density=vp_logp),
        Case("vp_pf_ode_wrong_sign", "VP PF-ODE with +½g²∇log p (sign flipped)", False,
             vp_flow_wrong_sign, None, "sampler", vp, vp_t, log_density=vp_logp),
        Case("gbm_ito_stratonovich", "Stratonovich GBM samples checked with the Itô drift μx",
             False, gbm_drift, GBM_NOISE, "sampler",
             lambda n: gbm_sampler(n, stratonovich=True), (0.1, 1.0), dim=1),
        Case("gravity_velocity_10pct", "gravity ODE with its velocity 10% too small", False,
             gravity_wrong_velocity, None, "sampler",
             lambda n: atoms_sampler(odes.gravity.conditional_sample, n), (0.2, 1.5),
             test_functions=GRAVITY_TEST_FUNCTIONS),
        Case("vp_sde_drift_10pct", "VP SDE checked with a drift 10% too large", False,
             lambda x, t: 1.1 * vp_drift(x, t), vp_g, "sampler", vp, vp_t, log_density=vp_logp),
    ]


def path_maker(maker: Callable, alpha_sigma: Callable) -> Callable:
    def make(num):
        return maker(alpha_sigma, num)

    return make


# --- the run -------------------------------------------------------------------------------

def strong_residual(case: Case, times) -> float | None:
    """Largest pointwise |r/p| of the analytic density on a grid of points (None if none)."""
    if case.log_density is None:
        return None
    key = jax.random.key(123)
    if case.dim == 1:
        points = jnp.exp(0.5 * jax.random.normal(key, (64, 1)))
    else:
        points = 2.5 * jax.random.normal(key, (64, case.dim))
    residual = wf.strong_form_residuals(case.drift, case.g, case.log_density, points=points,
                                        times=jnp.asarray(times, jnp.float32))
    return float(jnp.max(jnp.abs(residual)))


def plot_sides(ax, report: wf.WeakFormReport, title: str, *, num_functions: int = 3):
    """d/dt E[φ] (markers with 2 s.e.) against E[Lφ] (lines), for a few test functions."""
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k in range(num_functions):
        c = colors[k % len(colors)]
        ax.plot(report.times, report.rhs[:, k], color=c, lw=1.5,
                label=f"E[Lφ], {report.names[k]}")
        ax.errorbar(report.times, report.lhs[:, k], yerr=2 * report.standard_error[:, k],
                    fmt="o", ms=3.5, color=c, mfc="none", label=f"d/dt E[φ], {report.names[k]}")
    verdict = "passed" if report.passed else "rejected"
    ax.set_title(f"{title}\n{verdict}: max |z| = {report.max_abs_z:.1f} "
                 f"(threshold {report.threshold:.1f})", fontsize=10)
    ax.set_xlabel("time t")
    ax.set_ylabel("value")
    ax.grid(alpha=0.3)


def plot_max_z(ax, rows: list[dict], threshold: float):
    """Max |z| per case (log scale) against the rejection threshold."""
    names = [r["case"] for r in rows]
    values = [max(r["max_abs_z"], 1e-2) for r in rows]
    colors = ["tab:green" if r["should_pass"] else "tab:red" for r in rows]
    ax.barh(names, values, color=colors)
    ax.axvline(threshold, color="k", ls="--", label=f"threshold {threshold:.2f}")
    ax.set_xscale("log")
    ax.set_xlim(0.5, 3 * max(values + [threshold]))
    for y, v in enumerate(values):
        ax.text(v * 1.08, y, f"{v:.3g}", va="center", fontsize=8)
    ax.set_xlabel("max |z| over test functions × times (seed 0)")
    ax.invert_yaxis()
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("green: correct pair (should pass); red: wrong pair (should fail)", fontsize=10)


def run(config: Config, out) -> None:
    chosen = [c for c in cases() if not config.cases or c.name in config.cases]
    rows, reports = [], {}
    for case in chosen:
        times = np.linspace(*case.t_range, config.num_times)
        start = time.perf_counter()
        verdicts = []
        for seed in range(config.num_seeds):
            report = case.verify(config.num_samples, times, jax.random.key(seed))
            verdicts.append(report.passed)
            if seed == 0:
                reports[case.name] = report
        seconds = (time.perf_counter() - start) / config.num_seeds
        first = reports[case.name]
        rows.append({
            "case": case.name,
            "description": case.description,
            "should_pass": case.correct,
            "max_abs_z": first.max_abs_z,
            "threshold": first.threshold,
            "passed_per_seed": verdicts,
            "pass_rate": float(np.mean(verdicts)),
            "correct_verdict_rate": float(np.mean([v == case.correct for v in verdicts])),
            "strong_residual": strong_residual(case, times[[0, -1]]) if case.correct else None,
            "seconds_per_check": seconds,
        })
    columns = [k for k in rows[0] if k != "passed_per_seed"]
    out.table(rows, stem="cases", columns=columns, caption=(
        f"Weak-form verification, {config.num_samples} samples × {config.num_times} times × 10 "
        f"test functions per check, {config.num_seeds} seeds. pass_rate: fraction of seeds that "
        "passed; strong_residual: max |∂ₜp+∇·(fp)−½g²Δp|/p of the analytic density at 64 points."))

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=False)
    for ax, name in zip(axes, config.figure_cases, strict=True):
        if name in reports:
            plot_sides(ax, reports[name], name)
    axes[0].legend(fontsize=7, ncol=2, loc="best")
    out.figure(fig, "sides", caption="d/dt E[φ(x_t)] (circles, ±2 s.e. of the residual) against "
               "E[Lφ(x_t)] "
               "(lines): they coincide for the VP SDE and separate when the drift is 10% off.")

    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.5))
    plot_max_z(ax, rows, rows[0]["threshold"])
    out.figure(fig, "max_z", caption="Largest |z| per case; the dashed line is the Bonferroni "
               "threshold at family-wise α = 1e-3.")

    correct = [r for r in rows if r["should_pass"]]
    wrong = [r for r in rows if not r["should_pass"]]
    out.metric(
        num_samples=config.num_samples, num_times=config.num_times, num_seeds=config.num_seeds,
        correct_pass_rate=float(np.mean([r["pass_rate"] for r in correct])) if correct else None,
        wrong_rejection_rate=(float(np.mean([1 - r["pass_rate"] for r in wrong]))
                              if wrong else None),
        max_strong_residual=max((r["strong_residual"] for r in correct
                                 if r["strong_residual"] is not None), default=None),
        seconds_per_check={r["case"]: r["seconds_per_check"] for r in rows},
    )
    # Per seed: the share of correct cases that pass, and of wrong cases that are rejected.
    pass_rates = np.mean([r["passed_per_seed"] for r in correct], axis=0) if correct else None
    reject_rates = (1.0 - np.mean([r["passed_per_seed"] for r in wrong], axis=0)) if wrong else None
    rule = (f"per seed over the cases; t 95% CI of the mean over {config.num_seeds} seeds above "
            f"{config.min_rate}")
    if correct:
        out.claim("d/dt E[φ] = E[f·∇φ + ½g²Δφ] for every test function (correct pairs pass)",
                  source=SOURCE, expected="pass (rate ≈ 1 − α)",
                  verdict=stats.exceeds(pass_rates, config.min_rate),
                  measured=f"pass rate per seed {', '.join(f'{p:.2f}' for p in pass_rates)} over "
                           f"{len(correct)} cases ({rule})",
                  previous=all(r["pass_rate"] >= 0.8 for r in correct))
    if wrong:
        out.claim("a dropped ½, a wrong sign, Itô/Stratonovich confusion or a 10% drift error "
                  "breaks the identity", source=SOURCE, expected="rejected",
                  verdict=stats.exceeds(reject_rates, config.min_rate),
                  measured=f"rejection rate per seed {', '.join(f'{p:.2f}' for p in reject_rates)} "
                           f"over {len(wrong)} cases at N = {config.num_samples} ({rule})",
                  previous=all(r["pass_rate"] == 0 for r in wrong))
