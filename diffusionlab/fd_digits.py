r"""The feature extractor behind FD-digits: a small classifier of the 8×8 digits.

FID compares Inception features; 8×8 digits need something of their size. We train a
two-hidden-layer MLP (64 → 256 → 64 → 10, SiLU) on the fixed training split, once per
cache, and keep its parameters on disk under ``$DIFFUSIONLAB_CACHE`` (default
``~/.cache/diffusionlab``). Its 64-dimensional penultimate activations are the feature
space of ``metrics.fd_digits``.

FD-digits is a metric, so its feature network must be the same network on every machine,
as FID's is. The training is therefore written to be machine-independent:

* the initial weights come from NumPy's PCG64 generator in float64 (integer arithmetic,
  the same bits on every platform), not from an accelerator's RNG;
* training is full-batch Adam in float64 (``jax.enable_x64``) over a fixed number of
  steps: no shuffling, no minibatch order, and no float32 rounding to amplify. Last-ulp
  differences between BLAS or ``exp`` implementations (~1e-16) grow to ~1e-13 relative
  by the end of training, far below the float32 spacing (6e-8);
* the final parameters are rounded to float32, and features are computed in float32.

``feature_checksum`` names the trained network in a few hex digits, for reports.
"""

from __future__ import annotations

import functools
import hashlib
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax

from diffusionlab.cache import build_once, cache_dir
from diffusionlab.data.digits import digits

_VERSION = "v2"  # bump when the architecture, the training recipe or the storage changes
_LAYERS = (("hidden", 64, 256), ("feature", 256, 64), ("head", 64, 10))
_SEED = 0
_TRAIN_STEPS = 400
_LEARNING_RATE = 2e-3
_WEIGHT_DECAY = 1e-3
# The checksum keeps this many decimals of the feature means in units of the feature RMS:
# coarse enough that ulp-level differences between machines do not flip a digit, fine
# enough that any other training (another seed, recipe or version) changes many.
_CHECKSUM_DECIMALS = 3

Params = dict[str, dict[str, jax.Array]]




def _features(params: Params, x_Bx64):
    """Penultimate activations ``silu(W₂ silu(W₁ x + b₁) + b₂)``; works on jax and NumPy arrays."""
    xp = jnp if isinstance(x_Bx64, jax.Array) else np

    def silu(z):
        # z·sigmoid(z) through tanh: no overflow for large |z|, in jax and NumPy alike.
        return 0.5 * z * (1 + xp.tanh(0.5 * z))

    h_BxH = silu(x_Bx64 @ params["hidden"]["kernel"] + params["hidden"]["bias"][None])
    return silu(h_BxH @ params["feature"]["kernel"] + params["feature"]["bias"][None])


def _logits(params: Params, x_Bx64):
    return _features(params, x_Bx64) @ params["head"]["kernel"] + params["head"]["bias"][None]


def _initial_params() -> dict[str, dict[str, np.ndarray]]:
    """LeCun-normal kernels and zero biases, drawn in float64 from NumPy's PCG64."""
    rng = np.random.default_rng(_SEED)
    return {name: {"kernel": rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in),
                   "bias": np.zeros(fan_out)}
            for name, fan_in, fan_out in _LAYERS}


@jax.jit
def _fit(params: Params, x_Nx64: jax.Array, y_N: jax.Array) -> Params:
    """``_TRAIN_STEPS`` full-batch AdamW steps on the cross-entropy, as one ``lax.scan``."""
    optimizer = optax.adamw(_LEARNING_RATE, weight_decay=_WEIGHT_DECAY)

    def loss(p):
        return optax.softmax_cross_entropy_with_integer_labels(_logits(p, x_Nx64), y_N).mean()

    def step(carry, _):
        p, opt_state = carry
        updates, opt_state = optimizer.update(jax.grad(loss)(p), opt_state, p)
        return (optax.apply_updates(p, updates), opt_state), None

    (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), length=_TRAIN_STEPS)
    return params


