"""Quality against NFE: PFGM's protocol (gravity vs the VP probability-flow ODE, Euler at NFE 10,
20, 50, 100), and as an extension flow matching and one reflow at fewer Euler steps.

PFGM's protocol (Xu et al., NeurIPS 2022, arXiv:2209.11178): each model is integrated with
Euler in its own backward variable. Gravity in :math:`s = \log t` (``learned.sample``'s gravity
default, ``GravityAlgorithm.time == "log"``: equal steps in :math:`\log t` from :math:`\log T`
to :math:`\log t_\min`, PFGM's :math:`z\to\log z`), VP in :math:`t` from 1 down to
:math:`\varepsilon = 10^{-3}`. Its claim is decided on the training replicates: gravity's
quality degrades less than VP's from the largest NFE to the smallest (paired over training
runs). The CFM and reflow rows at 4..128 Euler steps go beyond the paper's protocol.
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
from diffusionlab.odes import learned, plots

TITLE = ("Sample quality vs NFE: PFGM's protocol (gravity vs VP-ODE, Euler NFE 10-100) and, as an "
         "extension, CFM and reflow at 4-128 Euler steps")
SOURCE = ("PFGM (arXiv:2209.11178) as explained in 《生成扩散模型漫谈（十三）》, "
          "https://kexue.fm/archives/9305")
# One pre-declared configuration per method: each integrates in its own time variable, gravity
# in log t as PFGM does. Gravity in t (the earlier rule's second try) is scored only at the
# coarsest grid of training run 0, to evaluate that earlier rule.
METHODS = ("gravity (log t)", "vp", "cfm", "reflow")
SECOND_TRY = "gravity (t)"
# PFGM's protocol: gravity and the VP probability flow, each in its own backward variable.
PROTOCOL = {"gravity (log t)": "gravity", "vp (t)": "vp"}
PFGM_SOURCE = ("PFGM, Xu et al., NeurIPS 2022 (arXiv:2209.11178), Euler at NFE 10-100 vs the VP "
               "probability-flow ODE; 《生成扩散模型漫谈（十三）》, https://kexue.fm/archives/9305")
EXTENSION = "extension (beyond PFGM's protocol)"


@dataclasses.dataclass(frozen=True)
class Config:
    datasets: tuple[str, ...] = ("8gaussians", "two_moons", "digits")
    num_train: int = 4096
    num_eval: int = 1000
    euler_steps: tuple[int, ...] = (4, 8, 16, 32, 64, 128)
    protocol_nfe: tuple[int, ...] = (10, 20, 50, 100)  # PFGM's Euler NFEs (gravity vs VP)
    hidden: int = 128
    depth: int = 3
    train_steps: int = 2000
    batch_size: int = 256
    reflow_pairs: int = 2048
    reflow_steps: int = 1000
    gravity_T: float = 40.0
    training_seeds: int = 3  # every method trained this many times, on the replicated datasets
    replicated: tuple[str, ...] = ("8gaussians",)  # the datasets whose claims are decided
    seed: int = 0

    @classmethod
    def quick(cls):
        return cls(datasets=("8gaussians",), num_train=256, num_eval=200, euler_steps=(8,),
                   protocol_nfe=(10, 100),
                   hidden=32, depth=2, train_steps=60, batch_size=128, reflow_pairs=256,
                   reflow_steps=30, training_seeds=2)


def _dataset(name, config, key):
    """Training and held-out examples as ``(N, D)`` vectors (digits flattened to D = 64)."""
    k_train, k_eval = jax.random.split(key)
    x_train = data.examples(name, "train", num=config.num_train, key=k_train)
    x_eval = data.examples(name, "test", num=config.num_eval, key=k_eval)
    return (jnp.asarray(x_train.reshape(x_train.shape[0], -1)),
            jnp.asarray(x_eval.reshape(x_eval.shape[0], -1)))


def _sample_score(name, model, *, reference, k_sample, k_metric, out, time=None, **solver):
    """(NFE, score) of ``model``'s samples, as many as ``reference`` holds."""
    with out.phase("sampling"):
        sol = learned.sample(model, reference.shape[0], key=k_sample, time=time, **solver)
        jax.block_until_ready(sol)
    with out.phase("evaluation"):
        return int(sol.nfe), metrics.quality(sol.samples, reference, domain=data.domain(name),
                                             key=k_metric)


