"""Sample quality against the number of reverse steps for every UDM process (essay 9271).

Each sampler is run twice: with the trained network, and with the exact predictor of the
network's training set (:func:`diffusionlab.udm.empirical_predictor`, the posterior over the
finite set). The oracle has no network error, so its score against the number of steps is the
sampler's own (discretisation and kernel) error; the gap to the network's is the network's.
Cold diffusion with σ = 0 has no oracle (a deterministic forward map has no density).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import numpy as np

from diffusionlab import stats
from diffusionlab.cache import checkpoints_beside
from diffusionlab.udm import empirical_predictor, evaluation, plots

TITLE = "UDM: FD-digits and sliced W2 against reverse steps, every process"
SOURCE = "苏剑林, 生成扩散模型漫谈（十一）：统一扩散模型（应用篇）, https://kexue.fm/archives/9271"


@dataclasses.dataclass(frozen=True)
class Config:
    recipe: evaluation.Recipe = evaluation.Recipe()
    domains: tuple[str, ...] = ("digits", "toy")
    fractions: tuple[float, ...] = (0.1, 0.25, 1.0)
    seeds: int = 3  # sampling seeds per trained model
    training_seeds: int = 3  # the claims: models trained from this many keys, each scored
    num_eval: int = 500
    seed: int = 0  # the one key of the run: models (replicate r folds in r), then evaluation

    @classmethod
    def quick(cls) -> Config:
        return cls(
            recipe=evaluation.Recipe.quick(), domains=("digits",), fractions=(0.25,), seeds=2,
            training_seeds=2, num_eval=64,
        )


def _row(rows, sampler, steps=None):
    matches = [r for r in rows if r["sampler"] == sampler]
    return (
        max(matches, key=lambda r: r["steps"])
        if steps is None
        else next(r for r in matches if r["steps"] == steps)
    )


def _pm(mean, std):
    return f"{mean:.3g} ± {std:.2g}"


class _Oracle(NamedTuple):
    """A trained model's process with the exact predictor in place of its network."""

    process: Any
    predict_x0: Any


def oracle_models(recipe, models, *, domain: str, model_key) -> dict[str, _Oracle]:
    """The exact predictor of each trained model's training set, for the models that have one.

    ``model_key`` is the key the models were trained from (the toy's training data is drawn
    from its first split, as in :func:`evaluation.train_models`). Models whose process has no
    closed-form density p(x_t | x_0) (cold diffusion with σ = 0) are left out.
    """
    k_data, _ = jax.random.split(model_key)
    oracles = {}
    for name, model in models.items():
        x = evaluation.training_data(name, recipe, domain=domain, key=k_data)
        try:
            oracles[name] = _Oracle(model.process, empirical_predictor(model.process, x))
        except (TypeError, ValueError):  # the documented errors of a process without an oracle
            continue
    return oracles


def training_set_score(config, domain: str, *, key) -> float:
    """The score of data examples themselves (``num_eval`` per sampling seed, drawn as the
    samplers' sources are: training images for digits, fresh draws of a toy), against the
    reference the samplers are scored with: about the floor of a sampler that reproduces
    training points. ``key`` is the domain's evaluation key."""
    recipe = config.recipe
    k_reference, key = jax.random.split(key)
    reference = evaluation.reference_data(recipe, domain=domain, num=config.num_eval, key=k_reference)
    scores = []
    for seed in range(config.seeds):
        k_source, _, k_score = jax.random.split(jax.random.fold_in(key, seed), 3)
        source = evaluation.prior_source("hot", recipe, domain=domain, num=config.num_eval, key=k_source)
        scores.append(evaluation.score(source, reference, recipe, domain=domain, key=k_score))
    return float(np.mean(scores))


def _claim_samplers(recipe, domain: str) -> tuple[list[str], list[str]]:
    """The samplers the claims compare: at the most reverse steps, and at the fewest."""
    s = recipe.cold_sigma
    most = ["cold blur improved", "cold blur naive", f"cold blur+noise({s}) improved",
            f"cold blur+noise({s}) naive"]
    if domain == "digits":
        most += ["edit", "edit (baseline kernel)", "mask", "mask (baseline kernel)"]
    return most, ["hot DDIM", "hot DDPM"]


