"""Gravity on the 2-D toys: field lines, exact-field and learned-field samples, the prior."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats

from diffusionlab import data, metrics, stats, train
from diffusionlab.odes import generate, gravity, learned, plots

TITLE = "Gravity (PFGM) on 2-D toys: exact and learned field lines, and the prior"
SOURCE = "《生成扩散模型漫谈（十三）：从万有引力到扩散模型》, https://kexue.fm/archives/9305"


@dataclasses.dataclass(frozen=True)
class Config:
    datasets: tuple[str, ...] = ("8gaussians", "two_moons", "checkerboard")
    num_data: int = 2048
    num_samples: int = 2000
    T: float = 40.0
    t_end: float = 1e-3
    train_steps: int = 3000
    hidden: int = 128
    prior_samples: int = 20000
    rtol: float = 1e-4
    exact_steps: int = 500
    groups: int = 4  # the exact-field claim: independent groups of num_samples/groups prior draws
    prior_seeds: int = 5  # the prior claim: independent draws of prior_samples per sampler
    prior_cdf_tolerance: float = 0.02  # the prior claim: KS distance to the analytic CDF
    seed: int = 0

    @classmethod
    def quick(cls):
        return cls(datasets=("8gaussians",), num_data=256, num_samples=200, train_steps=100,
                   hidden=32, prior_samples=3000, rtol=1e-2,
                   exact_steps=60)


def _exact_velocity(x, t, points):
    return gravity.velocity(x, t, points)


def run(config: Config, out) -> None:
    key = jax.random.key(config.seed)
    rows = []
    for name in config.datasets:
        k_data, k_prior, k_train, k_sample, k_sw, key = jax.random.split(key, 6)
        x = data.toy2d(name, config.num_data, key=k_data)
        with out.phase("sampling"):
            x_T = gravity.sample_prior(config.num_samples, 2, config.T, key=k_prior)
        velocity = jax.tree_util.Partial(_exact_velocity, points=x)
        # Fixed Heun steps in log t for the exact field: an adaptive step shared by the whole
        # batch is set by its worst sample, and near the data the exact posterior weights
        # switch sharply between neighbouring masses.
        with out.phase("sampling"):
            exact = generate(velocity, x_T, config.T, t_end=config.t_end, time="log",
                             solver="heun", steps=config.exact_steps, save_trajectory=60)
            jax.block_until_ready(exact)
        budget = learned.Budget(hidden=config.hidden, gravity_T=config.T,
                                gravity_t_min=config.t_end)
        tc = train.TrainConfig(steps=config.train_steps, batch_size=128,
                               ema_decay=0.99 if config.train_steps < 1000 else 0.999,
                               log_every=min(500, config.train_steps))
        with out.phase("training"):
            model = learned.fit("gravity", x, budget=budget, config=tc, key=k_train)
        with out.phase("sampling"):
            learned_out = generate(model.velocity(), x_T, config.T, t_end=config.t_end, time="log",
                                   rtol=config.rtol, atol=config.rtol)
            jax.block_until_ready(learned_out)
        with out.phase("evaluation"):
            ref = x[: config.num_samples]
            sw = functools.partial(metrics.sliced_wasserstein, key=k_sw)
            fresh = data.toy2d(name, config.num_samples, key=k_sample)
            # Replicates for the claim: the prior draws split into independent groups, each scored
            # (with its own projections) against its own slice of the training data, beside a
            # group of fresh data scored the same way (the sampling-noise floor).
            size = config.num_samples // config.groups
            group_keys = jax.random.split(k_sw, config.groups)
            group_sw = [(float(metrics.sliced_wasserstein(exact.samples[g * size:(g + 1) * size],
                                                          ref[g * size:(g + 1) * size], key=k)),
                         float(metrics.sliced_wasserstein(fresh[g * size:(g + 1) * size],
                                                          ref[g * size:(g + 1) * size], key=k)))
                        for g, k in enumerate(group_keys)]
            rows.append({"dataset": name,
                         "SW2 exact field": float(sw(exact.samples, ref)),
                         "SW2 learned field": float(sw(learned_out.samples, ref)),
                         "SW2 data vs fresh data": float(sw(fresh, ref)),
                         "NFE exact": int(exact.nfe), "NFE learned": int(learned_out.nfe),
                         "group ratios exact / fresh": [e / f for e, f in group_sw]})
        xs = np.asarray(exact.xs)
        out.figure(plots.trajectories_2d(xs[:, :80], np.asarray(exact.ts), np.asarray(x),
                                         title=f"{name}: exact-field trajectories (T={config.T})"),
                   f"trajectories_{name}", caption="Exact empirical gravity field, integrated in "
                   "log t from the prior at T; the last part of each path is shown inside the "
                   "window.")
        out.figure(plots.scatter_panels({"exact field": np.asarray(exact.samples),
                                         "learned field": np.asarray(learned_out.samples)},
                                        reference=np.asarray(x), lim=3.0,
                                        title=f"{name}: samples at t = {config.t_end}"),
                   f"samples_{name}", caption="Grey: training data; red: samples.")
        grid_x = np.linspace(-3, 3, 60)
        grid_t = np.linspace(0.02, 3, 50)
        gx, gt = np.meshgrid(grid_x, grid_t)
        q = jnp.stack([gx.ravel(), np.zeros(gx.size)], 1).astype(jnp.float32)
        f_x, f_t = gravity.field(q, jnp.asarray(gt.ravel(), jnp.float32), x)
        near = np.asarray(x)[np.abs(np.asarray(x)[:, 1]) < 0.1, 0]
        out.figure(plots.field_slice(gx, gt, np.asarray(f_x[:, 0]).reshape(gx.shape),
                                     np.asarray(f_t).reshape(gx.shape), near,
                                     title=f"{name}: field lines in the plane x₂ = 0"),
                   f"field_{name}", caption="Exact field (F_x₁, F_t) on the slice x₂ = 0: "
                   "lines come down from far away and end on the data plane t = 0.")
    out.table(rows, stem="samples", columns=[c for c in rows[0] if not c.startswith("group")],
              caption="Sliced W2 to the training data (exact vs learned field; the noise floor "
              "is fresh data against the same training points).")
    # The prior: three samplers against the analytic radial density, over independent draws
    # (draw 0 is the one shown).
    cdf = lambda r: 1.0 - config.T / np.sqrt(np.float64(r) ** 2 + config.T**2)  # noqa: E731
    ks_rows = []
    for r in range(config.prior_seeds):
        keys = jax.random.split(key if r == 0 else jax.random.fold_in(key, r), 3)
        with out.phase("sampling"):
            radii_r = {m: np.linalg.norm(np.asarray(gravity.sample_prior(
                config.prior_samples, 2, config.T, key=k, method=m)), axis=1)
                for k, m in zip(keys, gravity.PRIOR_METHODS, strict=True)}
        if r == 0:
            radii = radii_r
        with out.phase("evaluation"):
            for m, radius in radii_r.items():
                test = scipy.stats.kstest(radius, cdf)
                ks_rows.append({"sampler": m, "draw": r, "KS distance": float(test.statistic),
                                "KS p-value": float(test.pvalue)})
    r_max = 6 * config.T
    r_grid = np.linspace(1e-3, r_max, 400)
    density = np.asarray(gravity.prior_radial_density(jnp.asarray(r_grid), 2, config.T))
    out.figure(plots.radial_histograms(radii, r_grid, density, r_max=r_max,
                                       title=f"Prior on the plane t = T = {config.T} (d = 2)"),
               "prior", caption="Radius of prior samples (direct inverse-CDF, Beta, ratio) "
               "against p(r) ∝ r/(r² + T²)^{3/2}.")
    out.table(ks_rows, stem="prior_ks", caption=(
        f"KS test of each prior sampler's radius against the analytic CDF (d = 2), "
        f"{config.prior_seeds} independent draws of {config.prior_samples}."))
    ks = {m: [r["KS distance"] for r in ks_rows if r["sampler"] == m]
          for m in gravity.PRIOR_METHODS}
    first_p = {r["sampler"]: r["KS p-value"] for r in ks_rows if r["draw"] == 0}
    out.metric(samples=rows, prior_ks_distance=ks, prior_ks_p_first_draw=first_p)
    ratio_bound = 2.0
    out.claim("field lines from the far hemisphere reproduce the data (exact field)",
              source=SOURCE, expected="samples on the data",
              verdict=stats.all_of(*(stats.exceeds(r["group ratios exact / fresh"], ratio_bound,
                                                   alternative="less") for r in rows),
                                   names=[r["dataset"] for r in rows],
                                   claim="for every dataset, t 95% CI of the mean SW2 ratio "
                                   f"(exact field / fresh data) over the groups < {ratio_bound:g}"),
              measured=f"per dataset, SW2 of the exact-field samples over the fresh-data floor "
                       f"in {config.groups} independent groups of "
                       f"{config.num_samples // config.groups} (rule: mean ratio below "
                       f"{ratio_bound:g}): " + "; ".join(
                           f"{r['dataset']} " + ", ".join(f"{v:.2f}" for v in
                                                          r["group ratios exact / fresh"])
                           for r in rows),
              previous=all(r["SW2 exact field"] < 3 * r["SW2 data vs fresh data"] + 0.05
                           for r in rows))
    tolerance = config.prior_cdf_tolerance
    out.claim("prior density ∝ (‖x‖² + T²)^{-(d+1)/2}; Beta and direct forms agree",
              source=SOURCE, expected="radius CDF 1 − T/√(r² + T²) (d = 2) for every sampler",
              verdict=stats.all_of(*(stats.exceeds(ks[m], tolerance, alternative="less")
                                     for m in gravity.PRIOR_METHODS),
                                   names=list(gravity.PRIOR_METHODS),
                                   claim="for every sampler, t 95% CI of the mean KS distance "
                                   f"to the analytic CDF over the draws < {tolerance:g}"),
              measured=f"mean KS distance to the analytic CDF over {config.prior_seeds} draws of "
                       f"{config.prior_samples} (rule: below {tolerance}): " + ", ".join(
                           f"{m} {np.mean(v):.4f}" for m, v in ks.items()),
              previous=min(first_p.values()) > 1e-3)
