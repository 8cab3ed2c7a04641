"""Monte Carlo check of the UDM consistency constraint for every kernel family (essay 9262 §5-6).

Two checks per kernel: the marginals (feature means, z-scores) for every process, and for the
discrete processes the joint law that the marginals cannot see, that of the Hamming distance
:math:`d(x_s,x_0)` (edited tokens, or masks), by a two-sample chi-square test.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from scipy import stats as scipy_stats

from diffusionlab import stats
from diffusionlab.udm import consistency, plots

TITLE = "UDM: each reverse kernel family preserves the law p(x_s | x_0)"
SOURCE = "苏剑林, 生成扩散模型漫谈（十）：统一扩散模型（理论篇）, https://kexue.fm/archives/9262"


@dataclasses.dataclass(frozen=True)
class Config:
    num: int = 40_000  # Monte Carlo draws per route
    T: int = 20
    seeds: int = 3  # independent Monte Carlo replicates of every check
    seed: int = 0
    family_alpha: float = 1e-3  # family-wise level per seed and check kind, Bonferroni-split

    @classmethod
    def quick(cls) -> Config:
        return cls(num=3000, seeds=2)


def _is_discrete(case) -> bool:
    return np.issubdtype(np.asarray(case.x0).dtype, np.integer)


def run(config: Config, out) -> None:
    cases = consistency.standard_cases(config.T)
    discrete = [i for i, case in enumerate(cases) if _is_discrete(case)]

    def case_key(r: int, i: int):
        # check i at replicate r, seeded config.seed + r; both checks of a case use its draws
        return jax.random.fold_in(jax.random.key(config.seed + r), i)

    with out.phase("evaluation"):
        results = [
            [
                consistency.marginal_consistency(
                    case.process, case.kernel_fn, case.x0, case.t, case.s, key=case_key(r, i),
                    num=config.num, **case.kernel_kwargs,
                )
                for i, case in enumerate(cases)
            ]
            for r in range(config.seeds)
        ]
        hamming = [
            {
                i: consistency.hamming_consistency(
                    cases[i].process, cases[i].kernel_fn, cases[i].x0, cases[i].t, cases[i].s,
                    key=case_key(r, i), num=config.num, **cases[i].kernel_kwargs,
                )
                for i in discrete
            }
            for r in range(config.seeds)
        ]
    # Marginals: one family per seed, every feature of every check, Bonferroni-split (two-sided).
    features = max(sum(len(res.z) for res in seed) for seed in results)
    bound = float(scipy_stats.norm.isf(config.family_alpha / (2 * features)))
    # Hamming law: one family per seed, every discrete check, Bonferroni-split.
    p_level = config.family_alpha / len(discrete)
    rows, z_by_family = [], {}
    for i, case in enumerate(cases):
        per_seed = [seed[i] for seed in results]
        row = {
            "process": case.process_name,
            "kernel": case.kernel_name,
            "t": case.t,
            "s": case.s,
            "features": len(per_seed[0].z),
            "max |z| (worst seed)": max(res.max_abs_z for res in per_seed),
            "rms z (seed 0)": per_seed[0].rms_z,
            "marginals: seeds passing": f"{sum(res.max_abs_z < bound for res in per_seed)}/{config.seeds}",
            "marginals should pass": case.marginals_expected,
            "Hamming χ² (worst seed)": "n/a",
            "dof": "n/a",
            "Hamming p (worst seed)": "n/a",
            "Hamming: seeds passing": "n/a",
            "whole law should pass": case.consistent,
        }
        if i in discrete:
            joint = [seed[i] for seed in hamming]
            worst = min(joint, key=lambda res: res.p_value)
            row.update({
                "Hamming χ² (worst seed)": worst.chi2,
                "dof": worst.dof,
                "Hamming p (worst seed)": worst.p_value,
                "Hamming: seeds passing": f"{sum(res.p_value > p_level for res in joint)}/{config.seeds}",
            })
        rows.append(row)
        label = f"{case.process_name}: {case.kernel_name}"
        z_by_family[label] = np.concatenate([z_by_family.get(label, np.zeros(0))]
                                            + [res.z for res in per_seed])
    out.table(
        rows,
        stem="residuals",
        caption=(
            f"Kernel route vs direct forward draw, {config.num} draws each, {config.seeds} "
            f"independent seeds. Marginals: two-sample z-scores of feature means; a check passes in "
            f"a seed when its max|z| is below the Bonferroni bound {bound:.2f} (family-wise "
            f"{config.family_alpha} per seed over all {features} features of all checks). Hamming "
            f"law (discrete processes): two-sample chi-square test of d(x_s, x_0); a check passes in "
            f"a seed when p > {p_level:.2g} (family-wise {config.family_alpha} per seed over the "
            f"{len(discrete)} discrete checks). The forward law of d is a point mass at s, so a "
            "consistent kernel gives χ² = 0 (dof 0, p = 1)."
        ),
    )
    max_distance = max(case.process.length for case in (cases[i] for i in discrete))
    out.table(
        [
            {"process": cases[i].process_name, "kernel": cases[i].kernel_name, "t": cases[i].t,
             "s": cases[i].s, "route": route,
             **{f"d={d}": int(np.sum(np.where(res.distances == d, counts, 0)))
                for d in range(max_distance + 1)}}
            for i in discrete
            for res in (hamming[0][i],)
            for route, counts in (("kernel", res.kernel_counts), ("forward", res.forward_counts))
        ],
        stem="hamming",
        caption=(
            f"Seed {config.seed}: how often each Hamming distance d(x_s, x_0) occurs among the "
            f"{config.num} draws of each route (edit: edited tokens; mask: masks)."
        ),
    )
    out.figure(
        plots.z_histograms(z_by_family, title="Consistency residuals: z-scores against N(0, 1)"),
        "z_histograms",
        caption=f"Per kernel family: z-scores of all features, steps and {config.seeds} seeds. The "
        "Binomial-count controls look like the valid kernels here (their marginals are right); the "
        "last panel is the control with wrong marginals.",
    )
    shown = [i for i in discrete if cases[i].s == 3]
    out.figure(
        plots.count_histograms(
            {f"{cases[i].process_name}: {cases[i].kernel_name} ({cases[i].t}→{cases[i].s})":
             (hamming[0][i].distances, hamming[0][i].kernel_counts, hamming[0][i].forward_counts)
             for i in shown},
            title="Law of the Hamming distance d(x_s, x_0): kernel route vs forward draw",
            xlabel="d(x_s, x_0)",
        ),
        "hamming_histograms",
        caption=f"Seed {config.seed}, step 4→3: the valid kernels land on d = s exactly, as the "
        "forward law; the Binomial-count controls spread over 0..l.",
    )

    valid = [i for i, case in enumerate(cases) if case.consistent]
    control = [i for i, case in enumerate(cases) if not case.marginals_expected]
    blind = [i for i, case in enumerate(cases) if case.marginals_expected and not case.consistent]
    valid_discrete = [i for i in discrete if cases[i].consistent]
    # Per seed: the largest |z| over every feature of the valid checks, of the control, and of
    # the Binomial-count controls; the smallest Hamming p of the valid discrete checks and the
    # largest of the Binomial-count controls.
    valid_z = np.array([max(seed[i].max_abs_z for i in valid) for seed in results])
    control_z = np.array([max(seed[i].max_abs_z for i in control) for seed in results])
    blind_z = np.array([max(seed[i].max_abs_z for i in blind) for seed in results])
    valid_p = np.array([min(seed[i].p_value for i in valid_discrete) for seed in hamming])
    blind_p = np.array([max(seed[i].p_value for i in blind) for seed in hamming])
    blind_chi2 = np.array([[seed[i].chi2 for i in blind] for seed in hamming])
    out.metric(
        bonferroni_bound=bound,
        hamming_p_level=p_level,
        max_abs_z_valid_kernels_per_seed=valid_z,
        max_abs_z_control_per_seed=control_z,
        max_abs_z_binomial_controls_per_seed=blind_z,
        rms_z_valid_kernels=float(np.sqrt(np.mean([seed[i].rms_z ** 2 for seed in results
                                                   for i in valid]))),
        checks_passed=sum(seed[i].max_abs_z < bound for seed in results for i in valid),
        checks=len(valid) * config.seeds,
        min_hamming_p_valid_per_seed=valid_p,
        max_hamming_p_binomial_controls_per_seed=blind_p,
        hamming_chi2_binomial_controls_per_seed=blind_chi2,
        hamming_checks_passed=sum(seed[i].p_value > p_level for seed in hamming for i in valid_discrete),
        hamming_checks=len(valid_discrete) * config.seeds,
    )

    # The earlier rule on replicate 0: each check against its own bound
    # isf(α / (2 · features of the check · number of checks)).
    def old_passes(res):
        return res.max_abs_z < scipy_stats.norm.isf(config.family_alpha / (2 * len(res.z) * len(cases)))

    rule = f"(Bonferroni bound {bound:.2f}: family-wise {config.family_alpha} over {features} features)"
    p_rule = (f"(p level {p_level:.2g}: family-wise {config.family_alpha} over {len(discrete)} "
              "discrete checks)")
    out.claim(
        "Baseline, deterministic and Gaussian-interpolation kernels satisfy ∫p(x_s|x_t,x_0)p(x_t|x_0)dx_t = "
        "p(x_s|x_0): marginals",
        source=SOURCE + " §5-6",
        expected="all pass",
        verdict=stats.exceeds(valid_z, bound, alternative="less"),
        measured=f"per-seed max|z| over the {len(valid)} valid checks: "
        f"{', '.join(f'{z:.2f}' for z in valid_z)} {rule}",
        previous=all(old_passes(results[0][i]) for i in valid),
    )
    out.claim(
        "The discrete kernels (edit, mask) preserve the joint law too: d(x_s, x_0) = s as under the "
        "forward process",
        source=SOURCE + " §5-6; 9271 (Hamming(x_t, x_0) = t, exactly t masks)",
        expected="all pass",
        verdict=stats.exceeds(valid_p, p_level, alternative="greater"),
        measured=f"per-seed smallest Hamming χ² p over the {len(valid_discrete)} valid discrete "
        f"checks: {', '.join(f'{p:.3g}' for p in valid_p)} {p_rule}",
    )
    out.claim(
        "The marginal check has power: a kernel without the √(1-σ̃²) factor violates the constraint",
        source="control (not in the essay)",
        expected="fails",
        verdict=stats.exceeds(control_z, bound, alternative="greater"),
        measured=f"per-seed max|z| of the control: {', '.join(f'{z:.1f}' for z in control_z)} {rule}",
        previous=not any(old_passes(results[0][i]) for i in control),
    )
    out.claim(
        "The marginal check alone is blind to a wrong edit/mask count: Binomial(l, s/l)-count kernels "
        "pass it",
        source="control (not in the essay)",
        expected="passes the marginal check",
        verdict=stats.exceeds(blind_z, bound, alternative="less"),
        measured=f"per-seed max|z| over the {len(blind)} Binomial-count controls: "
        f"{', '.join(f'{z:.2f}' for z in blind_z)} {rule}",
    )
    out.claim(
        "The Hamming check has power: Binomial(l, s/l)-count kernels fail it",
        source="control (not in the essay)",
        expected="fails the Hamming check",
        verdict=stats.exceeds(blind_p, p_level, alternative="less"),
        measured=f"per-seed largest p over the {len(blind)} Binomial-count controls: "
        f"{', '.join(f'{p:.3g}' for p in blind_p)}; χ² per seed and control: "
        f"{'; '.join(', '.join(f'{c:.0f}' for c in row) for row in blind_chi2)} {p_rule}",
    )
