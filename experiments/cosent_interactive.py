"""CoSENT part III: CoSENT as the loss of an interactive (cross-encoder) similarity.

The cross-encoder's raw 1-unit head is trained with CoSENT (no scale: the head absorbs it)
and, as the baseline, with cross-entropy on the binarised labels. Test Spearman and accuracy
at the best validation checkpoint, mean ± std over seeds. Essay: 苏剑林, "CoSENT（三）：
作为交互式相似度的损失函数", https://kexue.fm/archives/9341
"""

from __future__ import annotations

import dataclasses

from diffusionlab import stats
from diffusionlab.cosent import CROSS_ENCODER_LOSSES
from diffusionlab.cosent.comparison import (
    Protocol,
    average_over_tasks,
    compare_on_tasks,
    seed_averages,
    summarize,
)
from diffusionlab.cosent.plots import plot_bars, plot_curves

TITLE = ("CoSENT (III): cross-encoder trained with CoSENT vs cross-entropy"
         " (from-scratch encoder, synthetic tasks)")
SOURCE = "CoSENT（三）, https://kexue.fm/archives/9341"
# "No real difference": the essay's averages differ by 0.33 and 0.08 points; the equivalence
# margin (TOST) on both metrics, in points ×100.
NO_REAL_DIFFERENCE = 2.0
ADVERSARIAL = "adversarial"
REPLICATES = "replicates: training seeds averaged over tasks, paired by seed"


@dataclasses.dataclass(frozen=True)
class Config:
    protocol: Protocol = Protocol()

    @classmethod
    def quick(cls) -> Config:
        return cls(protocol=Protocol.quick(tasks=("sts",)))


def run(config: Config, out) -> None:
    protocol = config.protocol
    with out.phase("training"):
        rows, curves, eval_steps = compare_on_tasks(protocol, "cross", CROSS_ENCODER_LOSSES)
    summary = average_over_tasks(summarize(rows, metrics=("test_spearman", "test_accuracy")))
    out.table(rows, stem="runs", caption="Every run: test metrics at the best validation "
              "Spearman checkpoint.",
              columns=["task", "loss", "seed", "best_step", "valid_spearman", "test_spearman",
                       "test_accuracy"])
    out.table([{"task": r["task"], "loss": r["loss"], "seeds": r["seeds"],
                "test Spearman ×100": f"{r['test_spearman_mean']:.1f} ± "
                                      f"{r['test_spearman_std']:.1f}",
                "test accuracy ×100": f"{r['test_accuracy_mean']:.1f} ± "
                                      f"{r['test_accuracy_std']:.1f}"} for r in summary],
              stem="interactive", caption="Cross-encoder, mean ± std over seeds.")
    out.figure(plot_curves(curves, eval_steps, steps_per_epoch=protocol.steps_per_epoch,
                           title="Cross-encoder: validation Spearman during training"),
               "convergence", caption="Validation Spearman (mean, min-max band over seeds).")
    out.figure(plot_bars(summary, metric="test_spearman", group="loss",
                         title="Cross-encoder: CoSENT vs cross-entropy",
                         ylabel="test Spearman ×100"),
               "spearman", caption="Test Spearman ×100, ± std over seeds.")

    metrics = ("test_spearman", "test_accuracy")
    by_seed = {m: seed_averages(rows, m) for m in metrics}
    average = {(loss, m): float(v.mean()) for m in metrics for loss, v in by_seed[m].items()}
    diff = {m: average[("cosent", m)] - average[("cross_entropy", m)] for m in metrics}
    out.metric(average={f"{loss} {m}": v for (loss, m), v in average.items()},
               cosent_minus_cross_entropy=diff,
               by_seed={m: values for m, values in by_seed.items()})
    out.claim(f"No real difference between CoSENT and CE (TOST, |Δ| < {NO_REAL_DIFFERENCE:g} "
              f"points on Spearman and on accuracy; {REPLICATES})",
              source=SOURCE,
              expected="Spearman 67.10 vs 66.77, accuracy 84.76 vs 84.63 (BERT): \"feasible, "
                       "but no real improvement\"",
              verdict=stats.all_of(
                  *(stats.equivalent(by_seed[m]["cosent"], by_seed[m]["cross_entropy"],
                                     margin=NO_REAL_DIFFERENCE, paired=True) for m in metrics),
                  names=["test Spearman", "test accuracy"],
                  claim=f"paired TOST at 95% (90% CI of a − b inside ±{NO_REAL_DIFFERENCE:g}) on "
                        "test Spearman and on test accuracy"),
              measured=f"Spearman {average[('cosent', 'test_spearman')]:.2f} vs "
                       f"{average[('cross_entropy', 'test_spearman')]:.2f}, accuracy "
                       f"{average[('cosent', 'test_accuracy')]:.2f} vs "
                       f"{average[('cross_entropy', 'test_accuracy')]:.2f}",
              previous=abs(diff["test_spearman"]) <= NO_REAL_DIFFERENCE
              and abs(diff["test_accuracy"]) <= NO_REAL_DIFFERENCE)
    if ADVERSARIAL in curves:
        hard = seed_averages(rows, "test_spearman", tasks=(ADVERSARIAL,))
        delta = float(hard["cosent"].mean() - hard["cross_entropy"].mean())
        out.claim("CoSENT helps on a harder task (PAWSX-like adversarial task), Spearman ×100 "
                  "(replicates: training seeds, paired by seed)", source=SOURCE,
                  expected="possibly better on PAWSX (no number given: tested against 0)",
                  verdict=stats.compare(hard["cosent"], hard["cross_entropy"], paired=True),
                  measured=f"Δ = {delta:+.2f}")