def _train() -> dict[str, dict[str, np.ndarray]]:
    """Full-batch float64 AdamW on the training split; returns float32 NumPy parameters."""
    images, labels = digits("train")
    with jax.enable_x64(True):
        # Pixels are k/8 - 1, exact in float32 and float64 alike.
        x_Nx64 = jnp.asarray(images.reshape(len(images), 64), jnp.float64)
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), _initial_params())
        trained = _fit(params, x_Nx64, jnp.asarray(labels))
        # Round to float32 once, at the end: the features are computed in float32.
        return jax.tree.map(lambda a: np.asarray(a, np.float64).astype(np.float32), trained)


def _save(params, staging: pathlib.Path) -> None:
    np.savez(staging / "params.npz", **{f"{name}.{leaf}": value for name, layer in params.items()
                                        for leaf, value in layer.items()})


@functools.cache
def _load_or_train(folder: pathlib.Path) -> Params:
    # Trained by the first process that needs it, written once; the others wait, then load.
    build_once(folder, lambda staging: _save(_train(), staging))
    with np.load(folder / "params.npz") as stored:
        return {name: {leaf: jnp.asarray(stored[f"{name}.{leaf}"], jnp.float32)
                       for leaf in ("kernel", "bias")}
                for name, _, _ in _LAYERS}


def classifier_params() -> Params:
    """The feature classifier's float32 parameters, trained on first use in each cache.

    Returns:
      ``{"hidden" | "feature" | "head": {"kernel": (in, out), "bias": (out,)}}``.
    """
    # A fresh dict each call, so a caller's edit cannot reach the cached network.
    return jax.tree.map(lambda a: a, _load_or_train(cache_dir() / f"fd_digits_{_VERSION}"))


_features_jit = jax.jit(_features)
_logits_jit = jax.jit(_logits)


def _flatten(images) -> jax.Array:
    images = np.asarray(images)
    if images.shape[1:] not in ((8, 8, 1), (8, 8), (64,)):
        raise ValueError(f"images must be (N, 8, 8, 1), (N, 8, 8) or (N, 64), got {images.shape}")
    if not np.issubdtype(images.dtype, np.floating) and not np.issubdtype(images.dtype, np.integer):
        raise TypeError(f"images must be real numbers, got dtype {images.dtype}")
    return jnp.asarray(images.reshape(len(images), 64), jnp.float32)


def digit_features(images) -> np.ndarray:
    """The classifier's 64-d features of images in [-1, 1]; returns ``(N, 64)`` float64."""
    return np.asarray(_features_jit(classifier_params(), _flatten(images)), np.float64)


def classifier_accuracy(split: str = "test") -> float:
    """Accuracy of the cached feature classifier on a digits split (a sanity figure)."""
    images, labels = digits(split)
    logits = _logits_jit(classifier_params(), _flatten(images))
    return float(np.mean(np.asarray(jnp.argmax(logits, -1)) == labels))


def feature_checksum() -> str:
    r"""A short name of the trained feature network, equal on machines that agree on it.

    The features of the 360 test digits are computed in float64 (NumPy) from the cached
    float32 parameters; their 64 column means, in units of the features' RMS, are rounded
    to ``_CHECKSUM_DECIMALS`` = 3 decimals and hashed (SHA-256, first 12 hex digits).
    Rounding makes the name insensitive to last-ulp differences between machines; any
    other network changes the means by far more than 1e-3 of the feature scale.

    Returns:
      ``"<version>-<12 hex digits>"``, e.g. ``"v2-0123456789ab"``.
    """
    params = jax.tree.map(lambda a: np.asarray(a, np.float64), classifier_params())
    images, _ = digits("test")
    features_Nx64 = _features(params, images.reshape(len(images), 64).astype(np.float64))
    scale = np.sqrt(np.mean(features_Nx64**2))
    means = np.round(features_Nx64.mean(0) / scale, _CHECKSUM_DECIMALS) + 0.0  # + 0.0 turns -0.0 into 0.0
    text = ",".join(f"{m:.{_CHECKSUM_DECIMALS}f}" for m in means)
    return f"{_VERSION}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"
