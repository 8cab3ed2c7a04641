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
# # A new diffusion process in a few lines (Unified Diffusion Model)
#
# Su's UDM essays (https://kexue.fm/archives/9262, https://kexue.fm/archives/9271) build every
# diffusion model from two choices: a forward map $x_t=\mathcal F_t(x_0,\varepsilon)$ and a
# reverse kernel $p(x_{t-1}\mid x_t, x_0=\hat x_0)$. Here we write a forward map that is in none
# of the five worked examples, a *rotation* between data and noise,
#
# $$\mathcal F_t(x_0,\varepsilon)=\cos\theta_t\,x_0+\sin\theta_t\,\varepsilon,\qquad \theta_t=\tfrac{\pi}{2}\,(t/T)^{0.7},$$
#
# and sample from it with an oracle $\hat x_0$ predictor: the exact posterior of a small
# mixture of atoms. The kernels, the sampler and the checks all come from `diffusionlab.udm`.

# %%
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt

from diffusionlab import udm
from diffusionlab.udm.consistency import marginal_consistency

QUICK = bool(os.environ.get("DIFFUSIONLAB_QUICK"))
NUM = 256 if QUICK else 2000
T = 20 if QUICK else 50

# %% [markdown]
# ## The process: $\mathcal F_t$, its inverse, and a kernel

# %%
def theta(t):
    return 0.5 * jnp.pi * (t / T) ** 0.7


def F(x0, t, eps):
    return jnp.cos(theta(t)) * x0 + jnp.sin(theta(t)) * eps


def F_inverse(x0, x_t, t):
    s = jnp.sin(theta(t))
    return jnp.where(s > 0, (x_t - jnp.cos(theta(t)) * x0) / jnp.where(s > 0, s, 1.0), 0.0)


rotation = udm.CustomDiffusion(F, F_inverse, T=T, kernel="deterministic", event_shape=(2,))

# %% [markdown]
# The data: eight atoms on a circle. Given $x_t$, the posterior over atoms is exact, because
# $x_t\mid x_0=a_k\sim\mathcal N(\cos\theta_t\,a_k,\ \sin^2\theta_t\,I)$. The oracle *draws*
# $\hat x_0$ from it (the essay's "predict" step $\hat x_0\sim p(x_0\mid x_t)$).

# %%
angles = jnp.arange(8) * 2 * jnp.pi / 8
atoms = 2.0 * jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=1)


def oracle(params, x_t, t):
    c, s = jnp.cos(theta(t))[:, None, None], jnp.sin(theta(t))[:, None, None]
    d2 = jnp.sum((x_t[:, None, :] - c * params["atoms"][None]) ** 2, -1)
    logits = -d2 / (2 * jnp.maximum(s[..., 0] ** 2, 1e-12))
    key = jax.random.fold_in(params["key"], t[0])
    return params["atoms"][jax.random.categorical(key, logits, axis=-1)]


predict_x0 = jax.tree_util.Partial(oracle, {"atoms": atoms, "key": jax.random.key(0)})

# %% [markdown]
# ## Sampling, with the deterministic and the baseline kernel

# %%
data = atoms[jax.random.randint(jax.random.key(1), (NUM,), 0, 8)]
fig, axes = plt.subplots(1, 3, figsize=(12, 4))
axes[0].scatter(*data.T, s=4)
axes[0].set_title("data (8 atoms)")
for ax, name in zip(axes[1:], ["deterministic", "baseline"]):
    process = udm.CustomDiffusion(F, F_inverse, T=T, kernel=name, event_shape=(2,))
    x_T = process.prior(data, key=jax.random.key(2))
    samples, path = udm.sample(process, predict_x0, x_T, key=jax.random.key(3), trajectory=True)
    for i in range(0, NUM, max(1, NUM // 40)):
        ax.plot(*path[:, i].T, lw=0.5, alpha=0.5)
    ax.scatter(*samples.T, s=6, c="k", zorder=3)
    ax.set_title(f"{name} kernel: x_T → x_0")
for ax in axes:
    ax.set_aspect("equal")
    ax.set_xlabel("x₁")
    ax.set_ylabel("x₂")
fig.tight_layout()

# %% [markdown]
# ## The kernels keep the marginals: $\int p(x_{t-1}\mid x_t,x_0)p(x_t\mid x_0)dx_t=p(x_{t-1}\mid x_0)$
#
# A Monte Carlo check (z-scores of the first two moments, kernel route against a direct draw).

# %%
for name in udm.KERNELS:
    extra = {"sigma_tilde": 0.5} if name == "gaussian_interpolation" else {}
    result = marginal_consistency(rotation, udm.kernel(name), atoms[0], T // 2, key=jax.random.key(4),
                                  num=4000, **extra)
    print(f"{name:24s} max|z| = {result.max_abs_z:.2f}")