def _train(config, x_train, *, budget, tc, rc, k_init, k_reflow) -> dict:
    """The four methods trained from one seed, by name in ``METHODS``."""
    models = {m: learned.fit(m, x_train, budget=budget, config=tc, key=k_init)
              for m in ("gravity", "vp", "cfm")}
    models["reflow"] = learned.fit_reflow(models["cfm"], config.reflow_pairs, config=rc,
                                          key=k_reflow)
    return {"gravity (log t)": models["gravity"], **{m: models[m] for m in METHODS[1:]}}


def run(config: Config, out) -> None:
    key = jax.random.key(config.seed)
    budget = learned.Budget(hidden=config.hidden, depth=config.depth,
                            gravity_T=config.gravity_T)
    tc = train.TrainConfig(steps=config.train_steps, batch_size=config.batch_size,
                           ema_decay=0.999 if config.train_steps >= 2000 else 0.99,
                           log_every=min(500, config.train_steps))
    rc = dataclasses.replace(tc, steps=config.reflow_steps,
                             log_every=min(500, config.reflow_steps))
    coarse = min(config.euler_steps)
    floors = {}
    rows, seed_rows, protocol_rows = [], [], []
    fig, axes = plt.subplots(1, len(config.datasets), figsize=(5.2 * len(config.datasets), 4),
                             squeeze=False)
    for ax, name in zip(axes[0], config.datasets, strict=True):
        k_data, k_init, k_reflow, k_sample, k_metric, key = jax.random.split(key, 6)
        x_train, x_eval = _dataset(name, config, k_data)
        num = min(config.num_eval, x_eval.shape[0])
        metric_name = metrics.quality_metric(data.domain(name))
        curves, markers = {}, {}

        score = functools.partial(_sample_score, name, reference=x_eval[:num],
                                  k_sample=k_sample, k_metric=k_metric, out=out)
        seeds = config.training_seeds if name in config.replicated else 1
        for r in range(seeds):
            # Training run r: its own initialisation, data order and reflow couplings (all from
            # its keys); the same data and sampling keys.
            with out.phase("training"):
                models = _train(config, x_train, budget=budget, tc=tc, rc=rc,
                                k_init=k_init if r == 0 else jax.random.fold_in(k_init, r),
                                k_reflow=k_reflow if r == 0 else jax.random.fold_in(k_reflow, r))
            for method, base in PROTOCOL.items():  # PFGM's protocol, every training run
                model = models["gravity (log t)" if base == "gravity" else base]
                for steps in config.protocol_nfe:
                    nfe, value = score(model, solver="euler", steps=steps)
                    protocol_rows.append({"dataset": name, "training run": r, "method": method,
                                          "steps": steps, "NFE": nfe, metric_name: value})
            if r == 0:  # the whole curve, and the adaptive solve
                for method, model in models.items():
                    nfes, values = [], []
                    for steps in config.euler_steps:
                        nfe, value = score(model, solver="euler", steps=steps)
                        rows.append({"dataset": name, "method": method, "solver": "euler",
                                     "steps": steps, "NFE": nfe, metric_name: value})
                        nfes.append(nfe)
                        values.append(value)
                    nfe, value = score(model, solver="tsit5")
                    rows.append({"dataset": name, "method": method, "solver": "tsit5 (adaptive)",
                                 "steps": "—", "NFE": nfe, metric_name: value})
                    curves[method], markers[method] = (nfes, values), (nfe, value)
                _, value = score(models["gravity (log t)"], time="linear", solver="euler",
                                 steps=coarse)
                seed_rows.append({"dataset": name, "training run": 0,
                                  "method": SECOND_TRY, "steps": coarse, metric_name: value})
            for method, model in models.items():
                value = (next(row[metric_name] for row in rows if row["dataset"] == name
                              and row["method"] == method and row["steps"] == coarse)
                         if r == 0 else score(model, solver="euler", steps=coarse)[1])
                seed_rows.append({"dataset": name, "training run": r,
                                  "method": method, "steps": coarse, metric_name: value})
        with out.phase("evaluation"):
            floor = metrics.quality(x_train[:num], x_eval[:num], domain=data.domain(name),
                                    key=k_metric)
        ax.axhline(floor, color="0.5", ls=":", lw=1, label="train vs test data")
        plots.metric_curves(curves, markers=markers, ax=ax, xlabel="NFE",
                            ylabel=metric_name, title=f"{name}: Euler (lines), adaptive (★)")
        rows.append({"dataset": name, "method": "data floor", "solver": "—", "steps": "—",
                     "NFE": 0, metric_name: floor})
        floors[name] = floor
    fig.tight_layout()
    out.figure(fig, "nfe_quality", caption=f"{EXTENSION}: quality against NFE with one MLP "
               "budget (training run 0), all four methods. Gravity is integrated in log t "
               "(PFGM's choice), the others in t. Dotted: the train-vs-held-out floor.")
    _protocol(config, out, protocol_rows, floors)
    columns = ["dataset", "method", "solver", "steps", "NFE", "sliced W2", "FD-digits"]
    out.table(rows, stem="nfe_quality", columns=[c for c in columns if any(c in r for r in rows)],
              caption=f"{EXTENSION}: sample quality by method and solver (lower is "
              "better), training run 0.")
    columns = ["dataset", "training run", "method", "steps", "sliced W2", "FD-digits"]
    out.table(seed_rows, stem="coarse_steps",
              columns=[c for c in columns if any(c in r for r in seed_rows)],
              caption=f"Every training run at {coarse} Euler steps: the replicates behind the "
              f"claims (lower is better); {SECOND_TRY}: run 0 only, for the earlier rule.")
    out.metric(rows=rows, coarse_rows=seed_rows, protocol_rows=protocol_rows)
    for name in config.datasets:
        metric_name = metrics.quality_metric(data.domain(name))
        mine = [r for r in seed_rows if r["dataset"] == name]
        per_seed = {m: np.array([r[metric_name] for r in mine if r["method"] == m])
                    for m in METHODS + (SECOND_TRY,)}
        at = {m: v[0] for m, v in per_seed.items()}  # training run 0: the earlier rules
        gravity = per_seed["gravity (log t)"]
        rivals = METHODS[1:]
        summary = {m: (f"{v.mean():.4g} ± {v.std(ddof=1):.2g}" if len(v) > 1 else f"{v[0]:.4g}")
                   for m, v in per_seed.items() if m in METHODS}
        measured = {f"{metric_name} at {coarse} Euler steps, "
                    + (f"mean ± sd over {len(gravity)} training runs" if len(gravity) > 1
                       else "one training run"): summary}
        if name in config.replicated:
            robust = stats.all_of(*(stats.compare(gravity, per_seed[m], alternative="less",
                                                  paired=True) for m in rivals),
                                  names=[f"gravity (log t) below {m}" for m in rivals],
                                  claim="paired t 95% CI over training runs of gravity (log t) "
                                  "− each other method < 0")
            straight = stats.compare(per_seed["reflow"], per_seed["cfm"], alternative="less",
                                     paired=True)
        else:
            reason = (f"not replicated at this size: {config.training_seeds} training runs per "
                      f"method run for {', '.join(config.replicated) or 'no dataset'} only "
                      "(CPU budget); one model per method here")
            robust = stats.undecided(reason, estimate=float(gravity[0] - min(
                per_seed[m][0] for m in rivals)), n=1)
            straight = stats.undecided(reason, estimate=float(per_seed["reflow"][0]
                                                              - per_seed["cfm"][0]), n=1)
        out.claim(f"{name}: {EXTENSION}: gravity (PFGM) is robust to large Euler steps, "
                  f"against CFM and reflow at {coarse} steps",
                  source=SOURCE, expected=f"gravity best at {coarse} Euler steps",
                  verdict=robust, measured=measured,
                  # the earlier rule: the better of gravity's two time variables, ties held
                  previous=min(at["gravity (log t)"], at[SECOND_TRY]) <= min(
                      at[m] for m in METHODS))
        out.claim(f"{name}: {EXTENSION}: one reflow straightens the flow (better than cfm at "
                  f"{coarse} steps)",
                  source="《生成扩散模型漫谈（十七）》, https://kexue.fm/archives/9497",
                  expected="reflow beats cfm at few steps", verdict=straight,
                  measured={k: {m: v[m] for m in ("reflow", "cfm")} for k, v in measured.items()},
                  previous=at["reflow"] < at["cfm"])


