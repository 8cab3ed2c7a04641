"""A small U-Net for 8×8 images: one down/up level, residual blocks, time embedding."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from diffusionlab import _checks
from diffusionlab.nn.embed import sinusoidal_embedding


class ResBlock(nnx.Module):
    """GroupNorm → SiLU → 3×3 conv, twice, with the time embedding added in between."""

    def __init__(self, in_ch: int, out_ch: int, time_dim: int, *, rngs: nnx.Rngs):
        self.norm1 = nnx.GroupNorm(in_ch, num_groups=min(8, in_ch), rngs=rngs)
        self.conv1 = nnx.Conv(in_ch, out_ch, (3, 3), rngs=rngs)
        self.time = nnx.Linear(time_dim, out_ch, rngs=rngs)
        self.norm2 = nnx.GroupNorm(out_ch, num_groups=min(8, out_ch), rngs=rngs)
        self.conv2 = nnx.Conv(out_ch, out_ch, (3, 3), rngs=rngs)
        self.skip = nnx.Conv(in_ch, out_ch, (1, 1), rngs=rngs) if in_ch != out_ch else None

    def __call__(self, x_BxHxWxC: jax.Array, temb_BxT: jax.Array) -> jax.Array:
        h = self.conv1(jax.nn.silu(self.norm1(x_BxHxWxC)))
        h = h + self.time(temb_BxT)[:, None, None, :]
        h = self.conv2(jax.nn.silu(self.norm2(h)))
        skip = x_BxHxWxC if self.skip is None else self.skip(x_BxHxWxC)
        return skip + h


class UNet(nnx.Module):
    """``f(x, t)`` for images of shape ``(B, 8, 8, C)``; output has the input's shape.

    8×8 → (ResBlock) → 4×4 (ResBlock ×2) → 8×8 with a skip connection → 1×1 conv head.
    Any even spatial size works; 8×8 digits are the intended use.
    """

    def __init__(self, channels: int = 1, *, base: int = 32, time_dim: int = 64, rngs: nnx.Rngs):
        for name, value in (("channels", channels), ("base", base), ("time_dim", time_dim)):
            _checks.check_int(value, name, low=1, high=2**16)
        if base % 8:
            raise ValueError(f"base must be a multiple of 8 (the group norms use 8 groups); "
                             f"got {base}")
        if time_dim % 2:
            raise ValueError(f"time_dim must be even; got {time_dim}")
        self.channels = channels
        self.time_dim = time_dim
        self.time_mlp = nnx.Sequential(nnx.Linear(time_dim, 2 * time_dim, rngs=rngs), jax.nn.silu,
                                       nnx.Linear(2 * time_dim, time_dim, rngs=rngs))
        self.stem = nnx.Conv(channels, base, (3, 3), rngs=rngs)
        self.down = ResBlock(base, base, time_dim, rngs=rngs)
        self.pool = nnx.Conv(base, 2 * base, (3, 3), strides=2, rngs=rngs)
        self.mid1 = ResBlock(2 * base, 2 * base, time_dim, rngs=rngs)
        self.mid2 = ResBlock(2 * base, 2 * base, time_dim, rngs=rngs)
        self.up = ResBlock(3 * base, base, time_dim, rngs=rngs)
        self.head_norm = nnx.GroupNorm(base, num_groups=min(8, base), rngs=rngs)
        self.head = nnx.Conv(base, channels, (1, 1), kernel_init=nnx.initializers.zeros, rngs=rngs)

    def __call__(self, x_BxHxWxC: jax.Array, t_B: jax.Array) -> jax.Array:
        x_BxHxWxC = _checks.float_array(x_BxHxWxC, "x_BxHxWxC", ndim=4, layout="(B, H, W, C)")
        if x_BxHxWxC.shape[-1] != self.channels or x_BxHxWxC.shape[1] % 2 \
                or x_BxHxWxC.shape[2] % 2:
            raise ValueError(f"x_BxHxWxC must have {self.channels} channels and even H, W; "
                             f"got shape {x_BxHxWxC.shape}")
        t_B = _checks.float_array(t_B, "t_B", ndim=(0, 1), allow_int=True)
        if t_B.ndim and t_B.shape[0] not in (1, x_BxHxWxC.shape[0]):
            raise ValueError(f"t_B must be a scalar or have shape ({x_BxHxWxC.shape[0]},); "
                             f"got {t_B.shape}")
        batch, height, width, _ = x_BxHxWxC.shape
        t_B = jnp.broadcast_to(jnp.asarray(t_B, jnp.float32).reshape(-1), (batch,))
        temb = self.time_mlp(sinusoidal_embedding(t_B, self.time_dim))
        h1 = self.down(self.stem(x_BxHxWxC), temb)
        h2 = self.mid2(self.mid1(self.pool(h1), temb), temb)
        up = jax.image.resize(h2, (batch, height, width, h2.shape[-1]), "nearest")
        h = self.up(jnp.concatenate([h1, up], axis=-1), temb)
        return self.head(jax.nn.silu(self.head_norm(h)))
