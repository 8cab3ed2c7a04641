r"""What the discrete (token) processes share: random position orders, the cross-entropy loss,
the one-hot network head, and :class:`DiscreteProcess`, the base of edit and mask diffusion.

The noise of a discrete process includes priorities :math:`u\in[0,1)^l`; :math:`\mathcal F_t`
acts on the ``t`` positions of lowest priority. Inverting recovers the *set* of acted-on
positions from :math:`(x_0,x_t)`; their order is uniformly random, so the inverse draws it.
The model :math:`q(x_0\mid x_t)` factorises over positions, so :math:`-\log q` is a
cross-entropy and the network outputs ``vocab`` logits per position.

Reference: 苏剑林, 生成扩散模型漫谈（十一）：统一扩散模型（应用篇）, https://kexue.fm/archives/9271
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from diffusionlab import _checks as base
from diffusionlab.udm import _checks
from diffusionlab.udm.base import Process

#: The reverse kernels every discrete process offers (see :mod:`diffusionlab.udm.kernels`);
#: a subclass may add its own (``EditDiffusion.kernels``).
DISCRETE_KERNELS = ("deterministic", "baseline")


def first_positions(priorities, count):
    """Boolean mask of the ``count`` positions of lowest priority (``count`` has the batch shape)."""
    # rank_i = #{j : u_j < u_i}, ties broken by index; an O(l^2) count compiles and runs faster
    # than a double argsort at the sequence lengths used here (l <= a few hundred)
    u_i, u_j = priorities[..., :, None], priorities[..., None, :]
    index = jnp.arange(priorities.shape[-1])
    earlier = (index[None, :] < index[:, None]).reshape((1,) * (priorities.ndim - 1) + 2 * index.shape)
    before = (u_j < u_i) | ((u_j == u_i) & earlier)
    rank = jnp.sum(before, axis=-1)
    return rank < jnp.asarray(count)[..., None]


def priorities_putting_first(changed, *, key):
    """Priorities with every ``changed`` position before every other one, each group in random order."""
    u = jax.random.uniform(key, jnp.shape(changed))
    return jnp.where(changed, 0.5 * u, 0.5 + 0.5 * u)


def as_logits(prediction, vocab: int):
    """Logits ``(..., l, vocab)``; integer tokens become near-one-hot logits (margin 100)."""
    prediction = jnp.asarray(prediction)
    if jnp.issubdtype(prediction.dtype, jnp.integer):
        return 100.0 * jax.nn.one_hot(prediction, vocab)
    return prediction


def cross_entropy(x0, logits):
    """Per-example mean over positions of :math:`-\\log q(x_0^i\\mid x_t)`."""
    log_q = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(log_q, x0[..., None], axis=-1)[..., 0], axis=-1)


@dataclasses.dataclass(frozen=True)
class DiscreteProcess(Process):
    r"""A process on sequences of ``length`` tokens in ``[0, vocab)``, with ``T = length``.

    Subclasses (decorated with :func:`~diffusionlab.udm.process_dataclass`) set the bounds on
    ``vocab`` and supply the forward map, ``draw_x0`` and ``prior``; the loss is the
    cross-entropy :math:`-\frac1l\sum_i\log q(x_0^i\mid x_t)` of per-position logits.

    Attributes:
      length: sequence length :math:`l` (also ``T``).
      vocab: number of token values :math:`K`.
      kernel: one of the class's ``kernels`` (by default :data:`DISCRETE_KERNELS`).

    Raises:
      TypeError: for a non-integer ``length`` or ``vocab`` or a non-string kernel.
      ValueError: for ``length`` outside ``[1, 2**31 - 1]``, ``vocab`` outside the subclass's
        range or an unknown kernel.
    """

    length: int = 64
    vocab: int = 8
    kernel: str = "deterministic"

    #: The kernel names the ``kernel`` field accepts.
    kernels: ClassVar[tuple[str, ...]] = DISCRETE_KERNELS
    min_vocab: ClassVar[int] = 2
    max_vocab: ClassVar[int] = base.HUGE
    #: Whether the states may hold the id ``vocab`` (a mask token).
    has_mask_token: ClassVar[bool] = False

    def __post_init__(self):
        _checks.check_discrete_config(length=self.length, vocab=self.vocab, kernel=self.kernel,
                                      min_vocab=self.min_vocab, kernels=self.kernels,
                                      max_vocab=self.max_vocab)

    @property
    def T(self) -> int:
        return self.length

    @property
    def event_shape(self) -> tuple[int]:
        return (self.length,)

    def check_states(self, x, name: str, *, allow_mask: bool = False) -> jax.Array:
        """``x`` checked as integer token ids in ``[0, vocab)`` (or the mask id, where allowed).

        Raises:
          TypeError: naming ``name`` for non-arrays and non-integer dtypes.
          ValueError: naming ``name`` for an id outside the vocabulary.
        """
        return _checks.tokens(x, vocab=self.vocab, name=name,
                              allow_mask=allow_mask and self.has_mask_token)

    def check_prediction(self, prediction, x0) -> jax.Array:
        """``prediction`` checked as real logits of shape ``x0.shape + (vocab,)``.

        Raises:
          TypeError, ValueError: naming ``prediction``.
        """
        prediction = _checks.data(prediction, "prediction")
        if prediction.shape != x0.shape + (self.vocab,):
            raise ValueError(f"prediction must be logits of shape {x0.shape + (self.vocab,)}; "
                             f"got {prediction.shape}")
        return prediction

    def nll(self, x0, prediction, t):
        r"""Per-example cross-entropy :math:`-\frac1l\sum_i\log q(x_0^i\mid x_t)` (logits in
        ``prediction``); ``t`` is not used."""
        del t
        return cross_entropy(x0, prediction)

    # --- the network head: one-hot tokens in, logits out ----------------------------------------

    @property
    def network_channels(self) -> tuple[int, int]:
        return self.vocab + int(self.has_mask_token), self.vocab

    def network_input(self, x_t) -> jax.Array:
        return jax.nn.one_hot(x_t, self.network_channels[0])

    def network_output_shape(self, x_t) -> tuple[int, ...]:
        return tuple(jnp.shape(x_t)) + (self.vocab,)

    def prior_input(self, x0, key) -> jax.Array:
        """Checks ``prior(x0, key=)``'s arguments; returns ``x0`` as token ids.

        Raises:
          TypeError: if ``x0`` does not hold integer token ids or ``key`` is not a PRNG key.
          ValueError: if ``x0``'s shape is not ``(..., length)`` or it holds ids outside
            ``[0, vocab)``.
        """
        return _checks.prior_tokens(self, x0, key)


__all__ = ["DISCRETE_KERNELS", "DiscreteProcess", "as_logits", "cross_entropy", "first_positions",
           "priorities_putting_first"]
