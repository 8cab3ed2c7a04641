# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.16.0
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # NBCE: asking a tiny LM questions over many contexts
#
# NBCE (Su, [kexue.fm/archives/9617](https://kexue.fm/archives/9617)) runs each context as its
# own row, next to a row with no context, and merges the rows' next-token predictions:
#
# $$\log p(T\mid S_1..S_n) = (\beta+1)\,\mathcal P[\log p(T\mid S_k)] - \beta\log p(T),$$
#
# where the pooling $\mathcal P$ picks the row with the lowest entropy. Here the model is a
# small byte-level transformer trained on single documents of at most $L$ tokens, holding
# "KEY: value." facts amid filler prose. We load the checkpoint `make reproduce` wrote (or
# train it), then ask it about one fact hidden among many documents, far beyond $L$.

# %%
import os
import pathlib

import numpy as np

from diffusionlab import lm
from diffusionlab.lm.train import LMTrainConfig
from diffusionlab.nbce import nbce_generate

QUICK = bool(os.environ.get("DIFFUSIONLAB_QUICK"))
config = LMTrainConfig.quick() if QUICK else LMTrainConfig()
checkpoints = pathlib.Path("..") / "results" / "checkpoints"
print("checkpoint:", checkpoints / lm.checkpoint_name(config))
apply, params = lm.train_or_load(config, checkpoints)
tokenizer = lm.ByteTokenizer()
print("trained length L =", apply.max_length, "tokens")

# %% [markdown]
# ## A question over many documents
# The test split uses keys, values and filler words the model never saw in training, so it
# must copy the value from the context.

# %%
n = 4 if QUICK else 32
corpus = lm.QACorpus("test")
example = corpus.single(n, np.random.default_rng(7))
print(f"{n} documents, {len(' '.join(example.documents))} characters in all; e.g.:")
for doc in example.documents[:3]:
    print("  ", doc)
print("question:", repr(example.question), " expected answer:", example.answer,
      " (in document", example.relevant[0], ")")

# %%
out = nbce_generate(apply, params, list(example.documents), example.question,
                    max_new_tokens=5, tokenizer=tokenizer)
answer = tokenizer.decode(np.asarray(out.tokens))
print("NBCE answer:", repr(answer), "| correct:", answer == example.answer)
print("context chosen at each step:", np.asarray(out.choices) - 1)

# %% [markdown]
# The chosen row is the one with the lowest entropy. A document that holds the fact gives a
# sharp prediction; the others do not know the value and spread their probability:

# %%
import matplotlib.pyplot as plt  # noqa: E402

entropies = np.asarray(out.entropies)[0]
fig, ax = plt.subplots(figsize=(7, 3))
ax.bar(np.arange(n + 1), entropies, color=["0.6"] + ["C0"] * n)
ax.bar(example.relevant[0] + 1, entropies[example.relevant[0] + 1], color="C3",
       label="document with the fact")
ax.set_xlabel("row (0 = no context, k = document k-1)")
ax.set_ylabel("entropy of the first answer token")
ax.legend()
plt.show()

# %% [markdown]
# ## Against concatenation beyond the trained length
# Running all documents as one long prompt puts the fact at positions the model never
# trained on.

# %%
prompt = tokenizer.encode(" ".join(example.documents) + example.question, bos=True)
concat = lm.generate(apply, params, prompt[None], max_new_tokens=5)
print(f"concatenation ({len(prompt)} tokens):", repr(tokenizer.decode(np.asarray(concat)[0])))

# %% [markdown]
# ## The other training-free rules
# `combine_generate` answers the same question with every rule that combines independently
# encoded contexts: NBCE, the parallel ensemble (a mean of probabilities), Parallel Context
# Windows, APE (attention temperature and scale, 0.9 each) and the exact block merge (full
# attention over all blocks, positions past $L$). `nbce_accuracy` and `nbce_cost` compare them
# against n.

# %%
from diffusionlab.nbce import combine_generate  # noqa: E402

for rule in ("nbce", "ensemble", "pcw", "ape", "exact"):
    tokens = combine_generate(apply, params, list(example.documents), example.question,
                              rule=rule, max_new_tokens=5, tokenizer=tokenizer)
    text = tokenizer.decode(np.asarray(tokens))
    print(f"{rule:9s} {text!r:12s} correct: {text == example.answer}")

# %% [markdown]
# ## Ask your own question
# Any strings work; `beta`, `eta`, `top_p` and `pooling` are the knobs of the reference loop.

# %%
contexts = ["the comet passed. ZQ: 518. pilots slept.", "KX: 204. glaciers hum.",
            "violet skies. MB: 733."]
for pooling in ("min_entropy", "average", "max"):
    out = nbce_generate(apply, params, contexts, "\nQ: KX?\nA: KX: ", max_new_tokens=5,
                        tokenizer=tokenizer, pooling=pooling)
    print(f"{pooling:12s}", repr(tokenizer.decode(np.asarray(out.tokens))))
