"""NBCE cost: time and memory per generated token against n, against concatenation.

For each n, one question over n test documents is decoded both ways: NBCE (the n+1 rows in
one batch, one KV cache) and plain greedy decoding of the concatenation. Timed: the prefill
and the per-token decoding step; memory: the bytes of the KV cache held while decoding.
Essay: https://kexue.fm/archives/9617 (cost linear in the number of contexts).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from diffusionlab import lm
from diffusionlab.lm.train import LMTrainConfig
from diffusionlab.nbce.cost import decoding_cost
from diffusionlab.nbce.generate import nbce_prompts
from diffusionlab.nbce.plots import curves_figure
from experiments.nbce_accuracy import checkpoint_directory

TITLE = "NBCE cost: time and memory per generated token against n, against concatenation"
ESSAY = "NBCE (kexue.fm/archives/9617)"


@dataclasses.dataclass(frozen=True)
class Config:
    lm: LMTrainConfig = LMTrainConfig()
    num_documents: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    steps: int = 16
    repeats: int = 5

    @classmethod
    def quick(cls) -> Config:
        return cls(lm=LMTrainConfig.quick(), num_documents=(1, 4), steps=4, repeats=1)


def _slope(x, y) -> float:
    """Exponent of a power-law fit y ∝ x^k over the swept points (log-log least squares)."""
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


def run(config: Config, out) -> None:
    apply, params = lm.train_or_load(config.lm, checkpoint_directory(out), progress=False)
    tokenizer = lm.ByteTokenizer()
    corpus = dataclasses.replace(config.lm.corpus, split="test")
    rows = []
    costs = {"NBCE": [], "concatenation": []}
    for n in config.num_documents:
        example = corpus.single(n, np.random.default_rng(n))
        question = tokenizer.encode(example.question)
        nbce_rows = nbce_prompts([tokenizer.encode(d) for d in example.documents], question,
                                 prefix=[tokenizer.bos_id], pad_id=apply.pad_id,
                                 max_length=apply.max_length, length=apply.max_length)
        concat = tokenizer.encode(" ".join(example.documents) + example.question, bos=True)
        for name, prompts, nbce in (("NBCE", nbce_rows, True),
                                    ("concatenation", concat[None], False)):
            cost = decoding_cost(apply, params, prompts, nbce=nbce, steps=config.steps,
                                 repeats=config.repeats)
            costs[name].append(cost)
            rows.append({"n": n, "method": name, "rows x length": f"{prompts.shape[0]} x "
                         f"{prompts.shape[1]}", "prefill ms": 1e3 * cost.prefill_seconds,
                         "ms per token": 1e3 * cost.seconds_per_token,
                         "KV cache MiB": cost.cache_bytes / 2**20})
    out.table(rows, stem="cost", columns=["n", "method", "rows x length", "prefill ms",
                                          "ms per token", "KV cache MiB"],
              caption=f"Best of {config.repeats} timings on this machine ({config.steps} "
                      f"decoding steps); the KV cache includes its padding masks.")

    def series(field, scale):
        return {name: (np.array([getattr(c, field) for c in cs]) * scale, None)
                for name, cs in costs.items()}

    x = config.num_documents
    fig = curves_figure(
        [(x, series("seconds_per_token", 1e3)), (x, series("cache_bytes", 2.0**-20)),
         (x, series("prefill_seconds", 1e3))],
        xlabels=["number of documents n"] * 3,
        ylabels=["ms per generated token", "KV cache (MiB)", "prefill (ms)"],
        titles=["time per generated token", "memory held while decoding", "prompt pass"],
        logx=[True] * 3, logy=[True] * 3, suptitle="Decoding cost against n")
    out.figure(fig, "cost", caption="Per-token time, cache memory and prefill time against n "
                                    "(log-log).")
    exponents = {f"{name}_{field}_exponent": _slope(x, [getattr(c, field) for c in cs])
                 for name, cs in costs.items()
                 for field in ("seconds_per_token", "cache_bytes", "prefill_seconds")}
    out.metric(**exponents)
    k = exponents["NBCE_seconds_per_token_exponent"]
    out.claim("NBCE's cost grows linearly with the number of contexts", source=ESSAY,
              expected="time per token ∝ n (exponent 1, or less while the batch is small)",
              measured=f"fitted exponent {k:.2f} (cache memory "
                       f"{exponents['NBCE_cache_bytes_exponent']:.2f})",
              holds=k <= 1.2)
