r"""Quality against NFE: PFGM's protocol (gravity vs the VP probability-flow ODE, Euler at NFE 10,
20, 50, 100), and as an extension flow matching and one reflow at fewer Euler steps.

PFGM's protocol (Xu et al., NeurIPS 2022, arXiv:2209.11178): each model is integrated with
Euler in its own backward variable. Gravity in :math:`s = \log t` (``learned.sample``'s gravity
default, ``GravityAlgorithm.time == "log"``: equal steps in :math:`\log t` from :math:`\log T`
to :math:`\log t_\min`, PFGM's :math:`z\to\log z`), VP in :math:`t` from 1 down to
:math:`\varepsilon = 10^{-3}`. Its claim is decided on the training replicates: gravity's
quality degrades less than VP's from the largest NFE to the smallest (paired over training
runs). The CFM and reflow rows at 4..128 Euler steps go beyond the paper's protocol.

Network error against method error: on ``exact_datasets`` each method (reflow aside) is also
sampled with the exact marginal field of its training set in place of the network
(:mod:`diffusionlab.odes.exact_fields`), from the same prior draws with the same solver, so
that network − exact is the network's error; the exact field's distance to the memorisation
floor (as many training points drawn with replacement, mean ± std over draws) is the
method's and the solver's, beyond one prior draw's noise. The training-loss curves of every
model are plotted, and each dataset has a claim that every model reached a plateau.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import matplotlib.ticker as ticker
import numpy as np
import scipy.stats

from diffusionlab import data, metrics, stats, train
from diffusionlab.odes import exact_fields, learned, memorisation, plots

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
# The methods with an exact field of the training set (reflow's target depends on the first
# model's couplings), by their name in METHODS.
ORACLE_METHODS = ("gravity (log t)", "vp", "cfm")
ADAPTIVE = "tsit5 (adaptive)"


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
    # Exact-field rows (network vs the exact marginal field of the training set), adaptive
    # and Euler at protocol_nfe, on these datasets; as many samples as the network rows.
    exact_datasets: tuple[str, ...] = ("8gaussians", "digits")
    exact_nfe: tuple[int, ...] = (10, 20, 50, 100)  # their Euler steps (and the adaptive solve)
    plateau_window: float = 0.1  # the loss windows compared: last 10% of steps vs the 10% before
    plateau_margin: float = 0.02  # a plateau: the last window's mean loss < 2% below the one before
    seed: int = 0

    @classmethod
    def quick(cls):
        return cls(datasets=("8gaussians",), num_train=256, num_eval=200, euler_steps=(8,),
                   protocol_nfe=(10, 20),
                   hidden=32, depth=2, train_steps=60, batch_size=128, reflow_pairs=256,
                   reflow_steps=30, training_seeds=2, exact_datasets=("8gaussians",),
                   exact_nfe=())


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


def _exact_score(name, model, x_train, *, reference, k_sample, k_metric, out, **solver):
    """(NFE, score) of ``model``'s method sampled with the exact field of ``x_train`` in place
    of its network: the same prior draws (same key and count) and solver as
    :func:`_sample_score`."""
    with out.phase("sampling"):
        sol = exact_fields.sample_exact(model, x_train, reference.shape[0], key=k_sample,
                                        **solver)
        jax.block_until_ready(sol)
    with out.phase("evaluation"):
        return int(sol.nfe), metrics.quality(sol.samples, reference, domain=data.domain(name),
                                             key=k_metric)


def _memo(fn):
    """``fn(model, **solver)`` keeping its results by model and solver: within one training
    run (whose models stay alive, so that their ids are distinct) a score is computed once."""
    cache = {}

    def call(model, **solver):
        k = (id(model), tuple(sorted(solver.items())))
        if k not in cache:
            cache[k] = fn(model, **solver)
        return cache[k]

    return call


def _solves(config):
    """The solves of the exact-field comparison: ``(solver label, steps, solver kwargs)``."""
    return [(ADAPTIVE, "—", {"solver": "tsit5"})] + [
        ("euler", s, {"solver": "euler", "steps": s}) for s in config.exact_nfe]


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
    floors, memorised = {}, {}
    rows, seed_rows, protocol_rows, oracle_rows = [], [], [], []
    histories = {}  # histories[dataset][method]: the per-step training losses of each run
    fig, axes = plt.subplots(1, len(config.datasets), figsize=(5.2 * len(config.datasets), 4),
                             squeeze=False)
    for ax, name in zip(axes[0], config.datasets, strict=True):
        k_data, k_init, k_reflow, k_sample, k_metric, key = jax.random.split(key, 6)
        x_train, x_eval = _dataset(name, config, k_data)
        num = min(config.num_eval, x_eval.shape[0])
        metric_name = metrics.quality_metric(data.domain(name))
        curves, markers = {}, {}

        score_any = functools.partial(_sample_score, name, reference=x_eval[:num],
                                      k_sample=k_sample, k_metric=k_metric, out=out)
        exact_score = functools.partial(_exact_score, name, x_train=x_train,
                                        reference=x_eval[:num], k_sample=k_sample,
                                        k_metric=k_metric, out=out)
        seeds = config.training_seeds if name in config.replicated else 1
        for r in range(seeds):
            # Training run r: its own initialisation, data order and reflow couplings (all from
            # its keys); the same data and sampling keys.
            with out.phase("training"):
                models = _train(config, x_train, budget=budget, tc=tc, rc=rc,
                                k_init=k_init if r == 0 else jax.random.fold_in(k_init, r),
                                k_reflow=k_reflow if r == 0 else jax.random.fold_in(k_reflow, r))
            score = _memo(score_any)
            for method, model in models.items():
                histories.setdefault(name, {}).setdefault(method, []).append(
                    np.asarray(model.history["loss"], np.float64))
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
            if name in config.exact_datasets:  # each network, then (run 0) its exact field
                fields = [("network", r, score)] + ([("exact field", "—", exact_score)]
                                                    if r == 0 else [])
                for field, run, fn in fields:
                    for method in ORACLE_METHODS:
                        for solver, steps, kwargs in _solves(config):
                            nfe, value = fn(models[method], **kwargs)
                            oracle_rows.append({"dataset": name, "method": method,
                                                "field": field, "training run": run,
                                                "solver": solver, "steps": steps, "NFE": nfe,
                                                metric_name: value})
        with out.phase("evaluation"):
            floor = metrics.quality(x_train[:num], x_eval[:num], domain=data.domain(name),
                                    key=k_metric)
        ax.axhline(floor, color="0.5", ls=":", lw=1, label="train vs test data")
        plots.metric_curves(curves, markers=markers, ax=ax, xlabel="NFE",
                            ylabel=metric_name, title=f"{name}: Euler (lines), adaptive (★)")
        rows.append({"dataset": name, "method": "data floor", "solver": "—", "steps": "—",
                     "NFE": 0, metric_name: floor})
        floors[name] = floor
        if name in config.exact_datasets:  # what a perfect memoriser scores, draw to draw
            with out.phase("evaluation"):
                memorised[name] = memorisation.memorisation_floor(
                    x_train, x_eval[:num], num, domain=data.domain(name),
                    key=jax.random.fold_in(k_metric, 1), metric_key=k_metric)
    fig.tight_layout()
    out.figure(fig, "nfe_quality", caption=f"{EXTENSION}: quality against NFE with one MLP "
               "budget (training run 0), all four methods. Gravity is integrated in log t "
               "(PFGM's choice), the others in t. Dotted: the train-vs-held-out floor.")
    _protocol(config, out, protocol_rows, floors)
    _oracle(config, out, oracle_rows, floors, memorised)
    plateau_rows = _training_curves(config, out, histories)
    columns = ["dataset", "method", "solver", "steps", "NFE", "sliced W2", "FD-digits"]
    out.table(rows, stem="nfe_quality", columns=[c for c in columns if any(c in r for r in rows)],
              caption=f"{EXTENSION}: sample quality by method and solver (lower is "
              "better), training run 0.")
    columns = ["dataset", "training run", "method", "steps", "sliced W2", "FD-digits"]
    out.table(seed_rows, stem="coarse_steps",
              columns=[c for c in columns if any(c in r for r in seed_rows)],
              caption=f"Every training run at {coarse} Euler steps: the replicates behind the "
              f"claims (lower is better); {SECOND_TRY}: run 0 only, for the earlier rule.")
    out.metric(rows=rows, coarse_rows=seed_rows, protocol_rows=protocol_rows,
               oracle_rows=oracle_rows, plateau_rows=plateau_rows,
               memorisation_floor={n: {"mean": f.mean, "std": f.std, "scores": f.scores}
                                   for n, f in memorised.items()})
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


ORACLE_CAPTION = (
    "Exact field: each method sampled with the exact marginal field of the training set in "
    "place of its network (gravity: the empirical field's direction; VP: the probability flow "
    "of the Gaussian-mixture score; CFM: the straight-path marginal velocity), from the same "
    "prior draws with the same solver. It memorises (its samples land on training points), so "
    "at best it scores like the training set itself: it is the reference for the network, not "
    "a generaliser. network − exact: the network's error (paired: the same prior draws). The "
    "memorisation floor is the score of as many training points drawn with replacement (mean "
    "± std over 20 draws): one prior draw of a perfect memoriser scores within a few std of "
    "it, so 'exact − memorisation floor (std)' above ~2 is the method's and the solver's "
    "error, below it the draw's noise. Reflow has no exact field (its couplings come from the "
    "cfm network).")


def _in_std(value: float, floor) -> str:
    """``value`` − the memorisation floor's mean, in units of its std ("—" without spread)."""
    return f"{(value - floor.mean) / floor.std:+.2f}" if floor.std > 0 else "—"


