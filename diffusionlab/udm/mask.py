r"""The mask model: ``t`` positions replaced by ``[MASK]`` (id ``vocab``); reverse unmasks one per step.

Noise: priorities :math:`u\in[0,1)^l`; :math:`\mathcal F_t` masks the ``t`` lowest. The mask
positions are visible, so the map is invertible (up to their order, which the inverse draws).
The deterministic kernel fills one uniformly chosen masked position with :math:`\hat x_0`'s
token, drawn from :math:`q(x_0\mid x_t)` there: Gibbs-like sampling with a masked LM.

Reference: 苏剑林, 生成扩散模型漫谈（十一）：统一扩散模型（应用篇）, https://kexue.fm/archives/9271
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from diffusionlab.udm import _checks
from diffusionlab.udm._positions import as_logits, first_positions, priorities_putting_first
from diffusionlab.udm._pytree import process_dataclass
from diffusionlab.udm.edit import DISCRETE_KERNELS, token_loss
from diffusionlab.udm.kernels import baseline_kernel, deterministic_kernel


@process_dataclass
class MaskDiffusion:
    r"""Masked discrete diffusion on ``length`` tokens in ``[0, vocab)``; ``[MASK]`` is id ``vocab``.

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

    length: int = 64
    vocab: int = 8
    kernel: str = "deterministic"

    def __post_init__(self):
        _checks.check_discrete_config(length=self.length, vocab=self.vocab, kernel=self.kernel,
                                      min_vocab=1, kernels=DISCRETE_KERNELS, max_vocab=2**31 - 2)

    @property
    def T(self) -> int:
        return self.length

    @property
    def mask_id(self) -> int:
        return self.vocab

    @property
    def event_shape(self) -> tuple[int]:
        return (self.length,)

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

    # --- public API ---------------------------------------------------------------------------

    def forward(self, x0, t, *, key):
        """Masks ``t`` distinct uniformly chosen positions.

        Raises:
          TypeError: if ``x0`` does not hold integer token ids, ``t`` is not integer(s) or
            ``key`` not a PRNG key.
          ValueError: for ``t`` outside ``[0, length]``, a wrong shape, or ids outside ``[0, vocab)``.
        """
        x0, t, batch = _checks.forward_inputs(self, x0, t, key, tokens_of=self.vocab)
        return self.apply(x0, jnp.broadcast_to(t, batch), self.draw_noise(x0, key=key))

    def reverse_step(self, x_t, x0_hat, t, *, key, s=None):
        """One reverse step ``t -> s`` (``s = t - 1``: exactly one position is unmasked).

        Raises:
          TypeError: if ``x_t`` or ``x0_hat`` do not hold integer token ids, the times are not
            integers or ``key`` is not a PRNG key.
          ValueError: for times out of range, mismatched shapes, or ids outside the vocabulary
            (``x_t`` may hold the mask id).
        """
        x_t, x0_hat, t, s = _checks.reverse_inputs(x_t, x0_hat, t, s, event_shape=self.event_shape,
                                                   T=self.T, key=key, process=self)
        kernel = deterministic_kernel if self.kernel == "deterministic" else baseline_kernel
        return kernel(self, x_t, x0_hat, t, s, key=key)

    def loss(self, x0, prediction, t):
        r"""Per-example cross-entropy :math:`-\frac1l\sum_i\log q(x_0^i\mid x_t)`; ``prediction``: logits.

        ``prediction`` has shape ``x0.shape + (vocab,)``.

        A predictor that copies the visible tokens (see :mod:`.networks`) makes the unmasked
        positions contribute ~0, so this is the masked-LM loss. ``t`` (in ``[1, length]``) is
        checked, not used.

        Raises:
          TypeError, ValueError: as :func:`~diffusionlab.udm.edit.token_loss`.
        """
        return token_loss(self, x0, prediction, t)

    # --- what the generic sampler needs -------------------------------------------------------

    def draw_x0(self, prediction, x_t, t, *, key):
        r"""Draws :math:`\hat x_0\sim q(x_0\mid x_t)` at the masked positions; visible tokens are kept."""
        del t
        tokens = jax.random.categorical(key, as_logits(prediction, self.vocab), axis=-1)
        return jnp.where(x_t == self.mask_id, tokens.astype(x_t.dtype), x_t)

    def prior(self, x0, *, key):
        """All ``[MASK]``, shaped like ``x0``.

        Raises:
          TypeError: if ``x0`` does not hold integer token ids or ``key`` is not a PRNG key.
          ValueError: if ``x0``'s shape is not ``(..., length)`` or it holds ids outside
            ``[0, vocab)``.
        """
        x0 = _checks.prior_tokens(self, x0, key)
        return jnp.full(jnp.shape(x0), self.mask_id, jnp.int32)

    def finish(self, x_last, x0_hat):
        """The sample is the state after the last step."""
        del x0_hat
        return x_last
