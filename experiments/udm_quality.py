"""Sample quality against the number of reverse steps for every UDM process (essay 9271)."""

from __future__ import annotations

import dataclasses

import jax

from diffusionlab.udm import evaluation, plots

TITLE = "UDM: FD-digits and sliced W2 against reverse steps, every process"
SOURCE = "苏剑林, 生成扩散模型漫谈（十一）：统一扩散模型（应用篇）, https://kexue.fm/archives/9271"


@dataclasses.dataclass(frozen=True)
class Config:
    recipe: evaluation.Recipe = evaluation.Recipe()
    domains: tuple[str, ...] = ("digits", "toy")
    fractions: tuple[float, ...] = (0.1, 0.25, 1.0)
    seeds: int = 3
    num_eval: int = 500
    seed: int = 0

    @classmethod
    def quick(cls) -> Config:
        return cls(
            recipe=evaluation.Recipe.quick(), domains=("digits",), fractions=(1.0,), seeds=2, num_eval=64
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


def run(config: Config, out) -> None:
    recipe = config.recipe
    setting = recipe.setting
    key = jax.random.key(config.seed)
    rows = []
    for d, domain in enumerate(config.domains):
        models = recipe.models(domain)
        table = evaluation.samplers(setting, domain=domain)
        rows += evaluation.quality_rows(
            models,
            table,
            setting,
            domain=domain,
            fractions=config.fractions,
            seeds=config.seeds,
            num=config.num_eval,
            toy=recipe.toy,
            key=jax.random.fold_in(key, 100 + d),
        )
    shown = [
        {
            "domain": r["domain"],
            "sampler": r["sampler"],
            "steps": r["steps"],
            "metric": r["metric"],
            "score (mean ± std)": _pm(r["score_mean"], r["score_std"]),
            "diversity (mean ± std)": _pm(r["diversity_mean"], r["diversity_std"]),
        }
        for r in rows
    ]
    out.table(
        shown,
        stem="quality",
        caption=(
            f"Mean ± std over {config.seeds} sampling seeds ({config.num_eval} samples each; one trained "
            "model per forward process). "
            "Diversity: mean pairwise distance of the samples (in pixels for digits)."
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

    # the essays' claims without numbers, measured on digits (or the first domain)
    domain = "digits" if "digits" in config.domains else config.domains[0]
    rd = [r for r in rows if r["domain"] == domain]
    real = evaluation.reference_data(setting, domain=domain, toy=recipe.toy, num=config.num_eval)
    real_div = evaluation.diversity(real)
    s = recipe.cold_sigma
    det = _row(rd, "cold blur improved")
    noisy = _row(rd, f"cold blur+noise({s}) improved")
    naive = _row(rd, "cold blur naive")
    noisy_naive = _row(rd, f"cold blur+noise({s}) naive")
    out.metric(
        real_diversity=real_div,
        **{f"{r['domain']}|{r['sampler']}|{r['steps']}": r["score_mean"] for r in rows},
    )
    out.claim(
        "Deterministic cold sampling loses diversity",
        source=SOURCE + " (cold diffusion critique)",
        expected="diversity below the data's",
        measured=f"diversity {det['diversity_mean']:.3g} vs real {real_div:.3g} "
        f"(ratio {det['diversity_mean'] / real_div:.2f})",
        holds=det["diversity_mean"] < 0.9 * real_div,
    )
    out.claim(
        "Adding noise (σ > 0) restores diversity",
        source=SOURCE,
        expected="σ>0 diversity > σ=0 diversity",
        measured=f"{noisy['diversity_mean']:.3g} (σ={s}) vs {det['diversity_mean']:.3g} (σ=0); "
        f"FD {noisy['score_mean']:.3g} vs {det['score_mean']:.3g}",
        holds=noisy["diversity_mean"] > det["diversity_mean"],
    )
    for label, better, worse in (("σ=0", det, naive), (f"σ={s}", noisy, noisy_naive)):
        out.claim(
            f"The improved cold sampler beats the naive one ({label})",
            source=SOURCE + "; Bansal et al.",
            expected="lower FD",
            measured=f"{_pm(better['score_mean'], better['score_std'])} vs "
            f"{_pm(worse['score_mean'], worse['score_std'])}",
            holds=better["score_mean"] < worse["score_mean"],
        )
    if domain == "digits":
        for proc in ("edit", "mask"):
            good, base = _row(rd, proc), _row(rd, f"{proc} (baseline kernel)")
            out.claim(
                f"The deterministic kernel beats the baseline (fresh-noise) kernel ({proc})",
                source="苏剑林, 统一扩散模型（理论篇）, https://kexue.fm/archives/9262 §6",
                expected="lower FD",
                measured=f"{_pm(good['score_mean'], good['score_std'])} vs "
                f"{_pm(base['score_mean'], base['score_std'])}",
                holds=good["score_mean"] < base["score_mean"],
            )
    few = min(r["steps"] for r in rd if r["sampler"] == "hot DDIM")
    ddim, ddpm = _row(rd, "hot DDIM", few), _row(rd, "hot DDPM", few)
    out.claim(
        f"DDIM (σ_t = 0) beats DDPM at few steps ({few})",
        source=SOURCE + "; Song et al. (DDIM)",
        expected="lower FD",
        measured=f"{_pm(ddim['score_mean'], ddim['score_std'])} vs "
        f"{_pm(ddpm['score_mean'], ddpm['score_std'])}",
        holds=ddim["score_mean"] < ddpm["score_mean"],
    )
