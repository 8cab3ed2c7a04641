r"""The UDM process contract, and the methods written once over it.

The theory essay builds every diffusion model from one reparameterised forward map

.. math:: x_t=\mathcal F_t(x_0,\varepsilon),\qquad \varepsilon\sim q(\varepsilon),

a reverse kernel :math:`p(x_s\mid x_t,x_0=\hat x_0)` and a model :math:`q(x_0\mid x_t)` trained
with :math:`-\log q`. A process is a frozen dataclass pytree (:func:`process_dataclass`) that
subclasses :class:`Process` and supplies only what is its own:

* the forward map: ``apply(x0, t, noise)``, ``draw_noise(x0, *, key)`` and
  ``invert(x0, x_t, t, *, key)`` (:math:`\mathcal F_t^{-1}`, random only where the map leaves a
  symmetry);
* ``prior(x0, *, key)``: a draw from the terminal law, shaped like the data batch ``x0``;
* ``nll(x0, prediction, t)``: the per-example :math:`-\log q(x_0\mid x_t)` up to constants;
* the reverse kernel ``reverse_kernel(x_t, x0_hat, t, s, *, key)``: by default the kernel named
  by the process's ``kernel`` field (:mod:`diffusionlab.udm.kernels`);
* ``T`` and ``event_shape`` (``None``: any event shape, the batch shape is then ``t``'s);
* the network head: how many channels per position a network reads and writes
  (``network_channels``), what it reads (``network_input``) and how its raw output becomes
  the prediction ``loss`` and the sampler expect (``from_network``).

:class:`Process` then gives ``forward``, ``reverse_step`` and ``loss`` with their argument
checks, the predict step ``draw_x0`` (the prediction itself) and ``finish`` (the last state),
which :func:`diffusionlab.udm.sample`, :func:`diffusionlab.udm.training.fit_process` and the
networks of :mod:`diffusionlab.udm.networks` use without knowing the process.

Reference: 苏剑林, 生成扩散模型漫谈（十）：统一扩散模型（理论篇）, https://kexue.fm/archives/9262
"""

from __future__ import annotations

import abc
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from diffusionlab.udm import _checks
from diffusionlab.udm._pytree import process_dataclass
from diffusionlab.udm.kernels import kernel as kernel_by_name

__all__ = ["Process", "event_mean", "process_dataclass"]


def event_mean(values, t) -> jax.Array:
    """The mean of ``values`` over its event axes: every axis after the batch axes of ``t``."""
    return jnp.mean(values, axis=tuple(range(jnp.ndim(t), jnp.ndim(values))))