def _oracle(config: Config, out, oracle_rows, floors, memorised) -> None:
    """Networks against their exact fields: table, figure and claims, per dataset."""
    names = [n for n in config.datasets if n in config.exact_datasets]
    if not names:
        return
    table = []
    fig, axes = plt.subplots(1, len(names), figsize=(5.0 * len(names), 3.8), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        metric_name = metrics.quality_metric(data.domain(name))
        mine = [r for r in oracle_rows if r["dataset"] == name]

        def pick(method, field, solver, steps, mine=mine):
            return [r for r in mine if r["method"] == method and r["field"] == field
                    and r["solver"] == solver and r["steps"] == steps]

        errors = {}  # errors[method]: (runs,) network − exact, adaptive solver
        for i, method in enumerate(ORACLE_METHODS):
            line = {"network": ([], []), "exact field": ([], [])}
            for solver, steps, _ in _solves(config):
                net = pick(method, "network", solver, steps)
                exact = pick(method, "exact field", solver, steps)[0]
                v = np.array([r[metric_name] for r in net])
                err = v - exact[metric_name]
                if solver == ADAPTIVE:
                    errors[method] = err
                table.append({"dataset": name, "method": method, "solver": solver,
                              "steps": steps, "NFE (network, run 0)": net[0]["NFE"],
                              "NFE (exact)": exact["NFE"], "metric": metric_name,
                              "network": _interval(v), "exact field": f"{exact[metric_name]:.4g}",
                              "network − exact": _interval(err),
                              "exact − floor": f"{exact[metric_name] - floors[name]:.4g}",
                              "memorisation floor": (f"{memorised[name].mean:.4g} ± "
                                                     f"{memorised[name].std:.2g}"),
                              "exact − memorisation floor (std)": _in_std(
                                  exact[metric_name], memorised[name]),
                              "runs": len(v)})
                if solver == "euler":
                    line["network"][0].append(steps)
                    line["network"][1].append(v.mean())
                    line["exact field"][0].append(steps)
                    line["exact field"][1].append(exact[metric_name])
                else:
                    star = (v.mean(), exact[metric_name])
            ax.plot(*line["network"], "o-", color=f"C{i}", ms=4, label=f"{method}: network")
            ax.plot(*line["exact field"], "s--", color=f"C{i}", ms=4, mfc="none",
                    label=f"{method}: exact field")
            right = max(config.exact_nfe, default=10) * 1.6
            ax.plot([right], [star[0]], "*", color=f"C{i}", ms=10)
            ax.plot([right], [star[1]], "*", color=f"C{i}", ms=10, mfc="none")
        ax.axhline(floors[name], color="0.5", ls=":", lw=1, label="train vs test data")
        memo = memorised[name]
        ax.axhspan(memo.mean - memo.std, memo.mean + memo.std, color="0.85", zorder=0,
                   label="memorisation floor ± std")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ticks = list(config.exact_nfe) + [max(config.exact_nfe, default=10) * 1.6]
        ax.set_xticks(ticks, [str(s) for s in config.exact_nfe] + ["adaptive"])
        ax.minorticks_off()
        ax.set_xlabel("Euler steps (NFE), and the adaptive solve (★)")
        ax.set_ylabel(f"{metric_name} (lower is better)")
        ax.set_title(f"{name}: network (filled) vs exact field (open)", fontsize=10)
        ax.legend(fontsize=6.5)
        runs = len(errors["cfm"])
        measured = {f"{metric_name} network − exact field, adaptive, mean [95% CI] over {runs} "
                    "training run(s)": {m: _interval(e) for m, e in errors.items()},
                    f"exact field − data floor ({floors[name]:.4g}), adaptive": {
                        m: next(r["exact − floor"] for r in table if r["dataset"] == name
                                and r["method"] == m and r["solver"] == ADAPTIVE)
                        for m in ORACLE_METHODS},
                    f"exact field − memorisation floor ({memorised[name].mean:.4g} ± "
                    f"{memorised[name].std:.2g}) in std, adaptive": {
                        m: next(r["exact − memorisation floor (std)"] for r in table
                                if r["dataset"] == name and r["method"] == m
                                and r["solver"] == ADAPTIVE)
                        for m in ORACLE_METHODS}}
        for method in ORACLE_METHODS[:2]:
            if runs >= 2:
                verdict = stats.compare(errors[method], errors["cfm"], alternative="greater",
                                        paired=True)
            else:
                verdict = stats.undecided(
                    f"one training run on {name} (training runs are replicated on "
                    f"{', '.join(config.replicated) or 'no dataset'} only, CPU budget): no "
                    "interval over training runs", n=1,
                    estimate=float(errors[method][0] - errors["cfm"][0]))
            out.claim(f"{name}: {method}'s network error (network − exact field, adaptive "
                      "solver) exceeds cfm's, paired over training runs",
                      source="issue §4: network error vs method error, with the exact "
                      "fields as oracles",
                      expected="the lag of gravity and VP behind CFM is network error",
                      verdict=verdict, measured=measured)
    fig.tight_layout()
    out.figure(fig, "exact_fields", caption="Each network (filled, mean over training runs) "
               "against its method's exact field (open) with Euler at "
               f"{', '.join(map(str, config.exact_nfe)) or 'no'} steps and with the adaptive "
               "solver (★, right). " + ORACLE_CAPTION)
    columns = ["dataset", "method", "solver", "steps", "NFE (network, run 0)", "NFE (exact)",
               "metric", "network", "exact field", "network − exact", "exact − floor",
               "memorisation floor", "exact − memorisation floor (std)", "runs"]
    out.table(table, stem="exact_fields", columns=columns,
              caption="Network vs exact field, same prior draws and solver (lower is better); "
              "network: mean [95% t interval] over training runs. " + ORACLE_CAPTION)


def _smooth(values: np.ndarray, width: int) -> np.ndarray:
    """Moving average over ``width`` steps (valid part only)."""
    width = max(1, min(width, len(values)))
    return np.convolve(values, np.ones(width) / width, mode="valid")


def _training_curves(config: Config, out, histories) -> list[dict]:
    """The training-loss curves of every model, and whether each reached a plateau."""
    frac, margin = config.plateau_window, config.plateau_margin
    rows = []
    fig, axes = plt.subplots(len(config.datasets), len(METHODS),
                             figsize=(3.3 * len(METHODS), 2.6 * len(config.datasets)),
                             squeeze=False)
    for ax_row, name in zip(axes, config.datasets, strict=True):
        drops, within = {}, {}
        for ax, method in zip(ax_row, METHODS, strict=True):
            runs = histories[name][method]
            drops[method] = []
            for r, h in enumerate(runs):
                n = len(h)
                w = max(2, int(round(frac * n)))
                last, before = h[-w:], h[-2 * w:-w]
                drop = 1.0 - last.mean() / before.mean()
                drops[method].append(drop)
                # within this run, the steps' losses as replicates (minibatch noise)
                within[(method, r)] = stats.compare(last, (1.0 - margin) * before,
                                                    alternative="greater")
                rows.append({"dataset": name, "method": method, "training run": r,
                             "steps": n, "loss, first 10%": float(h[:w].mean()),
                             "loss, 10% before last": float(before.mean()),
                             "loss, last 10%": float(last.mean()),
                             "relative drop": float(drop),
                             "plateau (this run)": within[(method, r)].verdict})
                width = max(1, n // 40)
                smooth = _smooth(h, width)
                ax.plot(np.arange(len(smooth)) + width, smooth, lw=0.9, color=f"C{r}",
                        label=f"run {r}")
                ax.axvspan(n - 2 * w, n - w, color="0.85", lw=0)
                ax.axvspan(n - w, n, color="0.7", lw=0)
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%.3g"))
            ax.yaxis.set_minor_formatter(ticker.FormatStrFormatter("%.3g"))
            ax.set_title(f"{name}: {method}\nlast-{frac:.0%} drop "
                         + ", ".join(f"{d:.1%}" for d in drops[method]), fontsize=8)
            ax.set_xlabel("step", fontsize=8)
            ax.tick_params(which="both", labelsize=6.5)
            if method == METHODS[0]:
                ax.set_ylabel("training loss (moving avg)", fontsize=8)
            if len(runs) > 1:
                ax.legend(fontsize=6)
        replicated = min(len(v) for v in drops.values()) >= 2
        if replicated:
            verdict = stats.all_of(
                *(stats.exceeds(drops[m], margin, alternative="less") for m in METHODS),
                names=[f"{m}: relative drop < {margin:.0%}" for m in METHODS],
                claim=f"one-sample t 95% CI over training runs of each method's relative drop "
                      f"< {margin:.0%}")
            how = "over training runs"
        else:
            verdict = stats.all_of(
                *within.values(), names=[f"{m} run {r}" for m, r in within],
                claim=f"one training run: Welch 95% CI, the steps' losses as replicates, of "
                      f"last − (1 − {margin:.0%}) × before > 0, for every model")
            how = "within the one run (steps as replicates)"
        out.claim(f"{name}: every model trained to a plateau (mean loss over the last "
                  f"{frac:.0%} of steps less than {margin:.0%} below the {frac:.0%} before, "
                  f"decided {how})",
                  source="issue §4: train each to a loss plateau within the CPU budget, or "
                  "report the loss curves",
                  expected="a loss plateau for every method",
                  verdict=verdict,
                  measured={"relative drop of the mean loss, last window vs the one before, "
                            "per training run": {m: [f"{d:.2%}" for d in v]
                                                 for m, v in drops.items()}})
    fig.tight_layout()
    out.figure(fig, "loss_curves", caption="Training loss of every model (each training "
               "run; moving average over 1/40 of the run, log scale). Shaded: the windows "
               f"compared for the plateau, the {frac:.0%} of steps before the last (light) and "
               f"the last {frac:.0%} (dark). Reflow: its fine-tuning from cfm. The losses "
               "differ in target and scale across methods; compare shapes, not levels.")
    columns = ["dataset", "method", "training run", "steps", "loss, first 10%",
               "loss, 10% before last", "loss, last 10%", "relative drop",
               "plateau (this run)"]
    out.table(rows, stem="plateau", columns=columns,
              caption=f"Training loss: mean over the first {frac:.0%}, the {frac:.0%} before "
              f"the last, and the last {frac:.0%} of steps; relative drop = 1 − last/before; "
              f"plateau (this run): the last window not {margin:.0%} below the one before "
              "(Welch 95% CI, the steps' minibatch losses as replicates).")
    return rows
