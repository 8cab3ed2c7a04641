"""PFGM's normalised batch target against the unbiased conditional target: bias vs batch size.

At fixed queries :math:`(x, t)` (``x`` drawn from the exact conditional around training points),
the regression minimiser of PFGM's target, :math:`\\mathbb E_B[\\hat s_B]`, is estimated by
Monte Carlo over batches of ``B`` training points and compared with the whole-training-set
normalised field (:func:`diffusionlab.odes.batch_target.batch_target_bias`); the unbiased
conditional target :math:`z = (x - x_0)/t` is averaged over exact posterior draws
(:func:`diffusionlab.odes.batch_target.conditional_target_mean`) as the control.

Then both targets train the same gravity denoiser (:func:`diffusionlab.odes.learned.fit`, one
budget, ``Budget.gravity_target`` ``"conditional"`` or ``"batch"``) at each training batch size
``B`` (the batch whose field PFGM normalises is the training minibatch), from the same training
seeds (initialisation, data order, heights and draws), and their adaptive-solver samples are
scored as in ``nfe_quality`` (sliced W2 on 2-D sets, FD-digits on digits; lower is better).
Claims are decided paired over the training seeds.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from diffusionlab import data, metrics, stats, train
from diffusionlab.odes import batch_target, gravity, learned

TITLE = "PFGM's normalised batch target: bias against batch size, and the unbiased control"
SOURCE = ("《生成扩散模型漫谈（十三）》, https://kexue.fm/archives/9305 (the normalised batch target "
          "is biased, hence large batches); PFGM, arXiv:2209.11178 §3.3 (batch 4096)")


@dataclasses.dataclass(frozen=True)
class Config:
    datasets: tuple[str, ...] = ("8gaussians", "digits")
    num_train: int = 4096  # the population: the whole-data field is the reference
    heights: tuple[float, ...] = (0.1, 0.5, 2.0, 10.0)
    queries: int = 8  # per height
    batch_sizes: tuple[int, ...] = (16, 64, 256, 1024, 4096)
    num_batches: int = 512
    posterior_draws: int = 4096
    gamma: float = 1e-3
    # Training both targets (the same budget as nfe_quality's gravity): the datasets, the
    # training batch sizes B (the small one makes the batch target's bias matter), seeds.
    train_datasets: tuple[str, ...] = ("8gaussians",)
    train_batch_sizes: tuple[int, ...] = (16, 256)
    training_seeds: int = 3
    train_steps: int = 2000
    hidden: int = 128
    depth: int = 3
    gravity_T: float = 40.0
    num_eval: int = 1000
    seed: int = 0

    @classmethod
    def quick(cls):
        return cls(datasets=("8gaussians",), num_train=256, heights=(0.1, 2.0), queries=4,
                   batch_sizes=(16, 256), num_batches=64, posterior_draws=256,
                   train_batch_sizes=(16,), training_seeds=2, train_steps=20, hidden=32,
                   depth=2, num_eval=200)


def _z_sq(mean, exact, se) -> np.ndarray:
    """Squared Monte Carlo z of ``mean - exact`` per component, flattened; components with no
    Monte Carlo spread (every draw equal, e.g. a posterior on one point) are left out."""
    mean, exact, se = (np.asarray(a, np.float64).ravel() for a in (mean, exact, se))
    keep = se > 0
    return ((mean[keep] - exact[keep]) / se[keep]) ** 2


def run(config: Config, out) -> None:
    key = jax.random.key(config.seed)
    _bias(config, out, key)
    _training(config, out, jax.random.fold_in(key, 1))


TARGETS = {"conditional": "conditional (unbiased)", "batch": "PFGM batch (normalised)"}


def _training(config: Config, out, key) -> None:
    """Trains gravity on both targets at each batch size and seed; scores the samples."""
    rows, scores, shown, far = [], {}, {}, {}
    fig, axes = plt.subplots(1, len(config.train_datasets),
                             figsize=(5.0 * len(config.train_datasets), 3.9), squeeze=False)
    for ax, name in zip(axes[0], config.train_datasets, strict=True):
        k_data, k_eval, k_init, k_sample, k_metric, key = jax.random.split(key, 6)
        x = data.examples(name, "train", num=config.num_train, key=k_data)
        x = jnp.asarray(x.reshape(x.shape[0], -1), jnp.float32)
        ref = data.examples(name, "test", num=config.num_eval, key=k_eval)
        ref = jnp.asarray(ref.reshape(ref.shape[0], -1), jnp.float32)
        metric_name = metrics.quality_metric(data.domain(name))
        shown[name, "held-out"] = np.asarray(ref)
        for b in config.train_batch_sizes:
            tc = train.TrainConfig(steps=config.train_steps, batch_size=b,
                                   ema_decay=0.999 if config.train_steps >= 2000 else 0.99,
                                   log_every=min(500, config.train_steps))
            for target in TARGETS:
                budget = learned.Budget(hidden=config.hidden, depth=config.depth,
                                        gravity_T=config.gravity_T, gravity_target=target,
                                        gravity_gamma=config.gamma)
                for r in range(config.training_seeds):  # same seeds for both targets: paired
                    with out.phase("training"):
                        model = learned.fit("gravity", x, budget=budget, config=tc,
                                            key=jax.random.fold_in(k_init, r))
                    with out.phase("sampling"):  # adaptive tsit5
                        sol = learned.sample(model, ref.shape[0], key=k_sample)
                        samples = np.asarray(sol.samples)
                    with out.phase("evaluation"):
                        value = metrics.quality(samples, ref, domain=data.domain(name),
                                                key=k_metric)
                    scores[name, b, target, r] = value
                    far[name, b, target, r] = _far_share(samples, np.asarray(ref), name)
                    if r == 0:
                        shown[name, b, target] = samples
                    rows.append({"dataset": name, "training batch B": b,
                                 "target": TARGETS[target], "training seed": r,
                                 "NFE": int(sol.nfe), metric_name: value,
                                 "far samples (%)": 100 * far[name, b, target, r]})
        seeds = range(config.training_seeds)
        bs = np.array(config.train_batch_sizes, float)
        for j, target in enumerate(TARGETS):
            vals = np.array([[scores[name, b, target, r] for r in seeds]
                             for b in config.train_batch_sizes])
            ax.plot(bs * (1.06 if j else 1 / 1.06), vals.mean(1), "o-", color=f"C{j}", lw=2,
                    label=f"{TARGETS[target]}: mean")
            for r in seeds:
                ax.plot(bs * (1.06 if j else 1 / 1.06), vals[:, r], "x", color=f"C{j}",
                        alpha=0.6, label="training seeds" if r == 0 else None)
        ax.set_xscale("log", base=2)
        ax.set_xticks(bs, [str(b) for b in config.train_batch_sizes])
        ax.set_xlabel("training batch size B")
        ax.set_ylabel(f"{metric_name} of the samples (lower is better)")
        ax.set_title(f"{name}: gravity trained on each target", fontsize=10)
        ax.legend(fontsize=7)
        for b in config.train_batch_sizes:
            cond = [scores[name, b, "conditional", r] for r in seeds]
            batch = [scores[name, b, "batch", r] for r in seeds]
            small = b == min(config.train_batch_sizes)
            out.claim(f"{name}: at training batch B = {b} the conditional target's samples are "
                      f"better ({metric_name} lower) than those of PFGM's normalised batch target",
                      source=SOURCE,
                      expected=("better: the batch target is biased at this B" if small else
                                "smaller or no difference: the bias shrinks as B grows"),
                      verdict=stats.compare(cond, batch, alternative="less", paired=True),
                      measured={"conditional": [round(v, 4) for v in cond],
                                "batch": [round(v, 4) for v in batch]})
        lo, hi = min(config.train_batch_sizes), max(config.train_batch_sizes)
        if lo != hi:
            batch_lo = [scores[name, lo, "batch", r] for r in seeds]
            batch_hi = [scores[name, hi, "batch", r] for r in seeds]
            out.claim(f"{name}: the batch target's samples improve from B = {lo} to B = {hi}",
                      source=SOURCE, expected="better: its bias shrinks as B grows",
                      verdict=stats.compare(batch_hi, batch_lo, alternative="less", paired=True),
                      measured={f"B = {lo}": [round(v, 4) for v in batch_lo],
                                f"B = {hi}": [round(v, 4) for v in batch_hi]})
    fig.tight_layout()
    out.figure(fig, "pfgm_target_training", caption="Sample quality of the gravity denoiser "
               "trained on the unbiased conditional target and on PFGM's normalised batch "
               f"target, at each training batch size B ({config.train_steps} steps, MLP "
               f"{config.hidden}x{config.depth}, adaptive tsit5 sampling); crosses: the "
               f"{config.training_seeds} training seeds, dots: their mean (offset sideways).")
    _sample_figure(config, out, shown)
    columns = ["dataset", "training batch B", "target", "training seed", "NFE", "sliced W2",
               "FD-digits", "far samples (%)"]
    summary = []
    for name in config.train_datasets:
        metric_name = metrics.quality_metric(data.domain(name))
        for b in config.train_batch_sizes:
            for target in TARGETS:
                v = np.array([scores[name, b, target, r] for r in range(config.training_seeds)])
                summary.append({"dataset": name, "training batch B": b,
                                "target": TARGETS[target],
                                f"mean {metric_name}": float(v.mean()),
                                "SE over seeds": float(v.std(ddof=1) / np.sqrt(v.size)),
                                "far samples (%)": 100 * float(np.mean(
                                    [far[name, b, target, r]
                                     for r in range(config.training_seeds)]))})
    out.table(summary, stem="pfgm_target_training",
              columns=[c for c in ["dataset", "training batch B", "target", "mean sliced W2",
                                   "mean FD-digits", "SE over seeds", "far samples (%)"]
                       if any(c in r for r in summary)],
              caption="Sample quality after training on each target (mean over "
              f"{config.training_seeds} training seeds, {config.train_steps} steps at batch B; "
              "adaptive tsit5 sampling; lower is better). The batch target's field is that of "
              f"the B points of the training minibatch. far samples: the share farther than "
              f"{FAR} from every held-out point (2-D sets only), which sliced W2 weighs heavily.")
    out.table(rows, stem="pfgm_target_training_seeds",
              columns=[c for c in columns if any(c in r for r in rows)],
              caption="Every training run: sample quality and the adaptive solver's NFE.")
    out.metric(training=rows, training_summary=summary)


FAR = 0.5  # a sample farther than this from every held-out point is "far" (2-D sets)


def _far_share(samples, reference, name) -> float:
    """The share of ``samples`` farther than ``FAR`` from every point of ``reference`` on the
    2-D sets; NaN on the others."""
    if data.domain(name) != "toy":
        return float("nan")
    nearest = np.full(samples.shape[0], np.inf)
    for chunk in np.array_split(reference, max(1, reference.shape[0] // 256)):
        dist = np.linalg.norm(samples[:, None, :] - chunk[None, :, :], axis=-1)
        nearest = np.minimum(nearest, dist.min(axis=1))
    return float(np.mean(nearest > FAR))


def _sample_figure(config, out, shown) -> None:
    """Seed 0's samples of each arm on the 2-D training sets."""
    planar = [n for n in config.train_datasets if data.domain(n) == "toy"]
    if not planar:
        return
    cols = [(b, t) for b in config.train_batch_sizes for t in TARGETS]
    fig, axes = plt.subplots(len(planar), len(cols), figsize=(2.6 * len(cols), 2.7 * len(planar)),
                             squeeze=False)
    for row, name in zip(axes, planar, strict=True):
        for ax, (b, target) in zip(row, cols, strict=True):
            pts, held_out = shown[name, b, target], shown[name, "held-out"]
            ax.scatter(held_out[:, 0], held_out[:, 1], s=2, color="0.8", label="held-out data")
            ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5, color="C0" if target ==
                       "conditional" else "C1")
            outside = np.mean(np.any(np.abs(pts) > 2.6, axis=1))
            ax.set_title(f"{name}, B = {b}\n{TARGETS[target]}\n{100 * outside:.1f}% of "
                         "samples outside the frame", fontsize=8)
            ax.set_xlim(-2.6, 2.6)
            ax.set_ylim(-2.6, 2.6)
            ax.set_aspect("equal")
            ax.tick_params(labelsize=6)
    fig.tight_layout()
    out.figure(fig, "pfgm_target_samples", caption="Samples (training seed 0, adaptive solve) "
               "of the gravity denoiser trained on each target at each training batch size B; "
               "grey: held-out data.")


