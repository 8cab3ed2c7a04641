r"""One comparison of the essays: train models with several losses over seeds, score them.

The protocol of the series: train, score the validation split as training goes, keep the
checkpoint with the best validation metric, report the test metric there. Spearman's $\rho$
is computed on the graded labels; accuracy on the binarised labels with a threshold searched
on validation and reused on test.

Reference: 苏剑林, "CoSENT（一）", https://kexue.fm/archives/8847 ; "CoSENT（二）",
https://kexue.fm/archives/8860 ; "CoSENT（三）", https://kexue.fm/archives/9341 .
"""

from __future__ import annotations

import dataclasses

import numpy as np

from diffusionlab.cosent.evaluate import accuracy, search_threshold, spearman
from diffusionlab.cosent.models import EncoderConfig
from diffusionlab.cosent.synthetic import SYNTHETIC_TASKS, synthetic_task
from diffusionlab.cosent.tasks import PairTask
from diffusionlab.cosent.tokenizer import Tokenizer
from diffusionlab.cosent.train import TrainResult, TrainSettings, encode_task, train_pair_models
from diffusionlab.cosent.wordnet import wordnet_available, wordnet_task

__all__ = ["TASKS", "Protocol", "available_tasks", "average_over_tasks", "build_task", "compare",
           "compare_on_tasks", "first_epoch_spearman", "first_epoch_spearman_by_seed",
           "seed_averages", "summarize"]

TASKS = (*SYNTHETIC_TASKS, "wordnet")
SELECT_BY = ("spearman", "accuracy")


@dataclasses.dataclass(frozen=True)
class Protocol:
    """Sizes shared by the three parts, so that their compiled programs coincide.

    Attributes:
      tasks: task names (see :data:`TASKS`).
      seeds: model seeds (initialisation and batch order); >= 3 for mean ± std.
      num_train, num_valid, num_test: split sizes.
      max_length: units per sentence (a cross-encoder's pair input gets twice this).
      encoder: the trunk size.
      settings: optimisation settings.
    """

    tasks: tuple[str, ...] = TASKS
    seeds: tuple[int, ...] = (0, 1, 2)
    num_train: int = 8000
    num_valid: int = 400
    num_test: int = 400
    max_length: int = 16
    encoder: EncoderConfig = EncoderConfig(vocab_size=2048, dim=32, depth=2, num_heads=2,
                                           mlp_dim=64)
    settings: TrainSettings = TrainSettings(steps=600, batch_size=32, learning_rate=3e-3,
                                            eval_every=50)

    @classmethod
    def quick(cls, tasks: tuple[str, ...] = ("adversarial",)) -> Protocol:
        """The test-suite size: exercises every path in seconds; learns little."""
        return cls(tasks=tasks, seeds=(0, 1), num_train=512, num_valid=64, num_test=64,
                   max_length=12,
                   encoder=EncoderConfig(vocab_size=512, dim=16, depth=1, num_heads=2,
                                         mlp_dim=32),
                   settings=TrainSettings(steps=40, batch_size=32, learning_rate=3e-3,
                                          eval_every=10))

    @property
    def steps_per_epoch(self) -> int:
        return self.num_train // self.settings.batch_size


def available_tasks(names: tuple[str, ...] = TASKS) -> tuple[str, ...]:
    """``names`` without ``"wordnet"`` when its data files are not installed."""
    return tuple(n for n in names if n != "wordnet" or wordnet_available())


def build_task(name: str, *, num_train: int, num_valid: int, num_test: int,
               seed: int = 0) -> PairTask:
    """A synthetic task or the WordNet task by name (see :data:`TASKS`)."""
    if name == "wordnet":
        return wordnet_task(num_train=num_train, num_valid=num_valid, num_test=num_test,
                            seed=seed)
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid names: {TASKS}")
    return synthetic_task(name, num_train=num_train, num_valid=num_valid, num_test=num_test,
                          seed=seed)


