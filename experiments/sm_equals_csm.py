"""Score matching = conditional score matching up to a constant, along a training run.

A small MLP score model is trained with the conditional (denoising) loss on a 2-D Gaussian
mixture. At every parameter snapshot both losses are evaluated on the same pairs, with the
exact mixture score for SM: the gap CSM − SM stays at one θ-free constant and the gradients
agree. For Gaussian data the constant has the closed form C = d(1/σ² − 1/(α²s² + σ²)).
Finally, the batch-ratio SM target is biased, with a bias that shrinks with the batch size.

Reference: 苏剑林, 《生成扩散模型漫谈（十八）：得分匹配 = 条件得分匹配》, https://kexue.fm/archives/9509
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx

from diffusionlab import nn, train
from diffusionlab import scorematching as sm

TITLE = "Score matching = conditional score matching: a constant gap and equal gradients"
SOURCE = "《生成扩散模型漫谈（十八）：得分匹配 = 条件得分匹配》 https://kexue.fm/archives/9509"


@dataclasses.dataclass(frozen=True)
class Config:
    alpha: float = 0.8
    sigma: float = 0.5
    num_data: int = 20_000
    num_eval: int = 100_000
    steps: int = 2_000
    num_snapshots: int = 20
    batch_size: int = 256
    learning_rate: float = 3e-3
    hidden: int = 64
    gaussian_levels: tuple[tuple[float, float, float], ...] = (
        (0.9, 0.3, 1.0), (0.8, 0.6, 1.5), (0.5, 0.8, 0.5), (0.2, 1.0, 2.0))  # (α, σ, s)
    gaussian_thetas: int = 8
    batch_sizes: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
    num_batches: int = 2_000
    seed: int = 0

    @classmethod
    def quick(cls) -> Config:
        return cls(num_data=1_000, num_eval=5_000, steps=60, num_snapshots=3, hidden=32,
                   gaussian_levels=((0.8, 0.6, 1.5),), gaussian_thetas=2,
                   batch_sizes=(2, 64), num_batches=100)


def train_with_snapshots(config: Config, data_x0: jax.Array):
    """Trains a score MLP with the CSM loss; returns ``apply`` and stacked parameter snapshots."""
    model = nn.MLP(2, 2, hidden=config.hidden, depth=2, time_dim=16,
                   rngs=nnx.Rngs(config.seed))
    module_apply, params = nn.pure(model)

    def apply(p, x):
        return module_apply(p, x, jnp.zeros(x.shape[:1]))

    def loss_fn(p, x0, key):
        x_t = config.alpha * x0 + config.sigma * jax.random.normal(key, x0.shape)
        return sm.conditional_score_matching_loss(apply(p, x_t), x_t, x0, alpha=config.alpha,
                                                  sigma=config.sigma)

    tc = train.TrainConfig(steps=config.steps, batch_size=config.batch_size,
                           learning_rate=config.learning_rate, seed=config.seed)
    optimizer = train.make_optimizer(tc)
    step = train.make_train_step(loss_fn, optimizer, num_examples=data_x0.shape[0],
                                 batch_size=config.batch_size, ema_decay=tc.ema_decay,
                                 seed=config.seed)
    per_snapshot = config.steps // config.num_snapshots

    @jax.jit
    def run(state):
        def chunk(state, _):
            state, _ = jax.lax.scan(lambda s, _: step(s, data_x0), state, length=per_snapshot)
            return state, state.params

        return jax.lax.scan(chunk, state, length=config.num_snapshots)[1]

    snapshots = run(train.init_state(params, optimizer))
    # Prepend the initialisation, so the first snapshot is the untrained model.
    snapshots = jax.tree.map(lambda a, s: jnp.concatenate([a[None], s]), params, snapshots)
    steps = np.arange(config.num_snapshots + 1) * per_snapshot
    return apply, snapshots, steps


def plot_losses(ax, steps, rows, constant, constant_se):
    """SM, CSM and CSM − SM along training, with the θ-free constant as a band."""
    sm_v = np.array([r["sm"] for r in rows])
    csm_v = np.array([r["csm"] for r in rows])
    gap = np.array([r["gap"] for r in rows])
    gap_se = np.array([r["gap_se"] for r in rows])
    ax.plot(steps, csm_v, "o-", label="CSM (conditional)")
    ax.plot(steps, sm_v, "s-", label="SM (exact marginal score)")
    ax.errorbar(steps, gap, yerr=2 * gap_se, fmt="^-", label="CSM − SM (±2 s.e.)")
    ax.axhspan(constant - 2 * constant_se, constant + 2 * constant_se, color="grey", alpha=0.3,
               label=f"C = d/σ² − E‖∇log p‖² = {constant:.3f}")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("loss")
    ax.set_title("SM, CSM and their gap along a CSM training run (8-Gaussian ring)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")


def plot_bias(ax, sizes, bias, bias_se):
    """Batch-ratio bias against batch size, log-log, with a 1/B guide."""
    ax.errorbar(sizes, bias, yerr=2 * bias_se, fmt="o-", label="batch-ratio estimator")
    ref = bias[len(bias) // 2] * sizes[len(sizes) // 2] / np.asarray(sizes, float)
    ax.plot(sizes, ref, "k--", lw=1, label="∝ 1/B")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("batch size B of x₀ samples")
    ax.set_ylabel("mean ‖E[ŝ] − ∇log p_t‖ over test points")
    ax.set_title("Bias of the batch-ratio SM target (CSM's per-pair target has none)",
                 fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")


def run(config: Config, out) -> None:
    key = jax.random.key(config.seed)
    k_data, k_eval0, k_eval1, k_gauss, k_bias, k_points = jax.random.split(key, 6)
    data = sm.GaussianMixture.ring(8, radius=2.0, std=0.3)
    x0_train = data.sample(config.num_data, key=k_data)

    # --- along a training run --------------------------------------------------------------
    apply, snapshots, steps = train_with_snapshots(config, x0_train)
    x0 = data.sample(config.num_eval, key=k_eval0)
    x_t = config.alpha * x0 + config.sigma * jax.random.normal(k_eval1, x0.shape)
    true_score = data.perturb(alpha=config.alpha, sigma=config.sigma).score(x_t)

    @jax.jit
    def evaluate(p):
        comparison = sm.compare_losses(apply(p, x_t), x_t, x0, alpha=config.alpha,
                                       sigma=config.sigma, true_score=true_score)
        g_sm, g_csm = sm.loss_gradients(apply, p, x_t, x0, alpha=config.alpha,
                                        sigma=config.sigma, true_score=true_score)
        flat_sm = jnp.concatenate([g.ravel() for g in jax.tree.leaves(g_sm)])
        flat_csm = jnp.concatenate([g.ravel() for g in jax.tree.leaves(g_csm)])
        cosine = flat_sm @ flat_csm / (jnp.linalg.norm(flat_sm) * jnp.linalg.norm(flat_csm))
        relative = jnp.linalg.norm(flat_csm - flat_sm) / jnp.linalg.norm(flat_sm)
        return comparison, cosine, relative

    comparisons, cosines, relatives = jax.lax.map(evaluate, snapshots)
    comparisons, cosines, relatives = jax.device_get((comparisons, cosines, relatives))
    rows = [{"step": int(s), "sm": float(comparisons.sm[i]), "csm": float(comparisons.csm[i]),
             "gap": float(comparisons.gap[i]), "gap_se": float(comparisons.gap_se[i]),
             "grad_cosine": float(cosines[i]), "grad_relative_difference": float(relatives[i])}
            for i, s in enumerate(steps)]
    constant, constant_se = float(comparisons.constant[0]), float(comparisons.constant_se[0])
    out.table(rows, stem="training_run", caption=(
        f"SM and CSM at parameter snapshots (α = {config.alpha}, σ = {config.sigma}, "
        f"{config.num_eval} evaluation pairs). θ-free constant C = {constant:.4f} ± "
        f"{constant_se:.4f}."))
    gaps = np.array([r["gap"] for r in rows])
    gap_ses = np.array([r["gap_se"] for r in rows])
    spread = float(np.std(gaps))
    max_z = float(np.max(np.abs(gaps - constant) / np.hypot(gap_ses, constant_se)))

    # --- Gaussian data: the closed form ----------------------------------------------------
    @jax.jit
    def gaussian_comparison(key, alpha, sigma, s):
        """Random linear s_θ on Gaussian data x₀ ~ N(0, s²I₂), whose exact score is linear."""
        kx, ke, kw, kb = jax.random.split(key, 4)
        g0 = s * jax.random.normal(kx, (config.num_eval, 2))
        gt = alpha * g0 + sigma * jax.random.normal(ke, g0.shape)
        w, b = jax.random.normal(kw, (2, 2)), jax.random.normal(kb, (2,))
        return sm.compare_losses(gt @ w + b[None, :], gt, g0, alpha=alpha, sigma=sigma,
                                 true_score=-gt / (alpha**2 * s**2 + sigma**2))

    gauss_rows = []
    for level, (alpha, sigma, s) in enumerate(config.gaussian_levels):
        closed = float(sm.gaussian_score_matching_gap(2, alpha=alpha, sigma=sigma, data_std=s))
        keys = jax.random.split(jax.random.fold_in(k_gauss, level), config.gaussian_thetas)
        for j, k in enumerate(keys):
            c = gaussian_comparison(k, alpha, sigma, s)
            gauss_rows.append({"alpha": alpha, "sigma": sigma, "data_std": s, "theta": j,
                               "sm": float(c.sm), "csm": float(c.csm), "gap": float(c.gap),
                               "gap_se": float(c.gap_se), "closed_form": closed,
                               "z": (float(c.gap) - closed) / float(c.gap_se)})
    out.table(gauss_rows, stem="gaussian_closed_form", caption=(
        "Gaussian data x₀ ~ N(0, s²I₂), random linear s_θ(x) = Wx + b: the measured gap against "
        "C = d(1/σ² − 1/(α²s² + σ²))."))
    gauss_z = float(np.max(np.abs([r["z"] for r in gauss_rows])))

    # --- batch-ratio bias -------------------------------------------------------------------
    points = data.perturb(alpha=config.alpha, sigma=config.sigma).sample(64, key=k_points)
    bias_rows = []
    for b in config.batch_sizes:
        bias, se = sm.batch_ratio_score_bias(data, points, alpha=config.alpha,
                                             sigma=config.sigma, batch_size=b,
                                             num_batches=config.num_batches,
                                             key=jax.random.fold_in(k_bias, b))
        norm = jnp.linalg.norm(bias, axis=-1)
        norm_se = jnp.linalg.norm(se, axis=-1)
        bias_rows.append({"batch_size": b, "mean_bias_norm": float(norm.mean()),
                          "bias_se": float(norm_se.mean() / np.sqrt(len(points))),
                          "mean_standard_error": float(norm_se.mean())})
    out.table(bias_rows, stem="batch_ratio_bias", caption=(
        f"Norm of the batch-ratio estimator's bias, averaged over 64 points of p_t, "
        f"{config.num_batches} batches per size."))

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    plot_losses(axes[0], steps, rows, constant, constant_se)
    plot_bias(axes[1], [r["batch_size"] for r in bias_rows],
              np.array([r["mean_bias_norm"] for r in bias_rows]),
              np.array([r["bias_se"] for r in bias_rows]))
    out.figure(fig, "sm_vs_csm", caption=(
        "Left: SM and CSM fall together during training while CSM − SM stays on the θ-free "
        "constant C. Right: the batch-ratio target's bias shrinks with the batch size."))

    out.metric(
        constant=constant, constant_se=constant_se, gap_mean=float(gaps.mean()),
        gap_spread_over_snapshots=spread, gap_max_z_vs_constant=max_z,
        sm_drop=rows[0]["sm"] / rows[-1]["sm"],
        grad_cosine_min=float(np.min(cosines)),
        grad_relative_difference_max=float(np.max(relatives)),
        gaussian_max_z=gauss_z,
        batch_ratio_bias={r["batch_size"]: r["mean_bias_norm"] for r in bias_rows},
    )
    out.claim("CSM − SM is a constant independent of θ", source=SOURCE,
              expected="constant over training",
              measured=f"gap {gaps.mean():.4f} (spread {spread:.1e}) vs θ-free C = "
                       f"{constant:.4f} ± {constant_se:.4f}; max |z| {max_z:.2f} over "
                       f"{len(rows)} snapshots while SM fell ×{rows[0]['sm'] / rows[-1]['sm']:.1f}",
              holds=max_z < 4.0)
    out.claim("for Gaussian data C = d(1/b² − 1/(a²s² + b²))", source=SOURCE + " (brief §6)",
              expected="closed form", measured=f"max |z| = {gauss_z:.2f} over "
                                               f"{len(gauss_rows)} (level, θ) pairs",
              holds=gauss_z < 4.0)
    out.claim("the gradients of SM and CSM are equal (in expectation)", source=SOURCE,
              expected="cosine 1", measured=f"min cosine {np.min(cosines):.4f}, max relative "
                                            f"difference {np.max(relatives):.3f}",
              holds=bool(np.min(cosines) > 0.95))
    small, large = bias_rows[0], bias_rows[-1]
    out.claim("the batch-ratio SM estimator is biased, the bias shrinking with batch size",
              source=SOURCE + " (statistical caveat)", expected="bias → 0 as B → ∞",
              measured=f"‖bias‖ {small['mean_bias_norm']:.3f} at B = {small['batch_size']} → "
                       f"{large['mean_bias_norm']:.4f} at B = {large['batch_size']}",
              holds=small["mean_bias_norm"] > 3 * large["mean_bias_norm"])
