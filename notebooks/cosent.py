# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # CoSENT: a ranking loss on pair similarities
#
# After 苏剑林's series "CoSENT（一）" (https://kexue.fm/archives/8847), "CoSENT（二）"
# (https://kexue.fm/archives/8860) and "CoSENT（三）" (https://kexue.fm/archives/9341).
#
# For pairs with scores $s_a$ and graded labels $y_a$,
# $$\mathcal L=\log\Big(1+\sum_{y_a>y_b}e^{\lambda(s_b-s_a)}\Big),$$
# one term per ordered comparison the labels imply; ties are excluded.

# %%
import os

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from diffusionlab.cosent import (
    BI_ENCODER_LOSSES,
    cosent_loss,
    cosent_loss_sorted,
    synthetic_task,
)
from diffusionlab.cosent.comparison import Protocol, compare_on_tasks, summarize
from diffusionlab.cosent.plots import plot_curves

QUICK = bool(os.environ.get("DIFFUSIONLAB_QUICK"))

# %% [markdown]
# ## The two check values (λ = 1)
# The lower-labelled pair scoring higher is penalised more: $\log(1+e^{0.8})$ against
# $\log(1+e^{-0.8})$.

# %%
for scores in ([0.9, 0.1], [0.1, 0.9]):
    value = cosent_loss(jnp.array(scores), jnp.array([0, 1]), scale=1.0)
    print(scores, float(value))

# %% [markdown]
# ## Dense and sorted forms agree
# The sorted form factorises the double sum through a cumulative logsumexp over labels,
# $O(B\log B)$ instead of $O(B^2)$. Ties (here 6 grades over 1000 pairs) stay excluded.

# %%
rng = np.random.default_rng(0)
scores = jnp.asarray(rng.uniform(-1, 1, 1000), jnp.float32)
labels = jnp.asarray(rng.integers(0, 6, 1000))
print(float(cosent_loss(scores, labels)), float(cosent_loss_sorted(scores, labels)))

# %% [markdown]
# ## The synthetic tasks
# Hard negatives (paraphrase) share more words than the positives; adversarial negatives
# swap agent and patient and keep every word.

# %%
for name in ("sts", "paraphrase", "adversarial"):
    task = synthetic_task(name, num_train=3, num_valid=1, num_test=1)
    for a, b, y in zip(task.train.texts_a, task.train.texts_b, task.train.labels, strict=True):
        print(f"{name:12s} {y:.0f} | {a} | {b}")

# %% [markdown]
# ## Part I in miniature: bi-encoders trained with CoSENT, Sentence-BERT, cosine-MSE
# Every loss and seed trains in one compiled program; the validation split is scored as
# training goes. `python -m experiments cosent_biencoder` runs the full comparison.

# %%
protocol = Protocol.quick(tasks=("sts",)) if QUICK else Protocol(tasks=("sts",))
rows, curves, eval_steps = compare_on_tasks(protocol, "bi", BI_ENCODER_LOSSES)
for row in summarize(rows, metrics=("test_spearman",)):
    print(row["loss"], f"{row['test_spearman_mean']:.1f} ± {row['test_spearman_std']:.1f}")
plot_curves(curves, eval_steps, steps_per_epoch=protocol.steps_per_epoch,
            title="Bi-encoders on the graded task")
plt.show()
