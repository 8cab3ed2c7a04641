r"""Deterministic degradations :math:`D(x, \ell)` for cold diffusion, level :math:`\ell\in[0,1]`.

All satisfy :math:`D(x,0)=x`; at :math:`\ell=1` blur and pooling leave the per-channel mean
(Su's "3 numbers from :math:`3w^2`") and masking leaves zeros. The spatial axes are the event
axes, except a trailing channel axis of an ``(H, W, C)`` event. ``level`` has the batch shape.

Reference: Bansal et al., *Cold Diffusion* (arXiv:2208.09392); 苏剑林,
生成扩散模型漫谈（十一）：统一扩散模型（应用篇）, https://kexue.fm/archives/9271
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

DEGRADATIONS = ("blur", "mask", "pool")

# Heat-equation time at level 1: the slowest non-constant cosine mode of an 8-pixel axis,
# with eigenvalue 4 sin^2(pi/16) ~ 0.152, decays by exp(-0.152 * 50) ~ 5e-4.
BLUR_TAU_MAX = 50.0


def spatial_shape(event_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The spatial part of an event: ``(H, W)`` for ``(H, W, C)``, otherwise the whole event."""
    return tuple(event_shape[:-1]) if len(event_shape) == 3 else tuple(event_shape)


@functools.lru_cache(maxsize=16)
def _dct(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix (rows are cosine modes), whose modes diagonalise the Neumann Laplacian."""
    k, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    c = np.cos(np.pi * (i + 0.5) * k / n) * np.sqrt(2.0 / n)
    c[0] /= np.sqrt(2.0)
    return c


def _along(matrix, x, axis: int):
    """Applies ``matrix`` (n, n) along ``axis`` of ``x``."""
    return jnp.moveaxis(jnp.tensordot(jnp.asarray(matrix, x.dtype), x, axes=([1], [axis])), 0, axis)


def _spatial_axes(x, event_shape) -> tuple[int, ...]:
    first = x.ndim - len(event_shape)
    return tuple(range(first, first + len(spatial_shape(event_shape))))


def _per_example(values, x, event_shape):
    """Broadcasts a ``batch + spatial`` array against ``x`` (adds the channel axis if any)."""
    if len(event_shape) == 3:
        values = values[..., None]
    return values


def blur(x, level, event_shape):
    r"""Heat-equation blur with Neumann boundaries, :math:`D=e^{\tau\Delta}`, :math:`\tau=\tau_{\max}\ell^2`.

    Exact in the cosine (DCT-II) basis: mode :math:`k` decays by
    :math:`\exp(-\tau\sum_a 4\sin^2(\pi k_a/2n_a))`; the constant mode (the mean) is kept.
    """
    axes = _spatial_axes(x, event_shape)
    shape = spatial_shape(event_shape)
    eigen = sum(
        np.reshape(
            4 * np.sin(np.pi * np.arange(n) / (2 * n)) ** 2,
            [-1 if a == i else 1 for a in range(len(shape))],
        )
        for i, n in enumerate(shape)
    )
    tau = BLUR_TAU_MAX * jnp.asarray(level, x.dtype) ** 2
    eigen = jnp.asarray(eigen, x.dtype).reshape((1,) * tau.ndim + eigen.shape)
    decay = jnp.exp(-tau.reshape(tau.shape + (1,) * len(shape)) * eigen)
    y = x
    for axis, n in zip(axes, shape, strict=True):
        y = _along(_dct(n), y, axis)
    y = y * _per_example(decay, x, event_shape)
    for axis, n in zip(axes, shape, strict=True):
        y = _along(_dct(n).T, y, axis)
    return y


@functools.lru_cache(maxsize=16)
def _mask_order(shape: tuple[int, ...]) -> np.ndarray:
    """A fixed random order in which the pixels fade (rank 0 fades first)."""
    size = int(np.prod(shape))
    return np.random.default_rng(0).permutation(size).reshape(shape).astype(np.float64)


def mask(x, level, event_shape):
    r"""Pixels fade to 0 one after another in a fixed order: :math:`m_p=1-\mathrm{clip}(\ell P-r_p,0,1)`.

    :math:`P` is the number of pixels and :math:`r_p` the rank of pixel :math:`p`, so the
    mask is continuous in :math:`\ell`, one pixel is fading at any time, and all are 0 at 1.
    """
    shape = spatial_shape(event_shape)
    level = jnp.asarray(level, x.dtype)
    rank = jnp.asarray(_mask_order(shape), x.dtype).reshape((1,) * level.ndim + shape)
    size = float(np.prod(shape))
    m = 1.0 - jnp.clip(level.reshape(level.shape + (1,) * len(shape)) * size - rank, 0.0, 1.0)
    return x * _per_example(m, x, event_shape)


def check_pool_shape(event_shape) -> None:
    """Raises ValueError naming ``event_shape`` unless its spatial sizes are equal powers of two."""
    shape = spatial_shape(tuple(event_shape))
    n = shape[0] if shape else 0
    if not shape or any(m != n for m in shape) or n < 1 or n & (n - 1):
        raise ValueError(f"pool needs equal power-of-two spatial sizes; got event_shape {event_shape}")


@functools.lru_cache(maxsize=16)
def _pool_matrix(n: int, block: int) -> np.ndarray:
    """Averages (then repeats) over consecutive blocks of ``block`` entries of an axis of size ``n``."""
    return np.kron(np.eye(n // block), np.full((block, block), 1.0 / block))


def pool(x, level, event_shape):
    r"""Average pooling, interpolated between the :math:`2^k\times2^k` block averages :math:`P_k`.

    With :math:`L=\log_2 n` levels and :math:`u=\ell L`:
    :math:`D=(1-w)P_{\lfloor u\rfloor}+wP_{\lfloor u\rfloor+1}`, :math:`w=u-\lfloor u\rfloor`;
    :math:`P_0=\mathrm{id}` and :math:`P_L` is the mean.

    Raises:
      ValueError: if the spatial sizes are not equal powers of two.
    """
    shape = spatial_shape(event_shape)
    check_pool_shape(event_shape)
    n = shape[0]
    depth = n.bit_length() - 1
    axes = _spatial_axes(x, event_shape)
    pooled = []
    for k in range(depth + 1):
        y = x
        for axis in axes:
            y = _along(_pool_matrix(n, 2**k), y, axis)
        pooled.append(y)
    u = jnp.asarray(level, x.dtype) * depth
    weights = [jnp.maximum(1.0 - jnp.abs(u - k), 0.0) for k in range(depth + 1)]
    out = 0.0
    for w, y in zip(weights, pooled, strict=True):
        out = out + w.reshape(w.shape + (1,) * len(event_shape)) * y
    return out


def degrade(kind: str, x, level, event_shape):
    """Dispatches to :func:`blur`, :func:`mask` or :func:`pool`; ValueError for an unknown ``kind``."""
    table = {"blur": blur, "mask": mask, "pool": pool}
    if kind not in table:
        raise ValueError(f"degradation must be one of {DEGRADATIONS}; got {kind!r}")
    return table[kind](x, level, tuple(event_shape))
