r"""AnglE: the CoSENT ranking loss on an angle similarity computed in complex space.

Li & Li, "AoE: Angle-optimized Embeddings for Semantic Textual Similarity", ACL 2024
(arXiv:2309.12871), keep CoSENT's ranking form but replace the cosine by a score built from
the complex quotient of the two embeddings. An embedding $u\in\mathbb R^D$ ($D$ even) is read
as $D/2$ complex numbers $u_k = a_k + i\,b_k$, its first half the real parts and its second
half the imaginary parts; likewise $v_k = c_k + i\,d_k$. The normalised quotient
$z_k = (u_k/v_k)\cdot|v|^2/(\|u\|\,\|v\|)$ is, with the norms over the whole vectors,

.. math::
    z_k = \frac{u_k\,\bar v_k}{\|u\|\,\|v\|}
        = \frac{(a_k c_k + b_k d_k) + i\,(b_k c_k - a_k d_k)}{\|u\|\,\|v\|},

and the score of the pair is the absolute value of the sum of all real and imaginary parts,

.. math::
    s(u, v) = \Big|\sum_k \operatorname{Re} z_k + \operatorname{Im} z_k\Big|
            = \Big|\cos(u, v) + \frac{\sum_k (b_k c_k - a_k d_k)}{\|u\|\,\|v\|}\Big|,

the form of the authors' code and of sentence-transformers' ``AnglELoss`` (a CoSENT loss
with this similarity and scale 20). For a single complex component with $u = e^{i\alpha}$,
$v = e^{i\beta}$ it is $|\cos(\alpha-\beta) + \sin(\alpha-\beta)|$. Unlike the cosine it is
not symmetric in $(u, v)$ (the imaginary part changes sign when they swap) and lies in
$[0, \sqrt 2]$.

The loss is then CoSENT's (苏剑林, "CoSENT（一）", https://kexue.fm/archives/8847):

.. math::
    \mathcal L = \log\Big(1 + \sum_{y_a > y_b} e^{\lambda (s_b - s_a)}\Big),\qquad \lambda = 20.

At prediction time sentence embeddings trained this way are compared by their cosine, as in
the paper's evaluation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from diffusionlab import _checks
from diffusionlab.cosent.loss import cosent_loss

__all__ = ["angle_loss", "angle_similarity"]


def angle_similarity(u_BxD: jax.Array, v_BxD: jax.Array) -> jax.Array:
    r"""AnglE's pair score $s(u, v) = |\sum_k \operatorname{Re} z_k + \operatorname{Im} z_k|$.

    See the module docstring for $z_k = u_k\bar v_k/(\|u\|\|v\|)$ with the first half of each
    embedding the real parts and the second half the imaginary parts.

    Args:
      u_BxD: ``(B, D)`` first embeddings of each pair, ``D`` even, nonzero rows.
      v_BxD: ``(B, D)`` second embeddings (same shape).

    Returns:
      ``(B,)`` scores in $[0, \sqrt 2]$, in float32 at least (half precision is upcast).

    Raises:
      ValueError: not 2-D, shapes that differ, an empty batch, or an odd ``D``.
      TypeError: non-float input.

    Reference: Li & Li, "AoE: Angle-optimized Embeddings for Semantic Textual Similarity",
    ACL 2024 (arXiv:2309.12871).
    """
    u_BxD = _checks.float_array(u_BxD, "u_BxD", ndim=2, layout="(B, D)")
    v_BxD = _checks.float_array(v_BxD, "v_BxD", ndim=2, layout="(B, D)")
    _checks.same_shape(u_BxD, v_BxD, names=("u_BxD", "v_BxD"))
    if u_BxD.shape[1] % 2:
        raise ValueError(f"u_BxD and v_BxD need an even dimension D (real and imaginary "
                         f"halves), got D = {u_BxD.shape[1]}")
    dtype = jnp.promote_types(jnp.result_type(u_BxD, v_BxD), jnp.float32)
    u_BxD, v_BxD = u_BxD.astype(dtype), v_BxD.astype(dtype)
    a, b = jnp.split(u_BxD, 2, axis=1)
    c, d = jnp.split(v_BxD, 2, axis=1)
    norms_B = jnp.linalg.norm(u_BxD, axis=1) * jnp.linalg.norm(v_BxD, axis=1)
    real_B = jnp.sum(a * c + b * d, axis=1)
    imaginary_B = jnp.sum(b * c - a * d, axis=1)
    return jnp.abs(real_B + imaginary_B) / jnp.maximum(norms_B, jnp.finfo(dtype).tiny)


def angle_loss(u_BxD: jax.Array, v_BxD: jax.Array, labels_B: jax.Array, *,
               scale: float = 20.0) -> jax.Array:
    r"""AnglE loss of one batch: CoSENT on :func:`angle_similarity` (one scalar per batch).

    Args:
      u_BxD, v_BxD: ``(B, D)`` the two embeddings of each pair (``D`` even).
      labels_B: ``(B,)`` graded labels; only their order matters (ties add no term).
      scale: $\lambda > 0$ (20 in the paper and in sentence-transformers).

    Returns:
      A scalar, float32 at least.

    Raises:
      ValueError, TypeError: as :func:`angle_similarity` and
      :func:`diffusionlab.cosent.cosent_loss` (mismatched lengths, ``scale <= 0``).

    Reference: Li & Li, ACL 2024 (arXiv:2309.12871); 苏剑林, "CoSENT（一）",
    https://kexue.fm/archives/8847
    """
    return cosent_loss(angle_similarity(u_BxD, v_BxD), labels_B, scale=scale)
