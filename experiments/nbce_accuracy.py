"""NBCE exact-match accuracy against the number of documents, beyond the trained length.

A small LM trained on single documents of length <= L answers "what is KEY's value?" over n
test documents (new keys, values and prose) of which exactly one holds the fact. NBCE (three
poolings) is compared with truncation to the last L tokens, concatenation beyond L, and the
oracle document alone. Essays: https://kexue.fm/archives/9617, https://kexue.fm/archives/9632.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from diffusionlab import lm
from diffusionlab.lm.train import LMTrainConfig
from diffusionlab.nbce.evaluate import (
    NBCESettings,
    baseline_answers,
    exact_match,
    first_choice_hits,
    nbce_answers,
)
from diffusionlab.nbce.plots import curves_figure

TITLE = "NBCE: exact-match accuracy against the number of contexts n (beyond the trained length)"

ESSAY = "NBCE (kexue.fm/archives/9617)"
NOTES = "NBCE supplementary notes (kexue.fm/archives/9632)"


@dataclasses.dataclass(frozen=True)
class Config:
    lm: LMTrainConfig = LMTrainConfig()
    num_documents: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    questions: int = 48
    seeds: tuple[int, ...] = (0, 1, 2)
    max_new_tokens: int = 5

    @classmethod
    def quick(cls) -> Config:
        return cls(lm=LMTrainConfig.quick(), num_documents=(1, 4), questions=4, seeds=(0, 1, 2),
                   max_new_tokens=4)


def checkpoint_directory(out) -> pathlib.Path:
    """Where the trained LM is cached: beside the experiments' result folders."""
    return pathlib.Path(out.directory).parent / "checkpoints"


def test_examples(config: Config, num_documents: int, seed: int) -> list[lm.QAExample]:
    corpus = dataclasses.replace(config.lm.corpus, split="test")
    rng = np.random.default_rng([seed, num_documents])
    return [corpus.single(num_documents, rng) for _ in range(config.questions)]


POOLINGS = {f"NBCE {p}": NBCESettings(pooling=p) for p in ("min_entropy", "average", "max")}
CHOICE = "first choice relevant"
BASELINE_LABELS = {"truncate": "truncate to last L", "concat": "concatenate (beyond L)",
                   "oracle": "oracle document"}


def run(config: Config, out) -> None:
    apply, params = lm.train_or_load(config.lm, checkpoint_directory(out), progress=False)
    tokenizer = lm.ByteTokenizer()
    labels = list(POOLINGS) + list(BASELINE_LABELS.values())
    scores = {label: np.zeros((len(config.seeds), len(config.num_documents))) for label in labels}
    lengths = np.zeros(len(config.num_documents))
    first_choice = np.zeros((len(config.seeds), len(config.num_documents)))
    seeds = len(config.seeds)
    for j, n in enumerate(config.num_documents):
        # All seeds in one batch; the scores are split back per seed.
        examples = [e for seed in config.seeds for e in test_examples(config, n, seed)]
        lengths[j] = np.mean([len(" ".join(e.documents)) for e in examples])
        answers = nbce_answers(apply, params, examples, list(POOLINGS.values()),
                               tokenizer=tokenizer, max_new_tokens=config.max_new_tokens)
        for label, settings in POOLINGS.items():
            hits = exact_match(answers[settings], examples)
            scores[label][:, j] = hits.reshape(seeds, -1).mean(1)
        first_choice[:, j] = first_choice_hits(apply, params, examples,
                                               tokenizer=tokenizer).reshape(seeds, -1).mean(1)
        for method, label in BASELINE_LABELS.items():
            got = baseline_answers(apply, params, examples, method, tokenizer=tokenizer,
                                   max_new_tokens=config.max_new_tokens)
            scores[label][:, j] = exact_match(got, examples).reshape(seeds, -1).mean(1)

    rows = []
    for j, n in enumerate(config.num_documents):
        row = {"n": n, "mean tokens": round(float(lengths[j]) + 1, 1)}
        for label in labels:
            row[label] = f"{scores[label][:, j].mean():.3f} ± {scores[label][:, j].std():.3f}"
        row[CHOICE] = f"{first_choice[:, j].mean():.3f} ± {first_choice[:, j].std():.3f}"
        rows.append(row)
    out.table(rows, stem="accuracy", columns=["n", "mean tokens", *labels, CHOICE],
              caption=f"Exact-match accuracy (mean ± std over {len(config.seeds)} seeds of "
                      f"{config.questions} questions); trained length L = "
                      f"{config.lm.model.max_length} tokens; 'mean tokens' is the total "
                      f"length of the n documents. '{CHOICE}': how often min-entropy "
                      f"pooling picks the document that holds the fact at the first answer "
                      f"token (top-p 0.95).")
    fig = curves_figure(
        [(config.num_documents,
          {label: (scores[label].mean(0), scores[label].std(0)) for label in labels})],
        xlabels=["number of documents n (one holds the fact)"],
        ylabels=["exact-match accuracy"],
        titles=[f"trained length L = {config.lm.model.max_length} tokens"], logx=[True],
        suptitle="NBCE against truncation, concatenation and the oracle")
    out.figure(fig, "accuracy", caption="Exact-match accuracy against n; error bars: std over "
                                         "seeds.")

    last = -1
    n_max = config.num_documents[last]
    final = {label: float(scores[label][:, last].mean()) for label in labels}
    out.metric(**{f"accuracy_n{n_max}_{k.replace(' ', '_')}": v for k, v in final.items()},
               num_documents=list(config.num_documents),
               first_choice_relevant=[float(v) for v in first_choice.mean(0)])
    oracle = final[BASELINE_LABELS["oracle"]]
    nbce = final["NBCE min_entropy"]
    out.claim("Min-entropy NBCE keeps answering from the right context far beyond the "
              "trained length", source=ESSAY,
              expected="accuracy close to the single-context (oracle) accuracy",
              measured=f"n={n_max}: NBCE {nbce:.3f} vs oracle {oracle:.3f}; the first "
                       f"choice is the relevant document in {first_choice[:, last].mean():.3f}"
                       f" of questions",
              holds=nbce >= 0.8 * oracle)
    out.claim("Min-entropy selection beats average pooling", source=NOTES,
              expected="min-entropy > average",
              measured=f"n={n_max}: {nbce:.3f} vs {final['NBCE average']:.3f}",
              holds=nbce > final["NBCE average"])
    concat = final[BASELINE_LABELS["concat"]]
    out.claim("Beyond the trained length, plain concatenation fails", source=ESSAY,
              expected="concatenation accuracy drops with n",
              measured=f"n={n_max}: concatenation {concat:.3f} vs NBCE {nbce:.3f}",
              holds=concat < nbce)
