r"""The editing model: ``t`` positions replaced by *different* tokens (invertible forward map).

Noise :math:`\varepsilon=(u, r)`: priorities :math:`u\in[0,1)^l` and offsets
:math:`r\in\{1,\dots,K-1\}^l`. :math:`\mathcal F_t` edits the ``t`` positions of lowest priority,
:math:`x_t^i=(x_0^i+r^i)\bmod K`, so Hamming :math:`(x_t,x_0)=t` exactly and comparing
:math:`x_0` with :math:`x_t` reveals the edit. The deterministic kernel
:math:`\mathcal F_{t-1}(\hat x_0,\mathcal F_t^{-1}(\hat x_0,x_t))` copies :math:`\hat x_0` back at
one of the ``t`` edited positions, chosen uniformly: exactly one token changes per step.

Su's *first* version of the editing model replaces ``t`` random positions by uniformly drawn
tokens, which may equal the old ones (Hamming :math:`\le t`); it is not invertible, and its
generation re-corrupts ``t - 1`` random positions of :math:`\hat x_0` at every step. That step is
:func:`random_replacement_kernel` (``kernel="random_replacement"``). Its terminal law is
exactly :math:`l` uniform tokens, the prior Su gives for both versions; the terminal law of the
improved forward map excludes :math:`x_0`'s token at every position, which matters for a small
vocabulary (``prior_law``).

Reference: 苏剑林, 生成扩散模型漫谈（十一）：统一扩散模型（应用篇）, https://kexue.fm/archives/9271
"""

from __future__ import annotations

from typing import final

import jax
import jax.numpy as jnp

from diffusionlab import _checks as base
from diffusionlab.udm._checks import kernel_inputs
from diffusionlab.udm._pytree import process_dataclass
from diffusionlab.udm.discrete import (
    DISCRETE_KERNELS,
    DiscreteProcess,
    as_logits,
    first_positions,
    priorities_putting_first,
)
from diffusionlab.udm.kernels import kernel as kernel_by_name

#: The reverse kernels of edit diffusion: the discrete ones and Su's first version.
EDIT_KERNELS = DISCRETE_KERNELS + ("random_replacement",)
#: The laws :meth:`EditDiffusion.prior` draws :math:`x_l` from.
EDIT_PRIOR_LAWS = ("uniform", "forward")


def random_replacement_kernel(process, x_t, x0_hat, t, s, *, key):
    r"""Su's first version of the editing model as a reverse step: ``s`` random positions of
    :math:`\hat x_0` replaced by uniformly drawn tokens (a replacement may redraw the old token).

    .. math:: x_s^i=\begin{cases}v^i\sim\mathcal U\{0,\dots,K-1\}&i\in S\\ \hat x_0^i&i\notin S
              \end{cases},\qquad S\ \text{uniform among the } s\text{-subsets of positions},

    so :math:`P(x_s^i=\hat x_0^i\mid i\in S)=1/K` and Hamming :math:`(x_s,\hat x_0)\sim
    \mathrm{Binomial}(s,1-1/K)`. This is the fresh-noise (baseline) kernel of the first version's
    forward map, whose generation re-corrupts :math:`t-1` random positions of :math:`\hat x_0`.
    It ignores ``x_t``. For :class:`EditDiffusion`'s forward map (exactly ``s`` positions
    *changed*) it breaks the consistency constraint; it is there to measure the essay's claim
    that this step undoes the prediction.

    Args:
      process: a discrete process (``EditDiffusion``); its ``vocab`` is :math:`K`.
      x_t, x0_hat: token ids ``batch + (length,)``; t, s: times with the batch shape,
        ``1 ≤ t ≤ length``, ``0 ≤ s < t``; key: PRNG key.

    Returns:
      :math:`x_s`, token ids of ``x0_hat``'s shape and dtype.

    Raises:
      TypeError: if ``process`` is not a discrete process; otherwise as every kernel (see
        :mod:`diffusionlab.udm.kernels`).
      ValueError: as every kernel.

    Reference: 苏剑林, 生成扩散模型漫谈（十一）：统一扩散模型（应用篇）, https://kexue.fm/archives/9271
    """
    if not isinstance(process, DiscreteProcess):
        raise TypeError(f"process must be a discrete UDM process (EditDiffusion); got "
                        f"{type(process).__name__}")
    x_t, x0_hat, t, s = kernel_inputs(process, x_t, x0_hat, t, s, key)
    del x_t, t
    k_positions, k_tokens = jax.random.split(key)
    shape = jnp.shape(x0_hat)
    replaced = first_positions(jax.random.uniform(k_positions, shape), s)
    tokens = jax.random.randint(k_tokens, shape, 0, process.vocab, dtype=x0_hat.dtype)
    return jnp.where(replaced, tokens, x0_hat)