def _bias(config: Config, out, key) -> None:
    lo_b, hi_b, t_min = min(config.batch_sizes), max(config.batch_sizes), min(config.heights)
    rows = []
    fig, axes = plt.subplots(1, len(config.datasets), figsize=(5.0 * len(config.datasets), 3.9),
                             squeeze=False)
    for ax, name in zip(axes[0], config.datasets, strict=True):
        k_data, k_query, k_batch, k_post, key = jax.random.split(key, 5)
        x = data.examples(name, "train", num=config.num_train, key=k_data)
        x = jnp.asarray(x.reshape(x.shape[0], -1), jnp.float32)
        d = x.shape[1]
        sq_bias, z_sq, cond_z_sq = {}, {}, []
        for i, t in enumerate(config.heights):
            k_pick, k_x = jax.random.split(jax.random.fold_in(k_query, i))
            x0 = x[jax.random.randint(k_pick, (config.queries,), 0, x.shape[0])]
            q = gravity.conditional_sample(x0, t, key=k_x)
            rms, floor = [], []
            for b in config.batch_sizes:
                r = batch_target.batch_target_bias(q, t, x, batch_size=b,
                                                   num_batches=config.num_batches,
                                                   key=jax.random.fold_in(k_batch, 1000 * i + b),
                                                   gamma=config.gamma)
                sb = np.asarray(r.squared_bias) / (d + 1)  # per query, relative to |s| = √(d+1)
                z = _z_sq(r.mean, r.exact, r.standard_error)
                sq_bias[t, b], z_sq[t, b] = sb, z
                rms.append(np.sqrt(max(sb.mean(), 0.0)))
                floor.append(float(np.sqrt(np.mean(np.sum(np.asarray(r.standard_error) ** 2, 1))
                                           / (d + 1))))
                v_b, v = np.asarray(r.velocity), np.asarray(r.exact_velocity)
                cos = (np.sum(v_b * v, 1) + 1) / np.sqrt((np.sum(v_b ** 2, 1) + 1)
                                                        * (np.sum(v ** 2, 1) + 1))
                rows.append({"dataset": name, "t": t, "target": "PFGM batch, normalised",
                             "B or draws": b, "relative bias (rms)": rms[-1],
                             "MC noise (rms SE)": floor[-1],
                             "mean z²": float(z.mean()) if z.size else float("nan"),
                             "components": z.size,
                             "field angle error (deg)": float(np.degrees(np.mean(
                                 np.arccos(np.clip(cos, -1.0, 1.0)))))})
            c = batch_target.conditional_target_mean(q, t, x, num=config.posterior_draws,
                                                     key=jax.random.fold_in(k_post, i))
            cz = _z_sq(c.mean, c.exact_velocity, c.standard_error)
            cond_z_sq.append(cz)
            rows.append({"dataset": name, "t": t, "target": "conditional z (unbiased)",
                         "B or draws": config.posterior_draws, "components": cz.size,
                         "mean z²": float(cz.mean()) if cz.size else float("nan")})
            shown = np.where(np.array(rms) > np.array(floor), rms, np.nan)  # resolved only
            ax.plot(config.batch_sizes, shown, "o-", color=f"C{i}", label=f"t = {t:g}")
            ax.plot(config.batch_sizes, floor, ":", color=f"C{i}", lw=1)
        b = np.array(config.batch_sizes, float)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size B")
        ax.set_ylabel("rms bias of the normalised target / √(d+1)")
        ax.set_title(f"{name} (d = {d}): solid bias, dotted MC noise", fontsize=10)
        top = max(max(r["relative bias (rms)"] for r in rows if r["dataset"] == name
                      and "relative bias (rms)" in r), 1e-5)
        ax.plot(b, top * b[0] / b, "k--", lw=0.8, label="∝ 1/B")
        ax.legend(fontsize=7)
        # claims: replicates are the queries (and their components) at the smallest height
        biased = stats.exceeds(z_sq[t_min, lo_b], 1.0, alternative="greater")
        shrinks = stats.compare(sq_bias[t_min, lo_b], sq_bias[t_min, hi_b], alternative="greater",
                                paired=True)
        control = stats.equivalent(np.concatenate(cond_z_sq), np.ones(sum(map(len, cond_z_sq))),
                                   margin=0.5, paired=True)
        measured = {r["B or draws"] if r["target"].startswith("PFGM") else "conditional":
                    f"mean z² {r['mean z²']:.3g}"
                    + (f", rms relative bias {r['relative bias (rms)']:.3g}"
                       if "relative bias (rms)" in r else "")
                    for r in rows if r["dataset"] == name and r["t"] == t_min}
        out.claim(f"{name}: PFGM's normalised batch target is biased at B = {lo_b} (t = {t_min:g})",
                  source=SOURCE, expected="biased (a normalised ratio of batch sums)",
                  verdict=biased, measured=measured)
        out.claim(f"{name}: its bias shrinks from B = {lo_b} to B = {hi_b} (t = {t_min:g})",
                  source=SOURCE, expected="consistent: the bias vanishes as B grows",
                  verdict=shrinks, measured=measured)
        out.claim(f"{name}: the conditional target z = (x - x0)/t is unbiased "
                  "(mean z² over every query and component equivalent to 1, margin 0.5)",
                  source="《生成扩散模型漫谈（十四）》, https://kexue.fm/archives/9370",
                  expected="unbiased", verdict=control,
                  measured={f"t = {r['t']:g}": f"mean z² {r['mean z²']:.3g}" for r in rows
                            if r["dataset"] == name and r["target"].startswith("conditional")})
    fig.tight_layout()
    out.figure(fig, "pfgm_target_bias", caption="Bias of PFGM's normalised batch target "
               "against the whole-data normalised field, rms over the queries at each height, "
               "relative to the target's norm √(d+1); dotted: the Monte Carlo standard error "
               "(bias below it is not resolved, and not drawn); dashed: a 1/B slope.")
    out.table(rows, stem="pfgm_target_bias",
              columns=["dataset", "t", "target", "B or draws", "relative bias (rms)",
                       "MC noise (rms SE)", "mean z²", "components", "field angle error (deg)"],
              caption="Bias of the normalised batch target (B points per batch, "
              f"{config.num_batches} batches) and of the conditional target (posterior draws). "
              "mean z²: squared Monte Carlo z of (mean − exact) per component, 1 when no bias "
              "is detectable, over the components with Monte Carlo spread; field angle "
              "error: between (v_B, 1) and (v, 1), v_B the velocity of the batch target's "
              "minimiser.")
    out.metric(rows=rows)
