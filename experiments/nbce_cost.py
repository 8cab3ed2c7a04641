"""NBCE cost: time and memory per generated token against n, against concatenation.

For each n, one question over n test documents is decoded both ways: NBCE (the n+1 rows in
one batch, one KV cache) and plain greedy decoding of the concatenation. Timed: the prefill
and the per-token decoding step; memory: the bytes of the KV cache held while decoding.
The rival training-free rules are timed on the same question: the parallel ensemble (n rows,
one cache), and PCW, APE and the exact block merge (n blocks encoded in parallel, then one
query row over all their keys and values).
Essay: https://kexue.fm/archives/9617 (cost linear in the number of contexts).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from diffusionlab import lm, stats
from diffusionlab.lm.train import LMTrainConfig
from diffusionlab.nbce.combine_evaluate import rule_cost
from diffusionlab.nbce.cost import decoding_cost
from diffusionlab.nbce.generate import nbce_prompts
from diffusionlab.nbce.plots import curves_figure

# Its claims rest on measured time per token: `--jobs` runs it by itself, after the rest.
RUNS_ALONE = True
TITLE = "NBCE cost: time and memory per generated token against n, against concatenation"
ESSAY = "NBCE (kexue.fm/archives/9617)"
# "Linear": a fitted exponent within 1 ± 0.2 (the band the earlier rule's upper bound 1.2 set).
LINEAR_TOLERANCE = 0.2
RULE_LABELS = {"ensemble": "parallel ensemble", "pcw": "PCW", "ape": "APE", "exact": "exact merge"}


@dataclasses.dataclass(frozen=True)
class Config:
    """``linear_from``: the smallest n in the growth fit. Below it the per-step overhead of a
    small batch dominates the time per token ("or less while the batch is small")."""

    lm: LMTrainConfig = LMTrainConfig()
    num_documents: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    steps: int = 16
    repeats: int = 5
    linear_from: int = 16

    @classmethod
    def quick(cls) -> Config:
        return cls(lm=LMTrainConfig.quick(), num_documents=(1, 2, 4), steps=4, repeats=2,
                   linear_from=1)


def _slope(x, y) -> float:
    """Exponent of a power-law fit y ∝ x^k over the swept points (log-log least squares)."""
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


def _nbce_growth(x, costs, *, linear_from: int):
    """NBCE's time per token (every timing repeat a point) and KV-cache bytes against its rows.

    NBCE decodes ``n + 1`` rows (the n contexts and the empty one), so both are fitted against
    ``n + 1`` over ``n >= linear_from``.
    """
    keep = [i for i, n in enumerate(x) if n >= linear_from]
    rows = np.array([x[i] + 1 for i in keep], float)
    seconds = np.array([costs[i].token_seconds for i in keep]).T  # (repeats, sizes)
    memory = np.array([costs[i].cache_bytes for i in keep], float)
    return (stats.growth_exponent(rows, seconds, expected=1.0, tolerance=LINEAR_TOLERANCE),
            stats.growth_exponent(rows, memory, expected=1.0, tolerance=LINEAR_TOLERANCE))


def run(config: Config, out) -> None:
    with out.phase("training"):  # loads the shared checkpoint when one exists
        apply, params = lm.train_or_load(config.lm, lm.shared_checkpoints(out.directory),
                                        progress=False)
    tokenizer = lm.ByteTokenizer()
    corpus = dataclasses.replace(config.lm.corpus, split="test")
    rows = []
    costs = {"NBCE": [], "concatenation": [], **{label: [] for label in RULE_LABELS.values()}}
    for n in config.num_documents:
        example = corpus.single(n, np.random.default_rng(n))
        question = tokenizer.encode(example.question)
        nbce_rows = nbce_prompts([tokenizer.encode(d) for d in example.documents], question,
                                 prefix=[tokenizer.bos_id], pad_id=apply.pad_id,
                                 max_length=apply.max_length, length=apply.max_length)
        concat = tokenizer.encode(" ".join(example.documents) + example.question, bos=True)
        for name, prompts, nbce in (("NBCE", nbce_rows, True),
                                    ("concatenation", concat[None], False)):
            with out.phase("sampling"):  # the timed prefill and decoding steps
                cost = decoding_cost(apply, params, prompts, nbce=nbce, steps=config.steps,
                                     repeats=config.repeats)
            costs[name].append(cost)
            rows.append({"n": n, "method": name, "rows x length": f"{prompts.shape[0]} x "
                         f"{prompts.shape[1]}", "prefill ms": 1e3 * cost.prefill_seconds,
                         "ms per token": 1e3 * cost.seconds_per_token,
                         "KV cache MiB": cost.cache_bytes / 2**20})
        for rule, name in RULE_LABELS.items():
            with out.phase("sampling"):
                cost = rule_cost(apply, params, example, rule, tokenizer=tokenizer,
                                 steps=config.steps, repeats=config.repeats)
            costs[name].append(cost)
            shape = (f"{n} x {nbce_rows.shape[1]}" if rule == "ensemble"
                     else f"{n} x {apply.max_length - 1 - len(question)} + 1 query")
            rows.append({"n": n, "method": name, "rows x length": shape,
                         "prefill ms": 1e3 * cost.prefill_seconds,
                         "ms per token": 1e3 * cost.seconds_per_token,
                         "KV cache MiB": cost.cache_bytes / 2**20})
    out.table(rows, stem="cost", columns=["n", "method", "rows x length", "prefill ms",
                                          "ms per token", "KV cache MiB"],
              caption=f"Best of {config.repeats} timings on this machine ({config.steps} "
                      f"decoding steps); the KV cache includes its padding masks. PCW, APE and "
                      f"the exact merge keep the n blocks' keys and values (each block padded to "
                      f"L - 1 - question tokens) plus the query row's own cache.")

    def series(field, scale):
        return {name: (np.array([getattr(c, field) for c in cs]) * scale, None)
                for name, cs in costs.items()}

    def repeats(scale):  # every timing repeat: mean ± std (the table gives the best)
        return {name: (np.array([np.mean(c.token_seconds) for c in cs]) * scale,
                       np.array([np.std(c.token_seconds) for c in cs]) * scale)
                for name, cs in costs.items()}

    x = config.num_documents
    fig = curves_figure(
        [(x, repeats(1e3)), (x, series("cache_bytes", 2.0**-20)),
         (x, series("prefill_seconds", 1e3))],
        xlabels=["number of documents n"] * 3,
        ylabels=["ms per generated token", "KV cache (MiB)", "prefill (ms)"],
        titles=["time per generated token", "memory held while decoding", "prompt pass"],
        logx=[True] * 3, logy=[True] * 3, suptitle="Decoding cost against n")
    out.figure(fig, "cost", caption=f"Per-token time (mean ± std over the {config.repeats} "
                                    f"timing repeats), cache memory and prefill time (best of "
                                    f"the repeats) against n (log-log).")
    with out.phase("evaluation"):
        exponents = {f"{name}_{field}_exponent": _slope(x, [getattr(c, field) for c in cs])
                     for name, cs in costs.items()
                     for field in ("seconds_per_token", "cache_bytes", "prefill_seconds")}
        time_growth, memory_growth = _nbce_growth(x, costs["NBCE"],
                                                  linear_from=config.linear_from)
    out.metric(**exponents, NBCE_token_seconds_by_repeat={
        n: list(c.token_seconds) for n, c in zip(x, costs["NBCE"], strict=True)})
    k = exponents["NBCE_seconds_per_token_exponent"]
    fitted = [n for n in x if n >= config.linear_from]
    out.claim(f"NBCE's cost grows linearly with the number of contexts: time per token and "
              f"KV-cache memory against the n + 1 rows, n = {fitted[0]}…{fitted[-1]} "
              f"(replicates: the {config.repeats} timing repeats at each n)", source=ESSAY,
              expected=f"time per token ∝ n (exponent 1, or less while the batch is small); "
                       f"tested: exponent 1 ± {LINEAR_TOLERANCE:g}",
              verdict=stats.all_of(time_growth, memory_growth,
                                   names=["time per token exponent", "KV-cache exponent"],
                                   claim=f"OLS slopes of log time per token and of log KV-cache "
                                         f"bytes on log(n + 1), n ≥ {config.linear_from}: each "
                                         f"t 95% CI within 1 ± {LINEAR_TOLERANCE:g}"),
              measured=f"time exponent {time_growth.estimate:.2f} [{time_growth.low:.2f}, "
                       f"{time_growth.high:.2f}], cache exponent {memory_growth.estimate:.2f}; "
                       f"best-of-repeats exponent over every n {k:.2f}",
              previous=k <= 1.2)