def _metrics(task: PairTask, valid_scores, test_scores):
    binary_valid, binary_test = task.binary_labels(task.valid), task.binary_labels(task.test)
    threshold = search_threshold(valid_scores, binary_valid)
    return {
        "valid_spearman": spearman(valid_scores, task.valid.labels),
        "valid_accuracy": accuracy(valid_scores, binary_valid, threshold),
        "test_spearman": spearman(test_scores, task.test.labels),
        "test_accuracy": accuracy(test_scores, binary_test, threshold),
    }


def evaluate_result(task: PairTask, result: TrainResult, *, select_by: str = "spearman"):
    """Per (loss, seed): test metrics at the best validation checkpoint, and the curve.

    Returns:
      ``(rows, curves)``: rows are dicts with ``loss``, ``seed``, ``best_step`` and the
      valid/test Spearman and accuracy there; ``curves[loss]`` is ``(S, E)`` validation
      Spearman at ``result.eval_steps``.
    """
    if select_by not in SELECT_BY:
        raise ValueError(f"select_by must be one of {SELECT_BY}, got {select_by!r}")
    rows, curves = [], {}
    for m, loss in enumerate(result.losses):
        curve = np.zeros((len(result.seeds), len(result.eval_steps)))
        for s, seed in enumerate(result.seeds):
            per_eval = [_metrics(task, result.valid_scores[m, s, e], result.test_scores[m, s, e])
                        for e in range(len(result.eval_steps))]
            curve[s] = [p["valid_spearman"] for p in per_eval]
            # Checkpoint 0 is the untrained model; selection starts after the first update.
            best = 1 + int(np.argmax([p[f"valid_{select_by}"] for p in per_eval[1:]]))
            rows.append({"task": task.name, "loss": loss, "seed": seed,
                         "best_step": int(result.eval_steps[best]), **per_eval[best]})
        curves[loss] = curve
    return rows, curves


def compare(task: PairTask, kind: str, losses: tuple[str, ...], *, encoder: EncoderConfig,
            settings: TrainSettings, seeds: tuple[int, ...], max_length: int,
            select_by: str = "spearman"):
    """Trains ``kind``-encoders with every loss in ``losses`` over ``seeds`` on ``task``.

    The tokenizer is built from the task's training text, capped at ``encoder.vocab_size``.

    Returns:
      ``(rows, curves, result)``: see :func:`evaluate_result`; ``result`` the raw
      :class:`TrainResult`.
    """
    tokenizer = Tokenizer.fit(task.texts(), max_vocab=encoder.vocab_size)
    arrays = encode_task(task, tokenizer, kind=kind, max_length=max_length)
    result = train_pair_models(kind, losses, encoder, arrays, seeds=seeds, settings=settings)
    rows, curves = evaluate_result(task, result, select_by=select_by)
    return rows, curves, result


