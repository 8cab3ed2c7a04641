r"""Exact empirical velocities with the data set split across devices.

Every exact field of this package is a ratio of two sums over the sources (see
:mod:`diffusionlab.odes.pointmass`): :math:`W_b = \sum_i w_{bi}` and
:math:`D_b = \sum_i w_{bi}(x_b - y_i)`, kept relative to the largest log-weight :math:`m_b`.
With the sources split into blocks :math:`I_1, \dots, I_K`, one per device, each device
reduces its own block to :math:`(m_b^{(k)}, W_b^{(k)}, D_b^{(k)})` and the blocks combine
as one log-sum-exp:

.. math:: M_b = \max_k m_b^{(k)},\qquad
          W_b = \sum_k e^{m_b^{(k)} - M_b}\,W_b^{(k)},\qquad
          D_b = \sum_k e^{m_b^{(k)} - M_b}\,D_b^{(k)}

(``pmax`` then ``psum`` over the mesh axis), so that no weight over- or underflows however
the sources are split. Only the ``(B,)`` and ``(B, d)`` sums cross devices, never the data.
A data set whose size is not a multiple of the number of devices is padded with sources of
weight zero (log-weight :math:`-\infty`), which add nothing to either sum.

Reference: 苏剑林, 《生成扩散模型漫谈（十三）：从万有引力到扩散模型》,
https://kexue.fm/archives/9305 (the field of point masses); (十四)
https://kexue.fm/archives/9370 (the isotropic CDF family).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec

from diffusionlab import _checks
from diffusionlab.odes import isotropic
from diffusionlab.odes._checks import points, positive_time, saturating_cast
from diffusionlab.odes.pointmass import (
    PointMassSums,
    log_radius_sq,
    velocity_from_sums,
    weighted_sums,
)

FIELDS = ("gravity",)


def _check_field(field):
    if isinstance(field, str):
        _checks.check_choice(field, "field", FIELDS)
        return
    if not isinstance(field, (isotropic.TanhCDF, isotropic.ExponentialCDF, isotropic.GaussianCDF)):
        names = ("'gravity'",) + tuple(type(p).__name__ for p in isotropic.CDF_FAMILY)
        raise TypeError(f"field must be one of {', '.join(names)} (a member of the CDF "
                        f"family); got {type(field).__name__}")


def _log_weight_fn(field, dim):
    if field == "gravity":
        half_k = 0.5 * (dim + 1)  # gravity: w = R^{-(d+1)}

        def log_weight(diff, dist_sq, y, t):
            return -half_k * log_radius_sq(dist_sq, t)

        return log_weight

    def log_weight(diff, dist_sq, y, t):
        # As isotropic.marginal_velocity: the analytic limit weight on a source (r = 0).
        r, on_atom = isotropic._safe_radius(dist_sq)
        t_BxN = jnp.broadcast_to(t[:, None], dist_sq.shape)
        return jnp.where(on_atom, isotropic._at_atom_log_weight(field, t_BxN, dim, dist_sq.dtype),
                         field.log_radial_density(r, t_BxN, dim))

    return log_weight


@functools.partial(jax.jit, static_argnames=("field", "mesh", "axis_name", "block"))
def _sharded_velocity(field, data, x, t, *, mesh, axis_name, block):
    n, dim = data.shape
    shards = mesh.shape[axis_name]
    pad = -n % shards
    data = jnp.pad(data, ((0, pad), (0, 0)))
    # Padding sources carry log-weight -inf: zero weight, whatever their position.
    log_prior = jnp.where(jnp.arange(n + pad) < n, 0.0, -jnp.inf).astype(data.dtype)
    log_weight = _log_weight_fn(field, dim)

    def local(data_N, log_prior_N, x_BxD, t_B):
        sums = weighted_sums(x_BxD, t_B, data_N, log_weight, block=block, log_prior=log_prior_N)
        top = jax.lax.pmax(sums.log_scale, axis_name)
        shift = jnp.where(jnp.isfinite(top), top, 0.0)
        # A block with no source of positive weight has log_scale -inf: factor 0.
        factor = jnp.exp(sums.log_scale - shift)
        weight = jax.lax.psum(sums.weight * factor, axis_name)
        displacement = jax.lax.psum(sums.displacement * factor[:, None], axis_name)
        return weight, displacement

    spec = PartitionSpec(axis_name)
    weight, displacement = jax.shard_map(
        local, mesh=mesh, in_specs=(spec, spec, PartitionSpec(), PartitionSpec()),
        out_specs=(PartitionSpec(), PartitionSpec()),
        # The block sums' scan starts from constants and carries per-device sums, which the
        # replication check cannot type; the outputs are psums, equal on every device.
        check_vma=False)(data, log_prior, x, t)
    if field == "gravity" or getattr(field, "sigma", None) is None:
        return velocity_from_sums(x, t, PointMassSums(jnp.zeros_like(weight), weight,
                                                      displacement))
    return field.rate(t)[:, None] * displacement / weight[:, None]


def sharded_velocity(field, data, x, t, *, mesh: Mesh, axis_name: str = "data",
                     block: int = 512) -> jax.Array:
    r"""The exact empirical velocity of ``field`` with the sources ``data`` split over the
    devices of ``mesh`` along ``axis_name``; equal to the unsharded
    :func:`diffusionlab.odes.gravity.velocity` or
    :func:`diffusionlab.odes.isotropic.marginal_velocity` up to the order of the sums.

    .. math:: v(x, t) = \frac{\dot s_t}{s_t}\,
              \frac{\sum_i w_i(x, t)\,(x - x_i)}{\sum_i w_i(x, t)}

    with :math:`w_i = (\|x - x_i\|^2 + t^2)^{-(d+1)/2}` and :math:`\dot s_t/s_t = 1/t` for
    gravity, and :math:`w_i = \phi_t(\|x - x_i\|)` for a CDF-family member. Each device
    reduces its block of sources; the blocks combine by a log-sum-exp (module docstring).
    Memory per device is :math:`O(B\times\text{block}\times d)` plus its ``N / K`` sources.

    Args:
      field: ``"gravity"`` or a member of :data:`diffusionlab.odes.CDF_FAMILY`
        (``TanhCDF()``, ``ExponentialCDF()``, ``GaussianCDF(sigma=...)``).
      data: the sources ``(N, d)``, ``N ≥ 1``; any ``N`` (padded with zero-weight sources to
        a multiple of the axis size), placed anywhere (they are split along ``axis_name``).
      x: query positions ``(B, d)``, replicated on every device of the axis.
      t: heights, scalar or ``(B,)``, > 0.
      mesh: a :class:`jax.sharding.Mesh` with an axis ``axis_name``; other axes of the mesh
        hold copies.
      axis_name: the mesh axis that splits the sources.
      block: sources per block within a device (≥ 1).

    Returns:
      ``(B, d)``, in the inputs' dtype (computed in at least float32), replicated over
      ``mesh``.

    Raises:
      TypeError: ``field`` neither ``"gravity"`` nor a CDF-family member, ``mesh`` not a
        ``Mesh``, ``axis_name`` not a string, or non-float arrays.
      ValueError: ``axis_name`` not an axis of ``mesh``, an unknown field name, shape or
        dimension mismatches, NaN/inf, ``t ≤ 0`` or ``block < 1``.
    """
    _check_field(field)
    _checks.check_mesh_axis(mesh, axis_name)
    x, data, dtype = points(x, data)
    block = _checks.check_int(block, "block", low=1)
    t = positive_time(t, x.shape[0], x.dtype, of="x")
    out = _sharded_velocity(field, data, x, t, mesh=mesh, axis_name=axis_name, block=block)
    return saturating_cast(out, dtype)