@final
@process_dataclass
class EditDiffusion(DiscreteProcess):
    r"""Discrete editing diffusion on sequences of ``length`` tokens in ``[0, vocab)``; ``T = length``.

    Predict step (a choice the essay leaves open): positions are drawn without replacement with
    probability :math:`\propto q(x_0^i\ne x_t^i\mid x_t)` (Gumbel top-``t``), and at each the
    token is drawn from :math:`q` with the current token excluded, so :math:`\hat x_0` differs
    from :math:`x_t` in exactly ``t`` positions. The loss is the cross-entropy of
    :class:`~diffusionlab.udm.discrete.DiscreteProcess`.

    Attributes:
      length: sequence length :math:`l` (also ``T``).
      vocab: number of token values :math:`K\ge2`.
      kernel: one of :data:`EDIT_KERNELS`:

        * ``"deterministic"``: the improved generation (copy :math:`\hat x_0` back at one of
          the ``t`` edited positions);
        * ``"baseline"``: the fresh-noise kernel :math:`x_s=\mathcal F_s(\hat x_0,\varepsilon')`
          of this forward map: ``s`` fresh positions of :math:`\hat x_0` edited to *different*
          tokens, so Hamming :math:`(x_s,\hat x_0)=s` (consistent, but not Su's first version);
        * ``"random_replacement"``: Su's first version, ``s`` fresh positions of
          :math:`\hat x_0` replaced by uniform tokens that may equal the old ones
          (:func:`random_replacement_kernel`; not consistent with this forward map).
      prior_law: the law :meth:`prior` draws :math:`x_l` from, one of :data:`EDIT_PRIOR_LAWS`:

        * ``"uniform"`` (default): :math:`l` uniformly random tokens, the essay's recipe (the
          exact terminal law of the first version; for this forward map it is right only up
          to the constraint :math:`x_l^i\ne x_0^i`, which a large vocabulary makes negligible);
        * ``"forward"``: the forward process run to the end on data,
          :math:`x_l=\mathcal F_l(x_0,\varepsilon)`: every position replaced by a token
          uniform among the :math:`K-1` others. For data ``x0`` drawn from the data law this is
          an exact draw from the terminal law :math:`p(x_l)=\mathbb E_{x_0}p(x_l\mid x_0)`
          (as cold diffusion starts from degraded data).

    Raises:
      TypeError: for a non-integer ``length`` or ``vocab`` or a non-string kernel or prior law.
      ValueError: for ``length`` outside ``[1, 2**31 - 1]``, ``vocab`` outside
        ``[2, 2**31 - 1]``, an unknown kernel or an unknown prior law.
    """

    prior_law: str = "uniform"

    min_vocab = 2
    kernels = EDIT_KERNELS

    def __post_init__(self):
        DiscreteProcess.__post_init__(self)
        base.check_choice(self.prior_law, "prior_law", EDIT_PRIOR_LAWS)

    # --- the reparameterised forward map ------------------------------------------------------

    def apply(self, x0, t, noise):
        r""":math:`\mathcal F_t(x_0,(u,r))`: lowest-priority ``t`` positions -> :math:`(x_0+r)\bmod K`."""
        priorities, offsets = noise
        edited = first_positions(priorities, t)
        return jnp.where(edited, (x0 + offsets) % self.vocab, x0)

    def invert(self, x0, x_t, t, *, key):
        r""":math:`\mathcal F_t^{-1}`: edited positions first (random order); offsets :math:`x_t-x_0`."""
        del t
        k_order, k_offsets = jax.random.split(key)
        changed = x_t != x0
        fill = jax.random.randint(k_offsets, jnp.shape(x0), 1, self.vocab, dtype=jnp.asarray(x0).dtype)
        offsets = jnp.where(changed, (x_t - x0) % self.vocab, fill)
        return priorities_putting_first(changed, key=k_order), offsets

    def draw_noise(self, x0, *, key):
        """Uniform priorities and offsets uniform in ``[1, K)``."""
        k_order, k_offsets = jax.random.split(key)
        shape = jnp.shape(x0)
        return (
            jax.random.uniform(k_order, shape),
            jax.random.randint(k_offsets, shape, 1, self.vocab, dtype=jnp.asarray(x0).dtype),
        )

    def reverse_kernel(self, x_t, x0_hat, t, s, *, key):
        """The kernel named by ``kernel`` (:func:`random_replacement_kernel` for Su's first version)."""
        if self.kernel == "random_replacement":
            return random_replacement_kernel(self, x_t, x0_hat, t, s, key=key)
        return kernel_by_name(self.kernel)(self, x_t, x0_hat, t, s, key=key)

    # --- what the generic sampler needs -------------------------------------------------------

    def draw_x0(self, prediction, x_t, t, *, key):
        r"""Draws :math:`\hat x_0` differing from :math:`x_t` in exactly ``t`` positions.

        Args:
          prediction: logits ``(..., l, K)`` of :math:`q(x_0\mid x_t)`, or tokens (an oracle).
          x_t: current tokens; t: times with the batch shape; key: PRNG key.
        """
        k_positions, k_tokens = jax.random.split(key)
        logits = as_logits(prediction, self.vocab)
        current = jax.nn.one_hot(x_t, self.vocab, dtype=bool)
        others = jnp.where(current, -jnp.inf, logits)
        # log q(x_0^i != x_t^i | x_t), stable even when the current token has probability ~1
        log_change = jax.nn.logsumexp(others, axis=-1) - jax.nn.logsumexp(logits, axis=-1)
        gumbel = jax.random.gumbel(k_positions, jnp.shape(x_t))
        chosen = first_positions(-(log_change + gumbel), t)
        tokens = jax.random.categorical(k_tokens, others, axis=-1).astype(x_t.dtype)
        return jnp.where(chosen, tokens, x_t)

    def prior(self, x0, *, key):
        r"""A draw of :math:`x_l` per example of ``x0``, from the law named by ``prior_law``.

        ``"uniform"``: uniformly random tokens (``x0`` gives only the shape). ``"forward"``:
        :math:`x_l=\mathcal F_l(x_0,\varepsilon)`, each position of ``x0`` replaced by a token
        uniform among the :math:`K-1` others; pass data (e.g. a resampled training batch), not
        placeholders: :math:`P(x_l^i=k)=(1-p_i(k))/(K-1)` for the data's token frequencies
        :math:`p_i`.

        Args:
          x0: token ids ``(..., length)`` in ``[0, vocab)``.
          key: PRNG key.

        Returns:
          int32 token ids of ``x0``'s shape.

        Raises:
          TypeError, ValueError: as :meth:`~diffusionlab.udm.discrete.DiscreteProcess.prior_input`.
        """
        x0 = self.prior_input(x0, key)
        if self.prior_law == "forward":
            t = jnp.full(jnp.shape(x0)[:-1], self.T)
            return self.apply(x0, t, self.draw_noise(x0, key=key)).astype(jnp.int32)
        return jax.random.randint(key, jnp.shape(x0), 0, self.vocab, dtype=jnp.int32)


__all__ = ["EDIT_KERNELS", "EDIT_PRIOR_LAWS", "EditDiffusion", "random_replacement_kernel"]