def replicate_rows(config: Config, domain: str, *, model_key, key, directory,
                   phase) -> list[dict]:
    """The claims' samplers, scored over ``config.seeds`` sampling seeds, for the models
    trained from ``model_key``; ``phase`` as in :func:`evaluation.quality_rows` (required
    here: the experiment's ``out.phase``)."""
    recipe = config.recipe
    table = evaluation.samplers(recipe, domain=domain)
    groups = _claim_samplers(recipe, domain)
    # only the models these samplers use (not the encoder)
    with phase("training"):
        models = recipe.models(domain, key=model_key, directory=directory,
                               names=sorted({table[n].model for g in groups for n in g}))
    rows = []
    for names, fraction in zip(groups, (max(config.fractions), min(config.fractions)), strict=True):
        rows += evaluation.quality_rows(
            models, {n: table[n] for n in names}, recipe, domain=domain, fractions=(fraction,),
            seeds=config.seeds, num=config.num_eval, key=key, phase=phase,
        )
    return rows


def run(config: Config, out) -> None:
    recipe = config.recipe
    k_models, k_eval = jax.random.split(jax.random.key(config.seed))
    directory = checkpoints_beside(out.directory)  # shared with udm_samples

    def eval_key(domain: str):
        return jax.random.fold_in(k_eval, evaluation.DOMAINS.index(domain))

    rows, oracle_rows, floors = [], [], {}
    for domain in config.domains:
        model_key = evaluation.replicate_key(k_models, 0, domain)
        with out.phase("training"):
            models = recipe.models(domain, key=model_key, directory=directory)
        table = evaluation.samplers(recipe, domain=domain)
        scored = functools.partial(evaluation.quality_rows, recipe=recipe, domain=domain,
                                   fractions=config.fractions, seeds=config.seeds,
                                   num=config.num_eval, key=eval_key(domain), phase=out.phase)
        rows += scored(models, table)
        # the same samplers, seeds and reference with the exact predictor (paired with the above)
        oracles = oracle_models(recipe, models, domain=domain, model_key=model_key)
        oracle_rows += scored(oracles, {n: spec for n, spec in table.items()
                                        if spec.model in oracles})
        with out.phase("evaluation"):
            floors[domain] = training_set_score(config, domain, key=eval_key(domain))

    def oracle_of(r):
        return next((o for o in oracle_rows if (o["domain"], o["sampler"], o["steps"])
                     == (r["domain"], r["sampler"], r["steps"])), None)

    shown = [
        {
            "domain": r["domain"],
            "sampler": r["sampler"],
            "steps": r["steps"],
            "metric": r["metric"],
            "score (mean ± std)": _pm(r["score_mean"], r["score_std"]),
            "diversity (mean ± std)": _pm(r["diversity_mean"], r["diversity_std"]),
            "oracle score (mean ± std)": (_pm(o["score_mean"], o["score_std"])
                                          if (o := oracle_of(r)) else "— (no oracle)"),
            "oracle diversity (mean ± std)": (_pm(o["diversity_mean"], o["diversity_std"])
                                              if o else "—"),
        }
        for r in rows
    ]
    out.table(
        shown,
        stem="quality",
        caption=(
            f"Mean ± std over {config.seeds} sampling seeds ({config.num_eval} samples each; one trained "
            f"model per forward process: training replicate 0). "
            "Diversity: mean pairwise distance of the samples (in pixels for digits). Oracle: the "
            "same sampler, seeds and reference with the exact predictor of the model's training "
            "set (udm.empirical_predictor) in place of the network: the sampler's own error; "
            "cold blur with σ = 0 has none (no density)."
        ),
    )
    for domain in config.domains:
        sub = [
            dict(r, score_mean=r["score_mean"], score_std=r["score_std"])
            for r in rows
            if r["domain"] == domain
        ]
        metric = sub[0]["metric"]
        fig = plots.metric_vs_steps(
            sub,
            metric="score",
            ylabel=f"{metric} (lower is better)",
            title=f"{metric} against reverse steps ({domain})",
        )
        out.figure(
            fig, f"quality_{domain}", caption=f"{metric} against reverse steps, mean ± std over seeds."
        )
        fig = plots.network_vs_oracle(
            sub,
            [r for r in oracle_rows if r["domain"] == domain],
            floor=floors[domain],
            ylabel=f"{metric} (lower is better)",
            title=f"{metric}: trained network vs exact predictor ({domain})",
        )
        out.figure(
            fig,
            f"quality_oracle_{domain}",
            caption=(f"{metric} against reverse steps with the trained network (solid) and the "
                     "exact predictor of its training set (dashed, open markers), mean ± std over "
                     "seeds: the dashed line is the sampler's error alone. Dotted: training "
                     f"examples themselves scored alike ({floors[domain]:.3g}), the floor of a "
                     "sampler that reproduces them."),
        )

    # The essays' claims without numbers, measured on digits (or the first domain), over
    # models trained from several keys: replicate r folds r into the models' key (r = 0 is
    # the model of the table above), each scored as in the table.
    domain = "digits" if "digits" in config.domains else config.domains[0]
    rd = [r for r in rows if r["domain"] == domain]
    most, few_names = _claim_samplers(recipe, domain)
    few = min(r["steps"] for r in rd if r["sampler"] == "hot DDIM")
    first = [_row(rd, n) for n in most] + [_row(rd, n, few) for n in few_names]
    replicates = [first] + [
        replicate_rows(config, domain, model_key=evaluation.replicate_key(k_models, r, domain),
                       key=eval_key(domain), directory=directory, phase=out.phase)
        for r in range(1, config.training_seeds)
    ]
    out.table(
        [{"training replicate": i, "sampler": r["sampler"], "steps": r["steps"],
          "metric": r["metric"], "score": r["score_mean"], "diversity": r["diversity_mean"]}
         for i, rep in enumerate(replicates) for r in rep],
        stem="replicates",
        caption=(
            f"{domain}: the samplers the claims compare, for models trained from "
            f"{config.training_seeds} keys; each value is the mean over {config.seeds} sampling "
            f"seeds of {config.num_eval} samples."
        ),
    )

    def per_seed(sampler, column="score_mean"):
        return np.array([next(r[column] for r in rep if r["sampler"] == sampler)
                         for rep in replicates])

    def shown_pm(values):
        return _pm(values.mean(), values.std(ddof=1) if len(values) > 1 else 0.0)

    n = config.training_seeds
    # the reference the domain's table was scored against (quality_rows' first split)
    real = evaluation.reference_data(recipe, domain=domain, num=config.num_eval,
                                     key=jax.random.split(eval_key(domain))[0])
    real_div = evaluation.diversity(real)
    s = recipe.cold_sigma
    det, noisy = per_seed("cold blur improved", "diversity_mean"), per_seed(
        f"cold blur+noise({s}) improved", "diversity_mean")
    out.metric(
        real_diversity=real_div,
        **{f"{r['domain']}|{r['sampler']}|{r['steps']}": r["score_mean"] for r in rows},
        **{f"oracle|{r['domain']}|{r['sampler']}|{r['steps']}": r["score_mean"] for r in oracle_rows},
        **{f"{domain}|training examples": value for domain, value in floors.items()},
        claim_replicates={f"{r['sampler']}|{r['steps']}": per_seed(r["sampler"]).tolist()
                          for r in first},
    )
    spread = f"mean ± sd over {n} training replicates"
    out.claim(
        "Deterministic cold sampling loses diversity",
        source=SOURCE + " (cold diffusion critique)",
        expected="diversity below the data's",
        verdict=stats.exceeds(det, real_div, alternative="less"),
        measured=f"diversity {shown_pm(det)} ({spread}) vs real {real_div:.3g} "
        f"(ratio {det.mean() / real_div:.2f})",
        previous=first[0]["diversity_mean"] < 0.9 * real_div,
    )
    det_row, noisy_row = _row(rd, "cold blur improved"), _row(rd, f"cold blur+noise({s}) improved")
    out.claim(
        "Adding noise (σ > 0) restores diversity",
        source=SOURCE,
        expected="σ>0 diversity > σ=0 diversity",
        verdict=stats.compare(noisy, det, alternative="greater", paired=True),
        measured=f"{shown_pm(noisy)} (σ={s}) vs {shown_pm(det)} (σ=0), {spread}",
        previous=noisy_row["diversity_mean"] > det_row["diversity_mean"],
    )
    for label, better, worse in (("σ=0", "cold blur improved", "cold blur naive"),
                                 (f"σ={s}", f"cold blur+noise({s}) improved",
                                  f"cold blur+noise({s}) naive")):
        out.claim(
            f"The improved cold sampler beats the naive one ({label})",
            source=SOURCE + "; Bansal et al.",
            expected="lower FD",
            verdict=stats.compare(per_seed(better), per_seed(worse), alternative="less",
                                  paired=True),
            measured=f"{shown_pm(per_seed(better))} vs {shown_pm(per_seed(worse))}, {spread}",
            previous=_row(rd, better)["score_mean"] < _row(rd, worse)["score_mean"],
        )
    if domain == "digits":
        for proc in ("edit", "mask"):
            good, base = per_seed(proc), per_seed(f"{proc} (baseline kernel)")
            out.claim(
                f"The deterministic kernel beats the baseline (fresh-noise) kernel ({proc})",
                source="苏剑林, 统一扩散模型（理论篇）, https://kexue.fm/archives/9262 §6",
                expected="lower FD",
                verdict=stats.compare(good, base, alternative="less", paired=True),
                measured=f"{shown_pm(good)} vs {shown_pm(base)}, {spread}",
                previous=_row(rd, proc)["score_mean"] < _row(rd, f"{proc} (baseline kernel)")["score_mean"],
            )
    ddim, ddpm = per_seed("hot DDIM"), per_seed("hot DDPM")
    out.claim(
        f"DDIM (σ_t = 0) beats DDPM at few steps ({few})",
        source=SOURCE + "; Song et al. (DDIM)",
        expected="lower FD",
        verdict=stats.compare(ddim, ddpm, alternative="less", paired=True),
        measured=f"{shown_pm(ddim)} vs {shown_pm(ddpm)}, {spread}",
        previous=_row(rd, "hot DDIM", few)["score_mean"] < _row(rd, "hot DDPM", few)["score_mean"],
    )

    # The oracle separates the sampler's error from the network's: same sampler, same seeds
    # (paired), the exact predictor of the training set in place of the network. Replicates
    # are the sampling seeds of training replicate 0 (the table above).
    od = [o for o in oracle_rows if o["domain"] == domain]
    oracle_claims(out, rd, od, samplers=[f"cold blur+noise({s}) improved", "encoder", "hot DDPM"]
                  + (["edit", "mask"] if domain == "digits" else []))


