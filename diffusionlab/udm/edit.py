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

import jax
import jax.numpy as jnp

from diffusionlab.udm import _checks
from diffusionlab.udm._positions import as_logits, first_positions, priorities_putting_first
from diffusionlab.udm._pytree import process_dataclass
from diffusionlab.udm.kernels import baseline_kernel, deterministic_kernel

DISCRETE_KERNELS = ("deterministic", "baseline")


def cross_entropy(x0, logits):
    """Per-example mean over positions of :math:`-\\log q(x_0^i\\mid x_t)`."""
    log_q = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(log_q, x0[..., None], axis=-1)[..., 0], axis=-1)


def token_loss(process, x0, prediction, t):
    """The discrete processes' loss: checks ``(x0, prediction, t)``, then :func:`cross_entropy`.

    ``prediction`` must be logits of shape ``x0.shape + (process.vocab,)`` and ``t`` in
    ``[1, process.length]``.

    Raises:
      TypeError: if ``x0`` does not hold integer token ids, ``prediction`` is not a real float
        array or ``t`` not integer(s).
      ValueError: for ``t`` outside ``[1, length]``, ids outside ``[0, vocab)``, shapes that do
        not match or (when concrete) NaN/inf logits.
    """
    x0, t, _ = _checks.forward_inputs(process, x0, t, t_low=1, tokens_of=process.vocab)
    prediction = _checks.data(prediction, "prediction")
    if prediction.shape != x0.shape + (process.vocab,):
        raise ValueError(
            f"prediction must be logits of shape {x0.shape + (process.vocab,)}; got {prediction.shape}"
        )
    return cross_entropy(x0, prediction)


@process_dataclass
class EditDiffusion:
    r"""Discrete editing diffusion on sequences of ``length`` tokens in ``[0, vocab)``; ``T = length``.

    Predict step (a choice the essay leaves open): positions are drawn without replacement with
    probability :math:`\propto q(x_0^i\ne x_t^i\mid x_t)` (Gumbel top-``t``), and at each the
    token is drawn from :math:`q` with the current token excluded, so :math:`\hat x_0` differs
    from :math:`x_t` in exactly ``t`` positions.

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

    length: int = 64
    vocab: int = 8
    kernel: str = "deterministic"

    def __post_init__(self):
        _checks.check_discrete_config(length=self.length, vocab=self.vocab, kernel=self.kernel,
                                      min_vocab=2, kernels=DISCRETE_KERNELS)

    @property
    def T(self) -> int:
        return self.length

    @property
    def event_shape(self) -> tuple[int]:
        return (self.length,)

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

    # --- public API ---------------------------------------------------------------------------

    def forward(self, x0, t, *, key):
        """Edits ``t`` distinct uniformly chosen positions, each to a uniformly drawn different token.

        Raises:
          TypeError: if ``x0`` does not hold integer token ids, ``t`` is not integer(s) or
            ``key`` not a PRNG key.
          ValueError: for ``t`` outside ``[0, length]``, a wrong shape, or ids outside ``[0, vocab)``.
        """
        x0, t, batch = _checks.forward_inputs(self, x0, t, key, tokens_of=self.vocab)
        return self.apply(x0, jnp.broadcast_to(t, batch), self.draw_noise(x0, key=key))

    def reverse_step(self, x_t, x0_hat, t, *, key, s=None):
        """One reverse step ``t -> s``; for ``s = t - 1`` the deterministic kernel changes exactly one token.

        Raises:
          TypeError: if ``x_t`` or ``x0_hat`` do not hold integer token ids, the times are not
            integers or ``key`` is not a PRNG key.
          ValueError: for times out of range, mismatched shapes, or ids outside ``[0, vocab)``.
        """
        x_t, x0_hat, t, s = _checks.reverse_inputs(x_t, x0_hat, t, s, event_shape=self.event_shape,
                                                   T=self.T, key=key, process=self)
        kernel = deterministic_kernel if self.kernel == "deterministic" else baseline_kernel
        return kernel(self, x_t, x0_hat, t, s, key=key)

    def loss(self, x0, prediction, t):
        r"""Per-example cross-entropy :math:`-\frac1l\sum_i\log q(x_0^i\mid x_t)`; ``prediction``: logits.

        ``prediction`` has shape ``x0.shape + (vocab,)``; ``t`` (in ``[1, length]``) is checked,
        not used.

        Raises:
          TypeError, ValueError: as :func:`~diffusionlab.udm.edit.token_loss`.
        """
        return token_loss(self, x0, prediction, t)

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
          TypeError: if ``x0`` does not hold integer token ids or ``key`` is not a PRNG key.
          ValueError: if ``x0``'s shape is not ``(..., length)`` or it holds ids outside
            ``[0, vocab)``.
        """
        x0 = _checks.prior_tokens(self, x0, key)
        return jax.random.randint(key, jnp.shape(x0), 0, self.vocab, dtype=jnp.int32)

    def finish(self, x_last, x0_hat):
        """The sample is the state after the last step."""
        del x0_hat
        return x_last