class Process(abc.ABC):
    r"""A UDM process: subclass it, decorate with :func:`process_dataclass`, supply the
    abstract methods (see the module docstring), and the framework samples and trains it.

    Times are integers: ``t`` in ``[0, T]`` (``[1, T]`` for a loss or a reverse step), a
    scalar or the batch shape; a reverse step goes ``t -> s`` with ``0 ≤ s < t``.
    """

    T: int
    event_shape: tuple[int, ...] | None

    # --- what every process supplies ------------------------------------------------------------

    @abc.abstractmethod
    def apply(self, x0, t, noise):
        r""":math:`\mathcal F_t(x_0,\varepsilon)` on checked inputs (``t`` has the batch shape)."""

    @abc.abstractmethod
    def invert(self, x0, x_t, t, *, key):
        r"""A draw of :math:`\varepsilon` given :math:`(x_0,x_t)`: :math:`\mathcal F_t^{-1}(x_0,x_t)`."""

    @abc.abstractmethod
    def draw_noise(self, x0, *, key):
        r""":math:`\varepsilon\sim q(\varepsilon)` for the batch ``x0``."""

    @abc.abstractmethod
    def prior(self, x0, *, key):
        """A draw from the terminal law, one per example of the data batch ``x0``."""

    @abc.abstractmethod
    def nll(self, x0, prediction, t):
        r"""Per-example :math:`-\log q(x_0\mid x_t)` up to constants, on checked inputs.

        ``prediction`` is what the network head returns (:math:`\hat x_0`, or logits) and ``t``
        has the batch shape. :meth:`loss` checks the arguments and calls this.
        """

    def reverse_kernel(self, x_t, x0_hat, t, s, *, key):
        r"""The kernel :math:`p(x_s\mid x_t,x_0=\hat x_0)` on checked inputs (``t``, ``s``: the
        batch shape). By default the kernel named by the process's ``kernel`` field."""
        return kernel_by_name(self.kernel)(self, x_t, x0_hat, t, s, key=key)

    # --- the network head -----------------------------------------------------------------------

    #: Whether a network over the positions of one example (a U-Net on 8×8 data) can serve the
    #: process; ``False`` makes :func:`~diffusionlab.udm.networks.make_network` use an MLP.
    spatial_network: ClassVar[bool] = True

    @property
    def network_channels(self) -> tuple[int, int]:
        """Channels per position the network reads and writes (``(1, 1)``: real data)."""
        return 1, 1

    def network_sizes(self, data_shape: tuple[int, ...]) -> tuple[int, int]:
        """Flat input and output sizes of an MLP serving examples of ``data_shape``."""
        size = math.prod(self.event_shape if self.event_shape else data_shape)
        c_in, c_out = self.network_channels
        return size * c_in, size * c_out

    def network_input(self, x_t) -> jax.Array:
        """What the network reads at ``x_t``: ``(batch..., positions..., c_in)`` or ``x_t`` itself."""
        return x_t

    def network_output_shape(self, x_t) -> tuple[int, ...]:
        """The shape of the raw network output for states ``x_t``."""
        return tuple(jnp.shape(x_t))

    def from_network(self, output, x_t, t):
        """The prediction ``loss`` and the sampler expect, from the raw network output (identity)."""
        del x_t, t
        return output

    # --- parts trained with the network ---------------------------------------------------------

    @property
    def trainable_params(self) -> Any:
        """Parameters of the process itself trained with the network (``None``: none)."""
        return None

    def with_params(self, params) -> Process:
        """The same process with new :attr:`trainable_params`."""
        if params is not None:
            raise ValueError(f"{type(self).__name__} has no trainable parameters; got params")
        return self

    def initialised(self, data_shape: tuple[int, ...], network, *, key) -> Process:
        """The process ready for training on examples of ``data_shape`` (fresh trainable parts)."""
        del data_shape, network, key
        return self

    # --- states, predictions and shapes ---------------------------------------------------------

    def check_states(self, x, name: str, *, allow_mask: bool = False) -> jax.Array:
        """``x`` checked as the process's states: real floats (float32 or wider, finite).

        Raises:
          TypeError, ValueError: naming ``name``.
        """
        del allow_mask
        return _checks.data(x, name)

    def check_prediction(self, prediction, x0) -> jax.Array:
        """``prediction`` checked against the data ``x0``: real floats of ``x0``'s shape.

        Raises:
          TypeError, ValueError: naming ``prediction``.
        """
        prediction = _checks.data(prediction, "prediction")
        _checks.check_same_shape(x0, prediction, names=("x0", "prediction"))
        return prediction

    def state_shape(self, x0_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape of the states :math:`x_t` of a data batch of shape ``x0_shape``."""
        return tuple(x0_shape)

    # --- written once for every process ---------------------------------------------------------

    def forward(self, x0, t, *, key):
        r"""Draws :math:`x_t=\mathcal F_t(x_0,\varepsilon)`, :math:`\varepsilon\sim q`.

        Args:
          x0: clean data, shape ``batch + event_shape`` (real floats, or token ids in
            ``[0, vocab)`` for a discrete process).
          t: integer time(s) in ``[0, T]``: a scalar or the batch shape.
          key: PRNG key for :math:`\varepsilon`.

        Returns:
          :math:`x_t` (for real data: in float32 when ``x0`` is half precision).

        Raises:
          TypeError: if ``x0`` is not an array of the process's kind, ``t`` not integer(s) or
            ``key`` not a PRNG key.
          ValueError: if ``t`` is outside ``[0, T]``, ``x0``'s shape does not match, or (when
            concrete) ``x0`` holds NaN/inf or token ids outside the vocabulary.
        """
        x0, t, batch = _checks.forward_inputs(self, x0, t, key)
        return self.apply(x0, jnp.broadcast_to(t, batch), self.draw_noise(x0, key=key))

    def reverse_step(self, x_t, x0_hat, t, *, key, s=None):
        r"""One reverse step :math:`x_t\to x_s` (``s = t - 1`` by default) with :meth:`reverse_kernel`.

        Args:
          x_t: current states, shape ``batch + event_shape``.
          x0_hat: the predicted :math:`\hat x_0`, same shape.
          t: integer time(s) in ``[1, T]``, a scalar or the batch shape.
          key: PRNG key.
          s: target time(s) in ``[0, t)``; default ``t - 1``.

        Raises:
          TypeError: if ``x_t`` or ``x0_hat`` are not arrays of the process's kind, the times
            not integers or ``key`` not a PRNG key.
          ValueError: for times out of range, mismatched shapes, or (when concrete) NaN/inf or
            token ids outside the vocabulary.
        """
        x_t, x0_hat, t, s = _checks.reverse_inputs(self, x_t, x0_hat, t, s, key=key)
        return self.reverse_kernel(x_t, x0_hat, t, s, key=key)

    def loss(self, x0, prediction, t):
        r"""Per-example training loss :math:`-\log q(x_0\mid x_t)` (:meth:`nll`), shape ``batch``.

        Args:
          x0: clean data, shape ``batch + event_shape``.
          prediction: the network head's prediction at :math:`x_t` (:math:`\hat x_0`, or logits
            ``x0.shape + (vocab,)`` for a discrete process).
          t: integer time(s) in ``[1, T]``, a scalar or the batch shape.

        Raises:
          TypeError: if ``x0`` or ``prediction`` are not arrays of the right kind or ``t`` not
            integer(s).
          ValueError: for ``t`` outside ``[1, T]``, mismatched shapes, or (when concrete)
            NaN/inf or token ids outside the vocabulary.
        """
        x0, t, batch = _checks.forward_inputs(self, x0, t, t_low=1)
        prediction = self.check_prediction(prediction, x0)
        return self.nll(x0, prediction, jnp.broadcast_to(t, batch))

    def draw_x0(self, prediction, x_t, t, *, key):
        r"""The predict step :math:`\hat x_0\sim q(x_0\mid x_t)`; by default the prediction itself
        (the mode of a Gaussian or Laplace law with vanishing width)."""
        del x_t, t, key
        return prediction

    def finish(self, x_last, x0_hat):
        """The sample from the last state and the last :math:`\\hat x_0` (default: the last state)."""
        del x0_hat
        return x_last
