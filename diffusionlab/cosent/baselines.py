r"""The losses CoSENT is compared with: Sentence-BERT, cosine-MSE, and cross-entropy.

All three return per-example values; the caller reduces.

* **Sentence-BERT** (bi-encoder): a softmax classifier on $[u, v, |u-v|]$ trained with
  cross-entropy; prediction still uses $\cos(u, v)$, so training and prediction disagree.
* **Cosine-MSE** (bi-encoder): push $\cos(u,v)$ to an absolute target $t\in[0,1]$, i.e.
  $t(1-\cos)^2 + (1-t)\cos^2$ for binary $t$, the kind of loss part I argues against.
* **Cross-entropy** (cross-encoder): a 2-way softmax on [CLS], equivalently a sigmoid on the
  scalar head output $f$ with binary cross-entropy; the ranking score is $p(1)$, a monotone
  function of $f$.

Reference: 苏剑林, "CoSENT（一）", https://kexue.fm/archives/8847 ;
"CoSENT（三）", https://kexue.fm/archives/9341 .
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from diffusionlab import _checks

__all__ = ["binary_cross_entropy_loss", "cosine_mse_loss", "sbert_features",
           "sbert_softmax_loss"]


def _same_length(name_a, a, name_b, b):
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{name_a} and {name_b} must have the same batch size, got "
                         f"{a.shape[0]} and {b.shape[0]}")
    if a.shape[0] == 0:
        raise ValueError(f"{name_a} is empty: the batch needs at least one pair")


def _pair_of_batches(u_BxD, v_BxD):
    """Both ``(B, D)`` float arrays of one shape (float32 at least)."""
    u_BxD = _checks.float_array(u_BxD, "u_BxD", ndim=2, layout="(B, D)")
    v_BxD = _checks.float_array(v_BxD, "v_BxD", ndim=2, layout="(B, D)")
    _checks.same_shape(u_BxD, v_BxD, names=("u_BxD", "v_BxD"))
    return u_BxD, v_BxD


def sbert_features(u_BxD: jax.Array, v_BxD: jax.Array) -> jax.Array:
    r"""Sentence-BERT's classifier input $[u, v, |u - v|]$, shape ``(B, 3D)``."""
    u_BxD, v_BxD = _pair_of_batches(u_BxD, v_BxD)
    return jnp.concatenate([u_BxD, v_BxD, jnp.abs(u_BxD - v_BxD)], axis=-1)


def sbert_softmax_loss(logits_Bx2: jax.Array, labels_B: jax.Array) -> jax.Array:
    r"""Cross-entropy of the Sentence-BERT classifier, $-\log\mathrm{softmax}(W[u,v,|u-v|])_y$.

    Args:
      logits_Bx2: the classifier's two logits per pair.
      labels_B: binary labels (0 dissimilar, 1 similar); binarise graded labels first
        (STS-B: $y > 2.5$).

    Returns:
      ``(B,)`` per-pair losses.
    """
    logits_Bx2 = _checks.float_array(logits_Bx2, "logits_Bx2", ndim=2, layout="(B, 2)")
    if logits_Bx2.shape[1] != 2:
        raise ValueError(f"logits_Bx2 must have shape (B, 2), got {logits_Bx2.shape}")
    # An id outside {0, 1} would index past the two logits and give NaN or a wrong loss.
    labels_B = _checks.int_array(labels_B, "labels_B", low=0, high=1, ndim=1, layout="(B,)")
    _same_length("logits_Bx2", logits_Bx2, "labels_B", labels_B)
    return optax.softmax_cross_entropy_with_integer_labels(
        logits_Bx2.astype(jnp.float32), labels_B.astype(jnp.int32))


def cosine_mse_loss(cosines_B: jax.Array, targets_B: jax.Array) -> jax.Array:
    r"""Squared error of the cosine to an absolute target, $(\cos(u,v) - t)^2$.

    For binary $t$ this is $t(1-\cos)^2 + (1-t)\cos^2$; for graded labels use $t = y/y_{max}$.

    Args:
      cosines_B: cosine similarities.
      targets_B: targets in $[0, 1]$.

    Returns:
      ``(B,)`` per-pair losses.
    """
    cosines_B = _checks.float_array(cosines_B, "cosines_B", ndim=1, layout="(B,)")
    targets_B = _checks.float_array(targets_B, "targets_B", ndim=1, layout="(B,)",
                                    allow_int=True)
    _checks.check_real(targets_B, "targets_B", low=0, high=1, scalar=False)
    _same_length("cosines_B", cosines_B, "targets_B", targets_B)
    return jnp.square(cosines_B.astype(jnp.float32) - targets_B.astype(jnp.float32))


def binary_cross_entropy_loss(logits_B: jax.Array, labels_B: jax.Array) -> jax.Array:
    r"""Binary cross-entropy of a scalar head output, $-[y\log\sigma(f) + (1-y)\log\sigma(-f)]$.

    The same as a 2-way softmax whose logit difference is $f$.

    Args:
      logits_B: raw head outputs $f$.
      labels_B: binary labels.

    Returns:
      ``(B,)`` per-pair losses.
    """
    logits_B = _checks.float_array(logits_B, "logits_B", ndim=1, layout="(B,)")
    labels_B = _checks.float_array(labels_B, "labels_B", ndim=1, layout="(B,)", allow_int=True)
    _checks.check_real(labels_B, "labels_B", low=0, high=1, scalar=False)
    _same_length("logits_B", logits_B, "labels_B", labels_B)
    return optax.sigmoid_binary_cross_entropy(logits_B.astype(jnp.float32),
                                              labels_B.astype(jnp.float32))
