# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Check your own SDE against its density path, with test functions
#
# For $dx = f_t(x)\,dt + g_t\,dw$ and every smooth test function $\phi$,
# $$\frac{d}{dt}\mathbb E[\phi(x_t)]
#   = \mathbb E\big[f_t(x_t)\cdot\nabla\phi(x_t) + \tfrac12 g_t^2\,\Delta\phi(x_t)\big],$$
# which is the Fokker–Planck equation in weak form (苏剑林, 《测试函数法推导连续性方程和Fokker-Planck方程》,
# https://kexue.fm/archives/9461). `diffusionlab.weakform.verify_fokker_planck` estimates both sides
# for Gaussian bumps and random Fourier features at a grid of times and turns the residuals into
# z-scores. All you supply is the drift, $g$, and either samples of $p_t$ or its log-density.

# %%
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from diffusionlab import weakform as wf
from diffusionlab.weakform import plots, reference

QUICK = bool(os.environ.get("DIFFUSIONLAB_QUICK"))
N = 10_000 if QUICK else 100_000
TIMES = np.linspace(0.1, 2.0, 4 if QUICK else 20)

# %% [markdown]
# ## 1. An SDE and a sampler of its marginals
# An Ornstein–Uhlenbeck process $dx = -\theta x\,dt + g\,dw$ started from $\mathcal N(m_0, s_0^2 I)$
# stays Gaussian, with mean $m_t = m_0e^{-\theta t}$ and variance
# $v_t = s_0^2e^{-2\theta t} + \frac{g^2}{2\theta}(1 - e^{-2\theta t})$. The library's reference
# process (`diffusionlab.weakform.reference.OrnsteinUhlenbeck`) draws
# $x_t = m_t + \sqrt{v_t}\,\varepsilon$ with the same $\varepsilon$ for every $t$ at a fixed key:
# smooth in $t$, so the time derivative can be taken by autodiff. Its `drift(x, t)` is
# $-\theta x$ for one point; `sampler(num)` returns `sampler(t, key) -> (num, 2)`.

# %%
ou = reference.OrnsteinUhlenbeck(theta=1.0, g=0.8, m0=1.5, s0=0.3)
g, drift, sampler = ou.g, ou.drift, ou.sampler(N)


report = wf.verify_fokker_planck(drift, g, sampler=sampler, times=TIMES, key=jax.random.key(0),
                                 num_samples=N, time_derivative="autodiff")
print(report)
report.table()[:3]

# %% [markdown]
# ## 2. A deliberate mistake is caught
# Dropping the ½ in front of $g^2\Delta\phi$ is the same as checking with $\sqrt2\,g$:

# %%
print(wf.verify_fokker_planck(drift, np.sqrt(2) * g, sampler=sampler, times=TIMES,
                              key=jax.random.key(0), num_samples=N, time_derivative="autodiff"))

# %% [markdown]
# ## 3. An analytic density: weak form by importance sampling, and the strong form
# With `log_density=` instead of `sampler=`, expectations are importance-sampled and
# $\partial_t\log p_t$ comes from autodiff. The pointwise residual
# $\partial_t p + \nabla\cdot(fp) - \tfrac12 g^2\Delta p$ (divided by $p$) should be at round-off.

# %%
log_density = ou.log_density  # the normalised Gaussian log p_t(x) for one point x
print(wf.verify_fokker_planck(drift, g, log_density=log_density, dim=2, times=TIMES,
                              key=jax.random.key(1), num_samples=N))
points = jax.random.normal(jax.random.key(2), (8, 2))
residual = wf.strong_form_residuals(drift, g, log_density, points=points, times=TIMES)
print("max |strong residual / p| =", float(jnp.max(jnp.abs(residual))))

# %% [markdown]
# ## 4. Both sides over time

# %%
fig, ax = plt.subplots(figsize=(6, 4))
plots.sides(ax, report, "Ornstein–Uhlenbeck")
ax.legend(fontsize=7)
plt.show()

# %% [markdown]
# **Your own process.** Replace `drift`, `g` and `sampler` (or `log_density`); any function
# `sampler(t, key) -> (N, d)` works. `diffusionlab.weakform.cases` lists the correct and
# deliberately wrong pairs the `weakform_verifier` experiment checks. A sampler that
# simulates the SDE (e.g. `diffusionlab.solve.solve_sde`) works too; use the default central
# difference in time, and a larger `dt` when the simulated paths at `t ± dt` are not coupled.
# For state-dependent noise wrap $G(x,t)$ in `wf.DiffusionMatrix` (Itô form).
