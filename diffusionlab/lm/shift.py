r"""Token shift: each position's input also carries a learned map of the few tokens before it.

$$x'_t = x_t + \sum_{k=1}^{K} W_k\, x_{t-k},\qquad x_{t-k} = 0 \text{ before the sequence and on pads.}$$

A short causal convolution on the embeddings (the "token shift" of RWKV, the short
convolutions of H3 and Hyena). It hands the first attention layer the local n-gram
$(x_{t-K},\dots,x_t)$ for free, so that matching a multi-token key ("QX: ") against an
earlier occurrence is one attention hop instead of a previous-token head followed by an
induction head. Small transformers then learn associative recall in far fewer steps.

For incremental decoding the module reads and returns its *history*: the last $K$ (masked)
inputs before the current chunk, zeros at the start of a sequence.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from diffusionlab import _checks

__all__ = ["TokenShift"]


class TokenShift(nnx.Module):
    """$x'_t = x_t + \\sum_{k=1}^{K} W_k x_{t-k}$ with ``K = width`` full ``dim x dim`` maps."""

    def __init__(self, dim: int, width: int, *, rngs: nnx.Rngs):
        dim = _checks.check_int(dim, "dim", low=1)
        width = _checks.check_int(width, "width", low=1)
        _checks.check_fits_memory("width", 4.0 * width * dim * dim, "the shift weights")
        self.width = width
        self.mix = nnx.Linear(width * dim, dim, use_bias=False, rngs=rngs)

    def __call__(self, x_BxLxD: jax.Array, valid_BxL: jax.Array,
                 history_BxKxD: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Shifted inputs and the new history.

        Args:
          x_BxLxD: the chunk's inputs.
          valid_BxL: which of them are real tokens; pads contribute zeros. Pads must sit to the
            left of a row's real tokens (left padding), as everywhere in :mod:`diffusionlab.lm`.
          history_BxKxD: the ``K`` masked inputs before the chunk (zeros at the start).

        Returns:
          ``(x'_BxLxD, history'_BxKxD)``.
        """
        length, width = x_BxLxD.shape[1], self.width
        masked_BxLxD = jnp.where(valid_BxL[..., None], x_BxLxD, 0.0)
        full_BxMxD = jnp.concatenate([history_BxKxD.astype(x_BxLxD.dtype), masked_BxLxD], 1)
        # Window k holds x_{t-k}: the full sequence shifted right by k.
        previous = [full_BxMxD[:, width - k: width - k + length] for k in range(1, width + 1)]
        shifted_BxLxD = x_BxLxD + self.mix(jnp.concatenate(previous, axis=-1))
        # A chunk of only pads (a row that has not started) leaves the history as it was.
        started_B = jnp.any(valid_BxL, axis=1)
        history_BxKxD = jnp.where(started_B[:, None, None], full_BxMxD[:, -width:],
                                  history_BxKxD)
        return shifted_BxLxD, history_BxKxD
