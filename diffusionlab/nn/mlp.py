"""A time-conditioned MLP for low-dimensional data (2-D toys, flattened digits)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from diffusionlab import _checks
from diffusionlab.nn.embed import sinusoidal_embedding


class MLP(nnx.Module):
    """``f(x, t)``: residual SiLU MLP with a sinusoidal time embedding added at every layer.

    Args:
      in_dim: data dimension D.
      out_dim: output dimension (D for a velocity/score/x̂₀ head).
      hidden: width of the hidden layers.
      depth: number of hidden (residual) layers.
      time_dim: size of the sinusoidal time features.
      rngs: ``nnx.Rngs`` for initialisation.
    """

    def __init__(self, in_dim: int, out_dim: int, *, hidden: int = 128, depth: int = 3,
                 time_dim: int = 64, rngs: nnx.Rngs):
        for name, value in (("in_dim", in_dim), ("out_dim", out_dim), ("hidden", hidden),
                            ("depth", depth), ("time_dim", time_dim)):
            _checks.check_int(value, name, low=1)
        if time_dim % 2:
            raise ValueError(f"time_dim must be even (sine and cosine pairs); got {time_dim}")
        _checks.check_fits_memory(
            "depth" if depth * hidden >= in_dim + out_dim + time_dim else "hidden",
            4.0 * hidden * (depth * hidden + in_dim + out_dim + time_dim), "the parameters")
        self.in_dim = in_dim
        self.time_dim = time_dim
        self.time = nnx.Linear(time_dim, hidden, rngs=rngs)
        self.inp = nnx.Linear(in_dim, hidden, rngs=rngs)
        self.layers = nnx.List([nnx.Linear(hidden, hidden, rngs=rngs) for _ in range(depth)])
        self.out = nnx.Linear(hidden, out_dim, kernel_init=nnx.initializers.zeros, rngs=rngs)

    def __call__(self, x_BxD: jax.Array, t_B: jax.Array) -> jax.Array:
        x_BxD = _checks.float_array(x_BxD, "x_BxD", ndim=2, layout="(B, D)")
        if x_BxD.shape[1] != self.in_dim:
            raise ValueError(f"x_BxD must have D = {self.in_dim} features; got {x_BxD.shape}")
        t_B = _checks.float_array(t_B, "t_B", ndim=(0, 1), allow_int=True)
        if t_B.ndim and t_B.shape[0] not in (1, x_BxD.shape[0]):
            raise ValueError(f"t_B must be a scalar or have shape ({x_BxD.shape[0]},); "
                             f"got {t_B.shape}")
        t_B = jnp.broadcast_to(jnp.asarray(t_B, jnp.float32).reshape(-1), x_BxD.shape[:1])
        temb_BxH = self.time(sinusoidal_embedding(t_B, self.time_dim))
        h_BxH = self.inp(x_BxD)
        for layer in self.layers:
            h_BxH = h_BxH + layer(jax.nn.silu(h_BxH + temb_BxH))
        return self.out(jax.nn.silu(h_BxH))
