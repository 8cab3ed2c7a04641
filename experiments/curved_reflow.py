"""Rectified flow on a curved path: flow matching along the straight path and along the
trigonometric (VP-like) path with one budget, each reflowed once on its own coupling, scored by
few-step sample quality and by the straightness of the learned ODE.

Along a path :math:`x_t = \\Psi_t(x_0, x_1)` flow matching regresses :math:`v_\\theta(x_t, t)` on
:math:`\\partial_t\\Psi_t` (``odes.flows.path_cfm_loss``); one reflow couples each noise
:math:`x_1` with the sample :math:`\\hat x_0` the first model maps it to
(``odes.flows.reflow_pairs``) and fine-tunes on that coupling along the same path
(``odes.flows.path_rectified_loss``). Reflow makes the ODE's trajectories follow the chosen
path between their own endpoints: straight lines for the straight path (Liu et al.), quarter
ellipses :math:`\\cos(\\tfrac{\\pi t}2)\\hat x_0 + \\sin(\\tfrac{\\pi t}2)x_1` for the
trigonometric one, which no Euler step follows. Straightness is Liu et al.'s
:math:`S = \\int_0^1\\|(x_1 - \\hat x_0) - v(x_t, t)\\|^2 dt` and the deviation from the chosen
path :math:`\\int_0^1\\|\\partial_t\\Psi_t(\\hat x_0, x_1) - v(x_t, t)\\|^2 dt`
(``odes.flows.straightness``, 64 Euler steps).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import scipy.stats

from diffusionlab import data, metrics, stats, train
from diffusionlab.odes import LinearPath, flows, generate, learned

TITLE = ("Rectified flow on a curved path: straight vs trigonometric flow matching, before and "
         "after one reflow (few-step quality, straightness)")
SOURCE = ("《生成扩散模型漫谈（十七）：构建ODE的一般步骤（下）》, https://kexue.fm/archives/9497; "
          "Liu et al., Flow Straight and Fast, arXiv:2209.03003")
PATHS = ("straight", "trigonometric")
STAGES = ("flow matching", "reflow")


@dataclasses.dataclass(frozen=True)
class Config:
    dataset: str = "8gaussians"
    num_train: int = 4096
    num_eval: int = 1000
    euler_steps: tuple[int, ...] = (1, 2, 4, 8)
    hidden: int = 64
    depth: int = 3
    train_steps: int = 1500
    batch_size: int = 256
    reflow_pairs: int = 2048
    reflow_steps: int = 800
    straightness_steps: int = 64
    straightness_points: int = 500
    trajectories: int = 48
    training_seeds: int = 3
    few_steps: tuple[int, ...] = (1, 2)  # where the curved-vs-straight claims are decided
    equivalence_margin: float = 0.05  # sliced W2 difference counted as "the same quality"
    seed: int = 0

    @classmethod
    def quick(cls):
        return cls(num_train=256, num_eval=200, euler_steps=(1, 4), hidden=16, depth=2,
                   train_steps=40, batch_size=64, reflow_pairs=128, reflow_steps=20,
                   straightness_steps=8, straightness_points=64, trajectories=12,
                   training_seeds=1)


def _path(name):
    return LinearPath() if name == "straight" else flows.trigonometric_path()


def _cfm_loss(apply, path, params, x0, key):
    return flows.path_cfm_loss(functools.partial(apply, params), x0, key=key, path=path)


def _reflow_loss(apply, path, params, pair, key):
    return flows.path_rectified_loss(functools.partial(apply, params), pair[0], pair[1], key=key,
                                     path=path)


def _fit(loss, params, batch_data, *, apply, budget, config, key):
    """Trains ``params`` on ``loss``; the debiased EMA as a model whose network is the velocity
    (``method="cfm"``: prior N(0, I) at t = 1, integrated in t down to 0)."""
    result = train.fit(loss, params, batch_data, config=config, key=key, progress=False)
    ema = learned.debiased_ema(result.ema_params, params, decay=config.ema_decay,
                               steps=len(result.history["step"]))
    dim = jax.tree.leaves(batch_data)[0].shape[1]
    return learned.LearnedModel("cfm", apply, ema, budget, dim, result.history)


def _train_pair(name, x_train, *, budget, tc, rc, num_pairs, key, out):
    """Flow matching along path ``name`` and its one reflow, from one training seed (the
    reflow coupling's ODE solve timed as sampling inside the caller's training phase)."""
    k_init, k_fit, k_noise, k_reflow = jax.random.split(key, 4)
    path = _path(name)
    apply, params = learned.init_network(x_train.shape[1], budget, key=k_init)
    first = _fit(functools.partial(_cfm_loss, apply, path), params, x_train, apply=apply,
                 budget=budget, config=tc, key=k_fit)
    noise = jax.random.normal(k_noise, (num_pairs, x_train.shape[1]))
    with out.phase("sampling"):
        x0_hat, x1 = jax.block_until_ready(flows.reflow_pairs(first.velocity(), noise))
    second = _fit(functools.partial(_reflow_loss, apply, path), first.params, (x0_hat, x1),
                  apply=apply, budget=budget, config=rc, key=k_reflow)
    return {"flow matching": first, "reflow": second}


def _interval(values) -> str:
    values = np.asarray(values, np.float64)
    if len(values) < 2:
        return f"{values[0]:.4g} (1 run)"
    half = scipy.stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return f"{values.mean():.4g} [{values.mean() - half:.4g}, {values.mean() + half:.4g}]"


def run(config: Config, out) -> None:
    key = jax.random.key(config.seed)
    k_data, k_train, k_sample, k_metric, k_straight = jax.random.split(key, 5)
    k_tr, k_ev = jax.random.split(k_data)
    x_train = jnp.asarray(data.examples(config.dataset, "train", num=config.num_train, key=k_tr))
    x_eval = jnp.asarray(data.examples(config.dataset, "test", num=config.num_eval, key=k_ev))
    domain = data.domain(config.dataset)
    metric_name = metrics.quality_metric(domain)
    budget = learned.Budget(hidden=config.hidden, depth=config.depth)
    tc = train.TrainConfig(steps=config.train_steps, batch_size=config.batch_size,
                           ema_decay=0.999 if config.train_steps >= 1000 else 0.99,
                           log_every=min(500, config.train_steps))
    rc = dataclasses.replace(tc, steps=config.reflow_steps,
                             ema_decay=0.999 if config.reflow_steps >= 1000 else 0.99,
                             log_every=min(500, config.reflow_steps))
    num = x_eval.shape[0]
    noise = jax.random.normal(k_straight, (config.straightness_points, x_train.shape[1]))
    score = functools.partial(metrics.quality, reference=x_eval, domain=domain, key=k_metric)
    solvers = [("euler", s) for s in config.euler_steps] + [("tsit5", None)]

    rows, seed_models = [], {}
    # value[path][stage][solver label] -> (seeds,); straight[path][stage] -> (seeds,)
    value = {p: {s: {} for s in STAGES} for p in PATHS}
    nfe = {p: {s: {} for s in STAGES} for p in PATHS}
    liu = {p: {s: [] for s in STAGES} for p in PATHS}
    deviation = {p: {s: [] for s in STAGES} for p in PATHS}
    for r in range(config.training_seeds):
        k_seed = jax.random.fold_in(k_train, r)
        for name in PATHS:  # the same seed (initialisation, data order) for both paths
            with out.phase("training"):
                models = _train_pair(name, x_train, budget=budget, tc=tc, rc=rc,
                                     num_pairs=config.reflow_pairs, key=k_seed, out=out)
                jax.block_until_ready([m.params for m in models.values()])
            if r == 0:
                seed_models[name] = models
            for stage, model in models.items():
                row = {"training run": r, "path": name, "stage": stage}
                for solver, steps in solvers:
                    label = f"Euler {steps}" if solver == "euler" else "adaptive"
                    with out.phase("sampling"):
                        sol = jax.block_until_ready(learned.sample(model, num, key=k_sample,
                                                                   solver=solver, steps=steps))
                    with out.phase("evaluation"):
                        q = score(sol.samples)
                    value[name][stage].setdefault(label, []).append(q)
                    nfe[name][stage].setdefault(label, []).append(int(sol.nfe))
                    row[f"{metric_name}, {label}"] = q
                    if solver == "tsit5":
                        row["adaptive NFE"] = int(sol.nfe)
                with out.phase("evaluation"):  # float() reads each mean back to the host
                    st = flows.straightness(model.velocity(), noise,
                                            steps=config.straightness_steps, path=_path(name))
                    liu[name][stage].append(float(jnp.mean(st.straightness)))
                    deviation[name][stage].append(float(jnp.mean(st.path_deviation)))
                row["straightness S"] = liu[name][stage][-1]
                row["path deviation"] = deviation[name][stage][-1]
                rows.append(row)
    labels = [f"Euler {s}" for s in config.euler_steps] + ["adaptive"]
    with out.phase("evaluation"):
        floor = metrics.quality(x_train[:num], x_eval, domain=domain, key=k_metric)

    # ------------------------------------------------------------------ tables
    summary = []
    for name in PATHS:
        for stage in STAGES:
            summary.append({
                "path": name, "stage": stage,
                **{f"{metric_name}, {lab}": _interval(value[name][stage][lab]) for lab in labels},
                "adaptive NFE": f"{np.mean(nfe[name][stage]['adaptive']):.0f}",
                "straightness S": _interval(liu[name][stage]),
                "path deviation": _interval(deviation[name][stage]),
            })
    out.table(summary, stem="curved_reflow",
              caption=f"{config.dataset}: sample quality ({metric_name}, lower is better; the "
              f"train-vs-held-out floor is {floor:.4g}) by Euler steps and with the adaptive "
              "solver (tsit5, rtol = atol = 1e-4), Liu et al.'s straightness S and the deviation "
              f"from the path between each trajectory's own ends ({config.straightness_steps} "
              f"Euler steps, {config.straightness_points} noise draws); mean [95% t interval] "
              f"over {config.training_seeds} training runs.")
    columns = ["training run", "path", "stage", *(f"{metric_name}, {lab}" for lab in labels),
               "adaptive NFE", "straightness S", "path deviation"]
    out.table(rows, stem="runs", columns=columns,
              caption="Every training run (the replicates behind the claims).")
    out.metric(rows=rows, data_floor=floor, metric=metric_name)

    # ------------------------------------------------------------------ figures
    _trajectory_figure(config, out, seed_models, x_eval, key=k_sample)
    _summary_figure(config, out, value, liu, deviation, floor, metric_name)

    # ------------------------------------------------------------------ claims
    arr = {k: {p: {s: np.asarray(v[p][s]) for s in STAGES} for p in PATHS}
           for k, v in (("S", liu), ("D", deviation))}
    measured = {f"straightness S, mean [95% CI] over {config.training_seeds} runs": {
        f"{p}, {s}": _interval(liu[p][s]) for p in PATHS for s in STAGES}}
    for name in PATHS:
        out.claim(f"{config.dataset}: one reflow straightens the {name} path's ODE "
                  "(Liu et al.'s S after < before, paired over training runs)",
                  source=SOURCE, expected="reflow lowers the straightness S",
                  verdict=stats.compare(arr["S"][name]["reflow"],
                                        arr["S"][name]["flow matching"],
                                        alternative="less", paired=True),
                  measured={k: {m: v[m] for m in v if m.startswith(name)}
                            for k, v in measured.items()})
    out.claim(f"{config.dataset}: after reflow the trigonometric ODE follows its own path "
              "(deviation from the path between its ends, after < before)",
              source=SOURCE, expected="reflow makes trajectories follow the chosen path",
              verdict=stats.compare(arr["D"]["trigonometric"]["reflow"],
                                    arr["D"]["trigonometric"]["flow matching"],
                                    alternative="less", paired=True),
              measured={"path deviation": {s: _interval(deviation["trigonometric"][s])
                                           for s in STAGES}})
    out.claim(f"{config.dataset}: after reflow the trigonometric path's S stays above the "
              "straight path's (a reflowed curved ODE is not straight)",
              source=SOURCE, expected="only the straight path reflows towards S = 0",
              verdict=stats.compare(arr["S"]["trigonometric"]["reflow"],
                                    arr["S"]["straight"]["reflow"], alternative="greater",
                                    paired=True),
              measured={k: {m: v[m] for m in v if m.endswith("reflow")}
                        for k, v in measured.items()})
    few = [s for s in config.few_steps if s in config.euler_steps]
    after = {p: {s: np.asarray(value[p]["reflow"][f"Euler {s}"]) for s in few} for p in PATHS}
    quality_measured = {f"{metric_name} after reflow, mean [95% CI]": {
        f"{p}, Euler {s}": _interval(after[p][s]) for p in PATHS for s in few}}
    out.claim(f"{config.dataset}: after reflow, few-step quality of the curved path ≈ the "
              f"straight path's (|Δ {metric_name}| < {config.equivalence_margin} at Euler "
              f"{', '.join(map(str, few))})",
              source=SOURCE, expected="equal few-step quality",
              verdict=stats.all_of(*(stats.equivalent(after["trigonometric"][s],
                                                      after["straight"][s],
                                                      margin=config.equivalence_margin,
                                                      paired=True) for s in few),
                                   names=[f"Euler {s}" for s in few]),
              measured=quality_measured)
    out.claim(f"{config.dataset}: after reflow the straight path beats the curved one at "
              f"Euler {', '.join(map(str, few))}",
              source=SOURCE, expected="straight paths suit few-step Euler",
              verdict=stats.all_of(*(stats.compare(after["straight"][s],
                                                   after["trigonometric"][s],
                                                   alternative="less", paired=True)
                                     for s in few),
                                   names=[f"Euler {s}" for s in few]),
              measured=quality_measured)


def _trajectory_figure(config, out, seed_models, x_eval, *, key):
    """ODE trajectories of training run 0: rows are paths, columns before/after reflow."""
    fig, axes = plt.subplots(len(PATHS), len(STAGES), figsize=(8.4, 8.0), squeeze=False,
                             sharex=True, sharey=True)
    x_T = jax.random.normal(key, (config.trajectories, x_eval.shape[1]))
    for i, name in enumerate(PATHS):
        for j, stage in enumerate(STAGES):
            ax = axes[i, j]
            model = seed_models[name][stage]
            with out.phase("sampling"):
                sol = generate(model.velocity(), x_T, 1.0, t_end=0.0, solver="euler",
                               steps=config.straightness_steps,
                               save_trajectory=config.straightness_steps)
                xs = np.asarray(sol.xs)  # (K + 1, B, 2), from t = 1 to t = 0
            ax.scatter(*np.asarray(x_eval).T, s=2, color="0.75", zorder=0,
                       label="held-out data")
            for b in range(xs.shape[1]):
                ax.plot(xs[:, b, 0], xs[:, b, 1], color="C0", lw=0.7, alpha=0.7)
            ax.scatter(*xs[0].T, s=8, color="C1", zorder=3, label="noise x₁ (t = 1)")
            ax.scatter(*xs[-1].T, s=8, color="C3", zorder=3, label="sample x̂₀ (t = 0)")
            ax.set_title(f"{name} path, {stage}", fontsize=10)
            ax.set_aspect("equal")
    axes[0, 0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    out.figure(fig, "trajectories",
               caption=f"Training run 0: ODE trajectories from noise (orange) to samples (red), "
               f"{config.straightness_steps} Euler steps, over held-out data (grey). Reflow "
               "straightens the straight path's trajectories; the trigonometric path's "
               "reflowed trajectories follow its quarter ellipses cos(πt/2) x̂₀ + sin(πt/2) x₁, "
               "which swing outwards (by up to √2) before turning back to x̂₀.")


def _summary_figure(config, out, value, liu, deviation, floor, metric_name):
    fig, (ax_q, ax_s) = plt.subplots(1, 2, figsize=(11.5, 4.3))
    steps = np.asarray(config.euler_steps)
    for i, name in enumerate(PATHS):
        for stage, style in zip(STAGES, ("--", "-"), strict=True):
            v = np.stack([np.asarray(value[name][stage][f"Euler {s}"]) for s in steps])
            for k in range(v.shape[1]):
                ax_q.plot(steps, v[:, k], style, color=f"C{i}", alpha=0.25, lw=0.7)
            ax_q.plot(steps, v.mean(axis=1), style, marker="o" if stage == "reflow" else "s",
                      ms=4, color=f"C{i}", label=f"{name}, {stage}")
            adaptive = np.mean(value[name][stage]["adaptive"])
            ax_q.axhline(adaptive, color=f"C{i}", ls=style, lw=0.6, alpha=0.6)
    ax_q.axhline(floor, color="0.4", ls=":", lw=1, label="train vs held-out data")
    ax_q.set_xscale("log", base=2)
    ax_q.set_yscale("log")
    ax_q.set_xticks(steps, [str(s) for s in steps])
    ax_q.set_xlabel("Euler steps (NFE)")
    ax_q.set_ylabel(f"{metric_name} (lower is better)")
    ax_q.set_title("Sample quality; thin horizontal lines: adaptive solver", fontsize=10)
    ax_q.legend(fontsize=7, handlelength=3.5)

    width = 0.2
    x = np.arange(len(PATHS))
    bars = [("S", liu, "flow matching", 0), ("S", liu, "reflow", 1),
            ("path deviation", deviation, "flow matching", 2),
            ("path deviation", deviation, "reflow", 3)]
    for label, source, stage, k in bars:
        means = [np.mean(source[p][stage]) for p in PATHS]
        ax_s.bar(x + (k - 1.5) * width, means, width, color=f"C{k}",
                 label=f"{label}, {stage}", alpha=0.9)
        for p_i, p in enumerate(PATHS):
            ax_s.scatter(np.full(len(source[p][stage]), x[p_i] + (k - 1.5) * width),
                         source[p][stage], s=8, color="k", zorder=3)
    ax_s.set_xticks(x, [f"{p} path" for p in PATHS])
    ax_s.set_yscale("log")
    ax_s.set_ylabel("mean over noise draws (log scale)")
    ax_s.set_title("Straightness S (Liu et al.) and deviation from the chosen path;\n"
                   "dots: training runs", fontsize=10)
    ax_s.legend(fontsize=7)
    fig.tight_layout()
    out.figure(fig, "quality_straightness",
               caption=f"Left: {metric_name} against Euler steps, before (dashed) and after "
               f"(solid) one reflow, mean of {config.training_seeds} training runs (thin: each "
               "run); the adaptive solver as thin horizontal lines. Right: straightness S and "
               "the deviation from the chosen path (equal for the straight path), lower is "
               "straighter.")