def oracle_claims(out, rows, oracle_rows, *, samplers) -> None:
    """Network error (network vs exact predictor at the most steps, paired by sampling seed)
    for each of ``samplers``, and the exact DDPM sampler's own discretisation error (its
    fewest steps against its most)."""
    def find(table, sampler, steps=None):
        matches = [r for r in table if r["sampler"] == sampler]
        if not matches:
            return None
        return (max(matches, key=lambda r: r["steps"]) if steps is None
                else next((r for r in matches if r["steps"] == steps), None))

    def shown(values):
        values = np.asarray(values)
        return _pm(values.mean(), values.std(ddof=1) if len(values) > 1 else 0.0)

    def worse(claim, first, second, *, expected, labels):
        """Claims ``first`` scores higher (worse) than ``second``, paired by sampling seed."""
        a, b = np.asarray(first["scores"]), np.asarray(second["scores"])
        out.claim(claim, source=SOURCE + "; exact predictor: udm.empirical_predictor",
                  expected=expected,
                  verdict=stats.compare(a, b, alternative="greater", paired=True),
                  measured=f"{labels[0]} {shown(a)} vs {labels[1]} {shown(b)} "
                           f"({len(a)} paired sampling seeds)")

    for sampler in samplers:
        net, exact = find(rows, sampler), find(oracle_rows, sampler)
        if net is None or exact is None:
            continue
        worse(f"The trained network adds error beyond the sampler's own ({sampler}, "
              f"{net['steps']} steps)", net, exact,
              expected=f"network {net['metric']} > exact-predictor {net['metric']}",
              labels=("network", "exact predictor"))
    most = find(oracle_rows, "hot DDPM")
    if most is not None:
        few = min(r["steps"] for r in oracle_rows if r["sampler"] == "hot DDPM")
        fewest = find(oracle_rows, "hot DDPM", few)
        if fewest is not None and few < most["steps"]:
            worse(f"Without network error, DDPM still loses quality at few steps ({few} vs "
                  f"{most['steps']})", fewest, most,
                  expected=f"exact-predictor {most['metric']} higher at {few} steps",
                  labels=(f"{few} steps", f"{most['steps']} steps"))