def summarize(rows: list[dict], *, metrics=("test_spearman", "test_accuracy"),
              by=("task", "loss")) -> list[dict]:
    """Mean and standard deviation over seeds (×100, as the essays report), one row per group."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in by), []).append(row)
    out = []
    for key, members in groups.items():
        summary = dict(zip(by, key, strict=True))
        summary["seeds"] = len(members)
        for metric in metrics:
            values = 100 * np.array([r[metric] for r in members])
            summary[f"{metric}_mean"] = float(values.mean())
            summary[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        out.append(summary)
    return out


def compare_on_tasks(protocol: Protocol, kind: str, losses: tuple[str, ...], *,
                     select_by: str = "spearman", task_seed: int = 0):
    """:func:`compare` on every available task of ``protocol``.

    Returns:
      ``(rows, curves, eval_steps)``: rows of every (task, loss, seed); ``curves[task][loss]``
      the ``(S, E)`` validation-Spearman curves; the evaluation steps.
    """
    rows, curves, eval_steps = [], {}, None
    for name in available_tasks(protocol.tasks):
        task = build_task(name, num_train=protocol.num_train, num_valid=protocol.num_valid,
                          num_test=protocol.num_test, seed=task_seed)
        task_rows, curves[name], result = compare(
            task, kind, losses, encoder=protocol.encoder, settings=protocol.settings,
            seeds=protocol.seeds, max_length=protocol.max_length, select_by=select_by)
        rows += [{"kind": kind, **r} for r in task_rows]
        eval_steps = result.eval_steps
    return rows, curves, eval_steps


def average_over_tasks(summary: list[dict], *, group: str = "loss") -> list[dict]:
    """Adds one ``task="average"`` row per ``group`` value: the mean of the per-task means."""
    metrics = [k[: -len("_mean")] for k in summary[0] if k.endswith("_mean")]
    out = list(summary)
    for name in dict.fromkeys(r[group] for r in summary):
        members = [r for r in summary if r[group] == name]
        row = {"task": "average", group: name, "seeds": members[0]["seeds"]}
        for metric in metrics:
            row[f"{metric}_mean"] = float(np.mean([r[f"{metric}_mean"] for r in members]))
            # The spread of a mean of independent task means.
            row[f"{metric}_std"] = float(np.sqrt(np.sum([r[f"{metric}_std"] ** 2
                                                         for r in members])) / len(members))
        out.append(row)
    return out


def first_epoch_spearman_by_seed(curves: dict[str, np.ndarray], eval_steps: np.ndarray,
                                 steps_per_epoch: int) -> dict[str, np.ndarray]:
    """Validation Spearman (×100) at the last evaluation within the first epoch, per seed.

    Returns:
      ``{loss: (S,) array}``, one value per seed in the order of the curves' rows.
    """
    within = np.nonzero((eval_steps > 0) & (eval_steps <= steps_per_epoch))[0]
    index = int(within[-1]) if within.size else 1
    return {loss: 100 * np.asarray(curve[:, index], float) for loss, curve in curves.items()}


def first_epoch_spearman(curves: dict[str, np.ndarray], eval_steps: np.ndarray,
                         steps_per_epoch: int) -> dict[str, float]:
    """Mean validation Spearman (×100) at the last evaluation within the first epoch."""
    return {loss: float(values.mean()) for loss, values in
            first_epoch_spearman_by_seed(curves, eval_steps, steps_per_epoch).items()}


def seed_averages(rows: list[dict], metric: str, *, group: str = "loss",
                  tasks: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """One replicate per seed: ``metric`` (×100) averaged over tasks, for each ``group`` value.

    The replicates of a comparison are the training seeds; runs with the same seed share
    the data and the batch order, so two groups' arrays pair up seed by seed.

    Args:
      rows: the per-run rows of :func:`compare_on_tasks` (``task``, ``seed``, the metric).
      metric: a per-run metric, e.g. ``"test_spearman"``.
      group: the row key naming what is compared (``"loss"`` or ``"model"``).
      tasks: the tasks averaged over; default every task in ``rows``.

    Returns:
      ``{group value: (S,) array}`` over the sorted seeds.

    Raises:
      ValueError: a group that lacks a (task, seed) run that another group has.
    """
    tasks = tuple(dict.fromkeys(r["task"] for r in rows)) if tasks is None else tasks
    seeds = sorted({r["seed"] for r in rows})
    table = {(r[group], r["task"], r["seed"]): r[metric] for r in rows if r["task"] in tasks}
    out = {}
    for name in dict.fromkeys(r[group] for r in rows):
        missing = [(t, s) for t in tasks for s in seeds if (name, t, s) not in table]
        if missing:
            raise ValueError(f"{group} {name!r} has no run for (task, seed) {missing[0]}; "
                             f"every {group} needs every task and seed")
        out[name] = 100 * np.array([np.mean([table[(name, t, s)] for t in tasks])
                                    for s in seeds])
    return out