def _interval(values: np.ndarray) -> str:
    """``mean [95% t interval]`` over training runs (the value alone for one run)."""
    if len(values) < 2:
        return f"{values[0]:.4g} (1 run)"
    half = scipy.stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return f"{values.mean():.4g} [{values.mean() - half:.4g}, {values.mean() + half:.4g}]"


def _protocol(config: Config, out, protocol_rows, floors) -> None:
    """PFGM's protocol: table, figure and claims, gravity (log t) vs VP (t) at Euler NFEs."""
    lo, hi = min(config.protocol_nfe), max(config.protocol_nfe)
    table, curves = [], {}
    for name in config.datasets:
        metric_name = metrics.quality_metric(data.domain(name))
        mine = [r for r in protocol_rows if r["dataset"] == name]
        runs = sorted({r["training run"] for r in mine})
        # value[method][steps]: (runs,) in training-run order
        value = {m: {s: np.array([next(r[metric_name] for r in mine if r["method"] == m
                                       and r["steps"] == s and r["training run"] == k)
                                  for k in runs]) for s in config.protocol_nfe}
                 for m in PROTOCOL}
        curves[name] = value
        for s in config.protocol_nfe:
            nfe = {m: next(r["NFE"] for r in mine if r["method"] == m and r["steps"] == s)
                   for m in PROTOCOL}
            table.append({"dataset": name, "Euler steps": s,
                          **{f"{m}: NFE": nfe[m] for m in PROTOCOL},
                          **{f"{m}: {metric_name}": _interval(value[m][s]) for m in PROTOCOL},
                          "runs": len(runs)})
        grav, vp_ = value["gravity (log t)"], value["vp (t)"]
        degrade = {m: value[m][lo] - value[m][hi] for m in PROTOCOL}
        measured = {f"{metric_name}, mean [95% CI] over {len(runs)} training run(s)": {
            f"{m} at NFE {s}": _interval(value[m][s]) for m in PROTOCOL for s in (lo, hi)},
            f"degradation NFE {hi} → {lo}": {m: _interval(v) for m, v in degrade.items()}}
        if name in config.replicated:
            less_decay = stats.compare(degrade["gravity (log t)"], degrade["vp (t)"],
                                       alternative="less", paired=True)
            better = stats.compare(grav[lo], vp_[lo], alternative="less", paired=True)
        else:
            reason = (f"not replicated at this size: {config.training_seeds} training runs "
                      f"for {', '.join(config.replicated) or 'no dataset'} only (CPU budget)")
            less_decay = stats.undecided(reason, n=1, estimate=float(
                degrade["gravity (log t)"][0] - degrade["vp (t)"][0]))
            better = stats.undecided(reason, n=1, estimate=float(grav[lo][0] - vp_[lo][0]))
        out.claim(f"{name}: PFGM protocol: gravity's {metric_name} degrades less than VP's from "
                  f"Euler NFE {hi} to NFE {lo} (paired over training runs)",
                  source=PFGM_SOURCE, expected="PFGM robust to large Euler steps, VP-ODE degrades",
                  verdict=less_decay, measured=measured)
        out.claim(f"{name}: PFGM protocol: gravity below VP at Euler NFE {lo}",
                  source=PFGM_SOURCE, expected="PFGM better than VP-ODE at few Euler steps",
                  verdict=better, measured={k: v for k, v in measured.items()
                                            if k.startswith(metric_name)})
    metric_names = [metrics.quality_metric(data.domain(n)) for n in config.datasets]
    columns = ["dataset", "Euler steps", *(f"{m}: NFE" for m in PROTOCOL),
               *(f"{m}: {k}" for k in dict.fromkeys(metric_names) for m in PROTOCOL), "runs"]
    out.table(table, stem="pfgm_protocol", columns=[c for c in columns
                                                    if any(c in r for r in table)],
              caption="PFGM's protocol: Euler at fixed NFE, gravity in log t (T = "
              f"{config.gravity_T} → 1e-3) and the VP probability flow in t (1 → 1e-3); mean "
              "[95% t interval] over training runs (lower is better).")
    fig, axes = plt.subplots(1, len(config.datasets), figsize=(4.6 * len(config.datasets), 3.8),
                             squeeze=False)
    for ax, name, metric_name in zip(axes[0], config.datasets, metric_names, strict=True):
        steps = np.array(config.protocol_nfe)
        for i, (m, by_step) in enumerate(curves[name].items()):
            v = np.stack([by_step[s] for s in config.protocol_nfe])  # (steps, runs)
            for k in range(v.shape[1]):
                ax.plot(steps, v[:, k], color=f"C{i}", alpha=0.35, lw=0.8)
            ax.plot(steps, v.mean(axis=1), "o-", color=f"C{i}", ms=4,
                    label=f"{m} (mean of {v.shape[1]})" if v.shape[1] > 1 else m)
        ax.axhline(floors[name], color="0.5", ls=":", lw=1, label="train vs test data")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(steps, [str(s) for s in steps])
        ax.set_xlabel("NFE (Euler steps)")
        ax.set_ylabel(f"{metric_name} (lower is better)")
        ax.set_title(f"{name}: PFGM protocol", fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    out.figure(fig, "pfgm_protocol", caption="PFGM's protocol: quality against Euler NFE, "
               "gravity in log t and VP in t. Thin lines: each training run; thick: their mean; "
               "dotted: the train-vs-held-out floor.")
