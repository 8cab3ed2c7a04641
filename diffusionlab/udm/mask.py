r"""The mask model: ``t`` positions replaced by ``[MASK]`` (id ``vocab``); reverse unmasks one per step.

Noise: priorities :math:`u\in[0,1)^l`; :math:`\mathcal F_t` masks the ``t`` lowest. The mask
positions are visible, so the map is invertible (up to their order, which the inverse draws).
The deterministic kernel fills one uniformly chosen masked position with :math:`\hat x_0`'s
token, drawn from :math:`q(x_0\mid x_t)` there: Gibbs-like sampling with a masked LM.

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

#: Logit margin that makes a visible token certain in the network head.
_VISIBLE_LOGIT = 100.0


@final
@process_dataclass
class MaskDiffusion(DiscreteProcess):
    r"""Masked discrete diffusion on ``length`` tokens in ``[0, vocab)``; ``[MASK]`` is id ``vocab``.

    The network head copies the visible tokens (their logits are a one-hot with margin 100),
    so the unmasked positions contribute ~0 to the cross-entropy: the loss is the masked-LM
    loss.

    Attributes:
      length: sequence length :math:`l` (also ``T``).
      vocab: number of token values :math:`K\ge1` (the mask id is ``K``).
      kernel: ``"deterministic"`` (unmask one position per step, others never change) or
        ``"baseline"`` (re-mask ``t - 1`` fresh positions of :math:`\hat x_0`).

    Raises:
      TypeError: for a non-integer ``length`` or ``vocab`` or a non-string kernel.
      ValueError: for ``length`` outside ``[1, 2**31 - 1]``, ``vocab`` outside
        ``[1, 2**31 - 2]`` (the mask id ``vocab`` is an int32) or an unknown kernel.
    """

    min_vocab = 1
    max_vocab = 2**31 - 2
    has_mask_token = True

    @property
    def mask_id(self) -> int:
        return self.vocab

    # --- the reparameterised forward map ------------------------------------------------------

    def apply(self, x0, t, noise):
        """Masks the ``t`` positions of lowest priority."""
        return jnp.where(first_positions(noise, t), self.mask_id, x0)

    def invert(self, x0, x_t, t, *, key):
        """Priorities putting the masked positions of ``x_t`` first, in random order."""
        del x0, t
        return priorities_putting_first(x_t == self.mask_id, key=key)

    def draw_noise(self, x0, *, key):
        """Uniform priorities."""
        return jax.random.uniform(key, jnp.shape(x0))

    # --- the network head and the generic sampler ---------------------------------------------

    def from_network(self, output, x_t, t):
        """Logits at the masked positions; the visible tokens are copied (one-hot, margin 100)."""
        del t
        visible = (x_t != self.mask_id)[..., None]
        return jnp.where(visible, _VISIBLE_LOGIT * jax.nn.one_hot(x_t, self.vocab), output)

    def draw_x0(self, prediction, x_t, t, *, key):
        r"""Draws :math:`\hat x_0\sim q(x_0\mid x_t)` at the masked positions; visible tokens are kept."""
        del t
        tokens = jax.random.categorical(key, as_logits(prediction, self.vocab), axis=-1)
        return jnp.where(x_t == self.mask_id, tokens.astype(x_t.dtype), x_t)

    def prior(self, x0, *, key):
        """All ``[MASK]``, shaped like ``x0``.

        Raises:
          TypeError, ValueError: as :meth:`~diffusionlab.udm.discrete.DiscreteProcess.prior_input`.
        """
        x0 = self.prior_input(x0, key)
        return jnp.full(jnp.shape(x0), self.mask_id, jnp.int32)
