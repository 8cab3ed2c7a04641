"""CoSENT part I: bi-encoders trained with CoSENT, Sentence-BERT and cosine-MSE.

Test Spearman at the best validation checkpoint, mean ± std over seeds, on every task, and the
validation curve over the first epochs. Essay: 苏剑林, "CoSENT（一）：比Sentence-BERT更有效的
句向量方案", https://kexue.fm/archives/8847
"""

from __future__ import annotations

import dataclasses

from diffusionlab.cosent import BI_ENCODER_LOSSES
from diffusionlab.cosent.comparison import (
    Protocol,
    average_over_tasks,
    compare_on_tasks,
    first_epoch_spearman,
    summarize,
)
from diffusionlab.cosent.plots import plot_bars, plot_curves

TITLE = "CoSENT (I): bi-encoder Spearman, CoSENT vs Sentence-BERT vs cosine-MSE"
SOURCE = "CoSENT（一）, https://kexue.fm/archives/8847"


@dataclasses.dataclass(frozen=True)
class Config:
    protocol: Protocol = Protocol()

    @classmethod
    def quick(cls) -> Config:
        return cls(protocol=Protocol.quick(tasks=("wordnet",)))


def _cell(row, metric):
    return f"{row[f'{metric}_mean']:.1f} ± {row[f'{metric}_std']:.1f}"


def run(config: Config, out) -> None:
    protocol = config.protocol
    rows, curves, eval_steps = compare_on_tasks(protocol, "bi", BI_ENCODER_LOSSES)
    summary = average_over_tasks(summarize(rows, metrics=("test_spearman",)))
    out.table(rows, stem="runs", caption="Every run: test metrics at the best validation "
              "Spearman checkpoint (not ×100).",
              columns=["task", "loss", "seed", "best_step", "valid_spearman", "test_spearman",
                       "test_accuracy"])
    table = [{"task": r["task"], "loss": r["loss"], "seeds": r["seeds"],
              "test Spearman ×100": _cell(r, "test_spearman")} for r in summary]
    out.table(table, stem="spearman", caption="Test Spearman ×100, mean ± std over seeds "
              "(average: mean of task means).")
    per_task_first = {task: first_epoch_spearman(c, eval_steps, protocol.steps_per_epoch)
                      for task, c in curves.items()}
    out.table([{"task": task, **{loss: round(v, 1) for loss, v in values.items()}}
               for task, values in per_task_first.items()], stem="first_epoch",
              caption="Validation Spearman ×100 at the end of the first epoch (mean over seeds).")
    out.figure(plot_curves(curves, eval_steps, steps_per_epoch=protocol.steps_per_epoch,
                           title="Bi-encoders: validation Spearman during training"),
               "convergence", caption="Validation Spearman (mean, min-max band over seeds); "
               "dotted: end of the first epoch.")
    out.figure(plot_bars(summary, metric="test_spearman", group="loss",
                         title="Bi-encoders: test Spearman", ylabel="Spearman ×100"),
               "spearman", caption="Test Spearman ×100 at the best validation checkpoint, "
               "± std over seeds.")

    average = {r["loss"]: r["test_spearman_mean"] for r in summary if r["task"] == "average"}
    first = {loss: sum(v[loss] for v in per_task_first.values()) / len(per_task_first)
             for loss in BI_ENCODER_LOSSES}
    out.metric(average_test_spearman=average, first_epoch_valid_spearman=first,
               tasks=list(curves))
    out.claim("CoSENT beats Sentence-BERT (average test Spearman ×100)", source=SOURCE,
              expected="68.19 vs 61.74 (BERT, 5 tasks); > 6 points",
              measured=f"{average['cosent']:.2f} vs {average['sbert']:.2f}",
              holds=average["cosent"] > average["sbert"])
    out.claim("CoSENT converges faster: first-epoch validation Spearman ×100", source=SOURCE,
              expected="CoSENT much higher than Sentence-BERT after epoch 1",
              measured=f"{first['cosent']:.2f} vs {first['sbert']:.2f}",
              holds=first["cosent"] > first["sbert"])
    out.claim("Absolute cosine targets (cosine-MSE) do worse than CoSENT", source=SOURCE,
              expected="often worse than Sentence-BERT, sometimes than no training",
              measured=f"cosine-MSE {average['cosine_mse']:.2f} vs CoSENT "
                       f"{average['cosent']:.2f}",
              holds=average["cosine_mse"] < average["cosent"])
