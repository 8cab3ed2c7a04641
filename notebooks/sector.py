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
# # n random points in a disk, all in one sector
#
# Four ducks swim in a round pond. What is the chance that all four are in one half of it?
# More generally: n points uniform in a disk, what is the probability $P_n(\theta)$ that a
# sector of central angle $\theta$ (apex at the centre) holds all of them?
# (苏剑林, 《圆内随机n点在同一个圆心角为θ的扇形的概率》, https://kexue.fm/archives/9324)
#
# Only the angles matter. With $x = 1-\theta/2\pi$, inclusion–exclusion over the n gaps gives
# $$P_n(\theta)=\sum_{k\ge1}(-1)^{k-1}\binom nk(1-kx)_+^{\,n-1}.$$

# %%
import os
from fractions import Fraction

import jax
import matplotlib.pyplot as plt
import numpy as np

from diffusionlab.sector import (
    FULL_TURN,
    probability,
    probability_exact,
    probability_mc,
    probability_turns,
)
from diffusionlab.sector.naive import probability_plain

QUICK = bool(os.environ.get("DIFFUSIONLAB_QUICK"))
SAMPLES = 5_000 if QUICK else 200_000

# %% [markdown]
# ## The four ducks, exactly and by simulation

# %%
print("P_4(pi) exact:", probability_exact(4, Fraction(1, 2)))
print("P_5(4pi/3) exact:", probability_exact(5, Fraction(2, 3)))
estimate, se = probability_mc(4, np.pi, key=jax.random.key(0), num_samples=SAMPLES)
print(f"Monte Carlo (points drawn in the disk): {float(estimate):.4f} ± {float(se):.4f}")

# %% [markdown]
# ## The whole curve
# Above $\theta=\pi$ every new term of the sum switches on at $\theta=2\pi(1-1/k)$; from
# $\theta = 2\pi(1-1/n)$ on, the pigeonhole principle makes $P_n = 1$.

# %%
theta = np.linspace(0.01, FULL_TURN, 300)
fig, ax = plt.subplots(figsize=(7, 4))
for n in (2, 3, 4, 6, 10, 20):
    ax.plot(theta / np.pi, probability(n, theta), label=f"n = {n}")
ax.axvline(1.0, color="0.5", ls=":")
ax.set_xlabel("θ / π")
ax.set_ylabel("P_n(θ)")
ax.legend()
plt.show()

# %% [markdown]
# ## Why the plain sum is not enough
# For large n the terms are like $\lambda^k/k!$ with $\lambda = n(1-x)^{n-1}$ and alternate in
# sign, so about $\log_{10}\max_k T_k$ digits cancel. Compare float32, float64 and the stable
# solver with the exact rational value at $\lambda\approx 10$.

# %%
for n in (10, 100) if QUICK else (10, 30, 100, 300, 1000):
    q = 1 - Fraction(round(64 * np.log(n / 10)), 64 * n)
    exact = float(probability_exact(n, q))
    p32, _ = probability_plain(n, q, dtype=np.float32)
    p64, digits = probability_plain(n, q, dtype=np.float64)
    stable = float(probability_turns(n, q))
    print(f"n={n:5d}  max term 1e{digits[0]:.1f}  float32 err {abs(p32[0] - exact):.1e}  "
          f"float64 err {abs(p64[0] - exact):.1e}  stable err {abs(stable - exact):.1e}")

# %% [markdown]
# ## Explore
# Change `n` and `turns` (θ as a fraction of a full turn) and rerun.

# %%
n, turns = 4, Fraction(5, 8)  # n up to 4 reuses the compiled Monte Carlo kernel
exact = probability_exact(n, turns)
estimate, se = probability_mc(n, float(turns) * FULL_TURN, key=jax.random.key(1),
                              num_samples=SAMPLES)
print(f"P_{n}(2pi*{turns}) = {exact} = {float(exact):.6f};  MC {float(estimate):.4f} ± "
      f"{float(se):.4f}")
