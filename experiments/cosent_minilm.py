"""CoSENT parts I-III on a pretrained encoder (all-MiniLM-L6-v2) and human-rated similarity data.

The from-scratch experiments (cosent_biencoder, cosent_vs_cross, cosent_interactive) study why
CoSENT works on synthetic tasks; this one asks whether the essays' comparisons hold on a real
pretrained encoder and real human ratings: the Lee news-document pairs, SimLex-999 and
WordSim-353 (split by item, so no test text is seen in training).

MiniLM's embeddings and lower blocks are frozen and cached; its top ``trainable_layers``
block(s) and a new head are fine-tuned (see :mod:`diffusionlab.cosent.finetune`). Test
Spearman at the best-validation epoch, per set and averaged over sets, for the bi-encoder
losses CoSENT, Sentence-BERT, cosine-MSE and AnglE, the cross-encoder with CoSENT and with
cross-entropy, and the untrained encoder's cosine (zero-shot). Essays: 苏剑林, "CoSENT（一）"
https://kexue.fm/archives/8847, "CoSENT（二）" https://kexue.fm/archives/8860, "CoSENT（三）"
https://kexue.fm/archives/9341; AnglE: Li & Li, ACL 2024 (arXiv:2309.12871).
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np
import scipy.stats

from diffusionlab import stats
from diffusionlab.cosent.finetune import (
    BI_LOSSES,
    CROSS_LOSSES,
    FinetuneSettings,
    best_epoch_spearman,
    cache_splits,
    finetune,
)
from diffusionlab.cosent.human_rated import HUMAN_RATED, human_rated
from diffusionlab.cosent.pretrained import load_minilm

TITLE = "CoSENT (I-III) on all-MiniLM-L6-v2 and human-rated data"
SOURCES = {"I": "CoSENT（一）, https://kexue.fm/archives/8847",
           "II": "CoSENT（二）, https://kexue.fm/archives/8860",
           "III": "CoSENT（三）, https://kexue.fm/archives/9341",
           "AnglE": "Li & Li, AoE: Angle-optimized Embeddings, ACL 2024 (arXiv:2309.12871)"}
ZERO_SHOT = "zero-shot cosine"
BI = {loss: f"bi {loss}" for loss in BI_LOSSES}
CROSS = {loss: f"cross {loss}" for loss in CROSS_LOSSES}
REPLICATES = "replicates: training seeds, test Spearman ×100 averaged over the sets, paired by seed"
_COLORS = {ZERO_SHOT: "0.6", "bi cosent": "tab:red", "bi sbert": "tab:blue",
           "bi cosine_mse": "tab:gray", "bi angle": "tab:orange", "cross cosent": "tab:purple",
           "cross cross_entropy": "tab:green"}


@dataclasses.dataclass(frozen=True)
class Config:
    """The default run: the three sets, 3 seeds, the top block trained, 20 epochs on the word
    sets and 3 on the Lee documents (their pairs cost ~20x more per step). The essays train 5
    epochs over thousands of pairs; these sets have 112-435 training pairs (3-14 steps per
    epoch), so the word sets get more passes for a comparable number of steps, and the
    best-validation epoch guards against overfitting.

    Attributes:
      sets: names from :data:`diffusionlab.cosent.human_rated.HUMAN_RATED`.
      seeds: training seeds per loss (heads and batch orders).
      epochs, trainable_layers, batch_size, learning_rate, head_learning_rate: the
        :class:`FinetuneSettings` (Adam; 1e-4 on the top block, 1e-3 on the new heads, which
        start from random weights); ``epochs`` on the word sets.
      document_epochs: epochs on the Lee documents.
      word_max_length: tokens per word with [CLS]/[SEP] (the longest word has 4 pieces).
      document_max_length: tokens per Lee document with [CLS]/[SEP]: the documents (51-152
        pieces, median 99) are truncated to their first 30 pieces, about the lead sentence, to
        fit the time budget; pairs get twice that (longest-first truncation).
      margin: the equivalence margin (TOST, test Spearman ×100) for part III's "no real
        improvement".
      key: the seed of the run's key (split once: one key per set, shared by the bi- and
        cross-encoders so that seed s has the same batch order in both).
    """

    sets: tuple[str, ...] = HUMAN_RATED
    seeds: int = 3
    epochs: int = 20
    document_epochs: int = 3
    trainable_layers: int = 1
    batch_size: int = 32
    learning_rate: float = 1e-4
    head_learning_rate: float = 1e-3
    word_max_length: int = 8
    document_max_length: int = 32
    margin: float = 2.0
    key: int = 0

    @classmethod
    def quick(cls) -> Config:
        return cls(sets=("wordsim353",), seeds=2, epochs=1, word_max_length=5)

    def settings(self, name: str) -> FinetuneSettings:
        epochs = self.document_epochs if name == "lee2005" else self.epochs
        return FinetuneSettings(trainable_layers=self.trainable_layers, epochs=epochs,
                                batch_size=self.batch_size, learning_rate=self.learning_rate,
                                head_learning_rate=self.head_learning_rate)


def _interval(values) -> tuple[float, float, float]:
    """Mean and two-sided 95% Student-t interval of the seeds (NaN bounds for one seed)."""
    values = np.asarray(values, np.float64)
    mean = float(values.mean())
    if values.size < 2:
        return mean, float("nan"), float("nan")
    half = scipy.stats.t.ppf(0.975, values.size - 1) * values.std(ddof=1) / np.sqrt(values.size)
    return mean, mean - half, mean + half


def _cell(values) -> str:
    mean, low, high = _interval(values)
    if np.isnan(low):
        return f"{mean:.1f}"
    return f"{mean:.1f} [{low:.1f}, {high:.1f}]"


def _plot(models, columns, values):
    """Grouped bars: one group per set (and the average), one bar per model, 95% intervals."""
    import matplotlib.pyplot as plt

    width = 0.84 / len(models)
    fig, ax = plt.subplots(figsize=(2.0 + 2.1 * len(columns), 3.8))
    for i, model in enumerate(models):
        x = np.arange(len(columns)) + (i - (len(models) - 1) / 2) * width
        stats_ = [_interval(values[(model, c)]) for c in columns]
        means = np.array([s[0] for s in stats_])
        err = np.array([[s[0] - s[1], s[2] - s[0]] if not np.isnan(s[1]) else [0, 0]
                        for s in stats_]).T
        ax.bar(x, means, width, yerr=None if model == ZERO_SHOT else err, capsize=2,
               label=model, color=_COLORS.get(model),
               hatch="//" if model == ZERO_SHOT else None, edgecolor="white", linewidth=0.5)
    ax.set_xticks(np.arange(len(columns)), columns)
    ax.set_ylabel("test Spearman ×100")
    ax.axhline(0, color="k", lw=0.8)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("all-MiniLM-L6-v2, top block fine-tuned: test Spearman (best-valid epoch)")
    fig.tight_layout()
    return fig


def run(config: Config, out) -> None:
    timings: dict[str, float] = {}
    start = time.perf_counter()
    encoder, tokenizer = load_minilm()
    timings["load_minilm_s"] = time.perf_counter() - start
    set_keys = jax.random.split(jax.random.key(config.key), len(config.sets))

    rows, curves, zero_shot, sizes = [], {}, {}, {}
    for name, set_key in zip(config.sets, set_keys, strict=True):
        data = {split: human_rated(name, split=split) for split in ("train", "valid", "test")}
        sizes[name] = {split: len(d) for split, d in data.items()}
        score_range = data["train"].score_range
        max_length = config.document_max_length if name == "lee2005" else config.word_max_length
        splits = {split: (d.first, d.second, d.scores) for split, d in data.items()}
        for kind, losses, names in (("bi", BI_LOSSES, BI), ("cross", CROSS_LOSSES, CROSS)):
            with out.phase("training"):
                tick = time.perf_counter()
                cached = cache_splits(encoder, tokenizer, splits, score_range=score_range, kind=kind,
                                      max_length=max_length, trainable_layers=config.trainable_layers)
                jax.block_until_ready(cached["test"].states)
                timings[f"{name}_{kind}_cache_s"] = time.perf_counter() - tick
                tick = time.perf_counter()
                result = finetune(encoder, kind, losses, cached, num_seeds=config.seeds,
                                  settings=config.settings(name), key=set_key)
                timings[f"{name}_{kind}_train_s"] = time.perf_counter() - tick
            with out.phase("evaluation"):
                spearman = best_epoch_spearman(result)
            if kind == "bi":
                # Before training every bi-encoder is the pretrained one: its cosine is the
                # zero-shot score (the same for every loss and seed).
                initial = spearman["test"][:, :, 0]
                if np.ptp(initial) > 1e-6:
                    raise RuntimeError(f"untrained bi-encoders disagree on {name}: {initial}")
                zero_shot[name] = float(initial[0, 0])
            for m, loss in enumerate(losses):
                curves[(name, names[loss])] = spearman["valid"][m].mean(0)
                for s in range(config.seeds):
                    rows.append({"set": name, "model": names[loss], "seed": s,
                                 "best_epoch": int(spearman["best_epoch"][m, s]),
                                 "valid_spearman": float(spearman["best_valid"][m, s]),
                                 "test_spearman": float(spearman["test_at_best"][m, s]),
                                 "final_train_loss": float(result.train_loss[m, s, -1])})
    timings["total_s"] = time.perf_counter() - start

    models = [ZERO_SHOT, *BI.values(), *CROSS.values()]
    trained = models[1:]
    per_set = {(r["model"], r["set"]): [] for r in rows}
    for r in rows:
        per_set[(r["model"], r["set"])].append(100 * r["test_spearman"])
    # One replicate per seed: test Spearman ×100 averaged over the sets.
    average = {m: np.mean([per_set[(m, s)] for s in config.sets], axis=0) for m in trained}
    columns = [*config.sets, "average"]
    values = {(m, c): np.asarray(per_set[(m, c)]) for m in trained for c in config.sets}
    values.update({(m, "average"): average[m] for m in trained})
    values.update({(ZERO_SHOT, s): np.array([100 * zero_shot[s]]) for s in config.sets})
    values[(ZERO_SHOT, "average")] = np.array([100 * np.mean(list(zero_shot.values()))])

    out.table(rows, stem="runs", caption="Every run: the best-validation epoch and its test "
              "Spearman.", columns=["set", "model", "seed", "best_epoch", "valid_spearman",
                                    "test_spearman", "final_train_loss"])
    sizes_text = "; ".join(f"{s}: {v['train']}/{v['valid']}/{v['test']} pairs"
                           for s, v in sizes.items())
    out.table([{"model": m, **{c: _cell(values[(m, c)]) for c in columns}} for m in models],
              stem="spearman",
              caption=f"Test Spearman ×100 at the best-validation epoch: mean [95% t interval] "
                      f"over {config.seeds} training seeds ('average': the per-seed mean over "
                      f"the sets); zero-shot is the untrained encoder's cosine (deterministic). "
                      f"Train/valid/test {sizes_text}. Top {config.trainable_layers} block(s) "
                      f"trained; {config.epochs} epochs on word sets, "
                      f"{config.document_epochs} on Lee, whose documents are truncated to "
                      f"{config.document_max_length} tokens.")
    out.figure(_plot(models, columns, values), "spearman",
               caption="Test Spearman ×100 per set and averaged over sets; bars are means over "
                       "seeds with 95% t intervals; zero-shot (hatched) has none.")

    def contrast(a, b):
        return {s: np.asarray(per_set[(a, s)]) - np.asarray(per_set[(b, s)]) for s in config.sets}

    contrasts = {"CoSENT − Sentence-BERT (bi)": (BI["cosent"], BI["sbert"]),
                 "CoSENT − cosine-MSE (bi)": (BI["cosent"], BI["cosine_mse"]),
                 "AnglE − CoSENT (bi)": (BI["angle"], BI["cosent"]),
                 "cross (CE) − bi CoSENT": (CROSS["cross_entropy"], BI["cosent"]),
                 "cross CoSENT − cross CE": (CROSS["cosent"], CROSS["cross_entropy"])}
    out.table([{"contrast": label, **{s: _cell(d) for s, d in contrast(a, b).items()},
                "average": _cell(average[a] - average[b])}
               for label, (a, b) in contrasts.items()], stem="differences",
              caption="Paired differences of test Spearman ×100 (same seed), mean [95% t "
                      "interval] per set and averaged over the sets.")
    out.metric(
        test_spearman_x100={m: {c: _interval(values[(m, c)])[0] for c in columns}
                            for m in models},
        average_test_spearman_by_seed={m: average[m] for m in trained},
        zero_shot_test_spearman=zero_shot,
        valid_spearman_by_epoch={f"{s} / {m}": c for (s, m), c in curves.items()},
        pairs=sizes, seconds=timings, frozen=(
            f"embeddings and the lower {encoder.depth - config.trainable_layers} of "
            f"{encoder.depth} blocks (cached once); trained: the top "
            f"{config.trainable_layers} block(s) and the head"))

    def mean_of(m):
        return float(np.mean(average[m]))

    out.claim(f"Part I: CoSENT beats Sentence-BERT on the bi-encoder ({REPLICATES})",
              source=SOURCES["I"], expected="BERT+CoSENT 68.19 vs Sentence-BERT 61.74 (avg test "
                                            "Spearman ×100 over five Chinese tasks): above",
              verdict=stats.compare(average[BI["cosent"]], average[BI["sbert"]], paired=True),
              measured=f"CoSENT {mean_of(BI['cosent']):.1f} vs Sentence-BERT "
                       f"{mean_of(BI['sbert']):.1f} (zero-shot "
                       f"{100 * np.mean(list(zero_shot.values())):.1f})")
    out.claim(f"Part I: absolute-target cosine losses do worse: CoSENT beats cosine-MSE "
              f"({REPLICATES})", source=SOURCES["I"],
              expected="cosine losses with absolute targets often do worse than Sentence-BERT, "
                       "sometimes worse than no training: CoSENT above cosine-MSE",
              verdict=stats.compare(average[BI["cosent"]], average[BI["cosine_mse"]],
                                    paired=True),
              measured=f"CoSENT {mean_of(BI['cosent']):.1f} vs cosine-MSE "
                       f"{mean_of(BI['cosine_mse']):.1f}")
    out.claim(f"Extension: AnglE (CoSENT on a complex-space angle score) beats CoSENT "
              f"({REPLICATES})", source=SOURCES["AnglE"],
              expected="AnglE above CoSENT (STS-B Spearman 85.2 with BERT-base)",
              verdict=stats.compare(average[BI["angle"]], average[BI["cosent"]], paired=True),
              measured=f"AnglE {mean_of(BI['angle']):.1f} vs CoSENT {mean_of(BI['cosent']):.1f}")
    out.claim(f"Part II: the cross-encoder (CE) beats the CoSENT bi-encoder ({REPLICATES})",
              source=SOURCES["II"],
              expected="Interact (CE) 84.62 vs CoSENT 83.00 accuracy (BERT): above",
              verdict=stats.compare(average[CROSS["cross_entropy"]], average[BI["cosent"]],
                                    paired=True),
              measured=f"cross CE {mean_of(CROSS['cross_entropy']):.1f} vs bi CoSENT "
                       f"{mean_of(BI['cosent']):.1f}")
    out.claim(f"Part III: CoSENT on the cross-encoder is no real improvement over CE "
              f"(equivalent within ±{config.margin:g}; {REPLICATES})", source=SOURCES["III"],
              expected=f"BERT CE 66.77 vs CoSENT 67.10 Spearman: 'feasible, but no real "
                       f"improvement' (TOST margin ±{config.margin:g} points)",
              verdict=stats.equivalent(average[CROSS["cosent"]], average[CROSS["cross_entropy"]],
                                       margin=config.margin, paired=True),
              measured=f"cross CoSENT {mean_of(CROSS['cosent']):.1f} vs cross CE "
                       f"{mean_of(CROSS['cross_entropy']):.1f}")
