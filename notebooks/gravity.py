# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Gravity as a generative ODE: a field-line explorer
#
# Put unit masses on a 2-D toy dataset, lying on the plane $t=0$ of $\mathbb R^3$. Their field
# $F = -\frac{1}{S_3}\mathbb E\,(x-x_0,t)/R^3$ has lines that come from a far hemisphere and end
# on the data. Following them, $\mathrm dx/\mathrm dt = F_x/F_t$ from $t=T$ to $0$, is a
# generative ODE: no training, just the exact empirical field
# (苏剑林, 《生成扩散模型漫谈（十三）：从万有引力到扩散模型》, https://kexue.fm/archives/9305).
#
# Change `DATASET`, `T` or the start points below and re-run.

# %%
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from diffusionlab import data
from diffusionlab.odes import generate, gravity, plots

QUICK = bool(os.environ.get("DIFFUSIONLAB_QUICK"))
DATASET = "two_moons"  # any of data.TOY2D_NAMES
NUM_DATA = 64 if QUICK else 512
NUM_LINES = 40 if QUICK else 200
T = 40.0
points = data.toy2d(DATASET, NUM_DATA, key=jax.random.key(0))

# %% [markdown]
# ## Field lines in a vertical slice
# The in-plane components $(F_{x_1}, F_t)$ on the half-plane $x_2 = 0$: far away the field is
# that of a single mass at the centroid; close to the plane it bends towards the nearest data.

# %%
gx, gt = np.meshgrid(np.linspace(-3, 3, 40), np.linspace(0.02, 3, 30))
query = jnp.stack([gx.ravel(), np.zeros(gx.size)], 1).astype(jnp.float32)
f_x, f_t = gravity.field(query, jnp.asarray(gt.ravel(), jnp.float32), points)
near = np.asarray(points)[np.abs(np.asarray(points)[:, 1]) < 0.15, 0]
plots.field_slice(gx, gt, np.asarray(f_x[:, 0]).reshape(gx.shape),
                  np.asarray(f_t).reshape(gx.shape), near, title="Field lines, x₂ = 0")
plt.show()

# %% [markdown]
# ## Following the lines from the prior
# Start points on the plane $t=T$ with density $\propto(\|x\|^2+T^2)^{-3/2}$ (the projection of
# a uniform hemisphere), integrated in $\log t$ with an adaptive solver.

# %%
x_T = gravity.sample_prior(NUM_LINES, 2, T, key=jax.random.key(1)) + points.mean(0)
velocity = jax.tree_util.Partial(lambda x, t, masses: gravity.velocity(x, t, masses),
                                 masses=points)
sol = generate(velocity, x_T, T, t_end=1e-3, time="log", rtol=1e-3, atol=1e-3,
               save_trajectory=40)
print("NFE:", int(sol.nfe))
plots.trajectories_2d(np.asarray(sol.xs), np.asarray(sol.ts), np.asarray(points),
                      title=f"{DATASET}: field lines from t = {T:g} to the data")
plt.show()

# %% [markdown]
# ## Try your own start points
# Every line ends on a training point: the exact empirical field memorises.

# %%
mine = jnp.array([[0.0, 0.0], [2.5, 2.5], [-2.5, 1.0]])
ends = generate(velocity, mine * T / 3, T, t_end=1e-3, time="log", rtol=1e-4,
                atol=1e-4).samples
nearest = np.argmin(((np.asarray(ends)[:, None] - np.asarray(points)[None]) ** 2).sum(-1), 1)
for s, e, n in zip(np.asarray(mine), np.asarray(ends), nearest, strict=True):
    print(f"start {s} → end {e.round(4)}, nearest training point {np.asarray(points)[n].round(4)}")
