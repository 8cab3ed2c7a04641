r"""The editing model: ``t`` positions replaced by *different* tokens (invertible forward map).

Noise :math:`\varepsilon=(u, r)`: priorities :math:`u\in[0,1)^l` and offsets
:math:`r\in\{1,\dots,K-1\}^l`. :math:`\mathcal F_t` edits the ``t`` positions of lowest priority,
:math:`x_t^i=(x_0^i+r^i)\bmod K`, so Hamming :math:`(x_t,x_0)=t` exactly and comparing
:math:`x_0` with :math:`x_t` reveals the edit. The deterministic kernel
:math:`\mathcal F_{t-1}(\hat x_0,\mathcal F_t^{-1}(\hat x_0,x_t))` copies :math:`\hat x_0` back at
one of the ``t`` edited positions, chosen uniformly: exactly one token changes per step.

Reference: 苏剑林, 生成扩散模型漫谈（十一）：统一扩散模型（应用篇）, https://kexue.fm/archives/9271
"""

from __future__ import annotations

from typing import final

import jax
import jax.numpy as jnp

from diffusionlab.udm._pytree import process_dataclass
from diffusionlab.udm.discrete import (
    DiscreteProcess,
    as_logits,
    first_positions,
    priorities_putting_first,
)


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
      kernel: ``"deterministic"`` (the improved generation) or ``"baseline"`` (re-edit ``t - 1``
        fresh positions of :math:`\hat x_0`: Su's first version).

    Raises:
      TypeError: for a non-integer ``length`` or ``vocab`` or a non-string kernel.
      ValueError: for ``length`` outside ``[1, 2**31 - 1]``, ``vocab`` outside
        ``[2, 2**31 - 1]`` or an unknown kernel.
    """

    min_vocab = 2

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
        """Uniformly random tokens shaped like ``x0`` (the terminal law, up to the 'different' constraint).

        Raises:
          TypeError, ValueError: as :meth:`~diffusionlab.udm.discrete.DiscreteProcess.prior_input`.
        """
        x0 = self.prior_input(x0, key)
        return jax.random.randint(key, jnp.shape(x0), 0, self.vocab, dtype=jnp.int32)
