"""The feature extractor behind FD-digits: a small classifier of the 8×8 digits.

FID compares Inception features; 8×8 digits need something of their size. We train a
two-hidden-layer MLP on the fixed training split, once, with a fixed seed, and cache its
parameters on disk (orbax) under ``$DIFFUSIONLAB_CACHE`` (default ``~/.cache/diffusionlab``).
Its 64-dimensional penultimate activations are the feature space of ``metrics.fd_digits``.
"""

from __future__ import annotations

import functools
import os
import pathlib
import shutil
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from diffusionlab.data.digits import digits

_VERSION = "v1"  # bump when the architecture or training recipe changes
_TRAIN_STEPS = 1500


class DigitClassifier(nnx.Module):
    """64 → 256 → 64 (features) → 10, SiLU activations."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(64, 256, rngs=rngs)
        self.feature = nnx.Linear(256, 64, rngs=rngs)
        self.head = nnx.Linear(64, 10, rngs=rngs)

    def features(self, x_Bx64: jax.Array) -> jax.Array:
        return jax.nn.silu(self.feature(jax.nn.silu(self.hidden(x_Bx64))))

    def __call__(self, x_Bx64: jax.Array) -> jax.Array:
        return self.head(self.features(x_Bx64))


def cache_dir() -> pathlib.Path:
    """Where trained helper models are cached (``$DIFFUSIONLAB_CACHE``)."""
    root = os.environ.get("DIFFUSIONLAB_CACHE") or pathlib.Path.home() / ".cache" / "diffusionlab"
    return pathlib.Path(root)


def _train() -> nnx.State:
    images, labels = digits("train")
    x, y = jnp.asarray(images.reshape(len(images), 64)), jnp.asarray(labels)
    graphdef, params = nnx.split(DigitClassifier(rngs=nnx.Rngs(0)))
    optimizer = optax.adamw(2e-3, weight_decay=1e-3)

    def loss(p):
        logits = nnx.merge(graphdef, p)(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    def step(carry, _):
        p, opt_state = carry
        grads = jax.grad(loss)(p)
        updates, opt_state = optimizer.update(grads, opt_state, p)
        return (optax.apply_updates(p, updates), opt_state), None

    (params, _), _ = jax.jit(lambda p: jax.lax.scan(step, (p, optimizer.init(p)), length=_TRAIN_STEPS))(params)
    return params


@functools.cache
def _classifier() -> DigitClassifier:
    import orbax.checkpoint as ocp

    model = DigitClassifier(rngs=nnx.Rngs(0))
    graphdef, template = nnx.split(model)
    path = cache_dir() / f"fd_digits_{_VERSION}"
    if path.exists():
        restored = ocp.StandardCheckpointer().restore(path, nnx.to_pure_dict(template))
        nnx.replace_by_pure_dict(template, restored)
        return nnx.merge(graphdef, template)
    params = _train()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write to a private folder, then rename: concurrent first uses never see half a file.
    staging = pathlib.Path(tempfile.mkdtemp(dir=path.parent)) / "ckpt"
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(staging, nnx.to_pure_dict(params))
    checkpointer.wait_until_finished()
    try:
        os.rename(staging, path)
    except OSError:
        pass  # another process cached it first; both trained the same deterministic model
    shutil.rmtree(staging.parent, ignore_errors=True)
    return nnx.merge(graphdef, params)


@functools.cache
def _features_fn():
    graphdef, params = nnx.split(_classifier())
    return jax.jit(lambda x: nnx.merge(graphdef, params).features(x))


def _flatten(images) -> jax.Array:
    images = np.asarray(images, np.float32)
    if images.shape[1:] not in ((8, 8, 1), (8, 8), (64,)):
        raise ValueError(f"images must be (N, 8, 8, 1), (N, 8, 8) or (N, 64), got {images.shape}")
    return jnp.asarray(images.reshape(len(images), 64))


def digit_features(images) -> np.ndarray:
    """The classifier's 64-d features of images in [-1, 1]; returns ``(N, 64)`` float64."""
    return np.asarray(_features_fn()(_flatten(images)), np.float64)


def classifier_accuracy(split: str = "test") -> float:
    """Accuracy of the cached feature classifier on a digits split (a sanity figure)."""
    images, labels = digits(split)
    logits = _classifier()(_flatten(images))
    return float(np.mean(np.asarray(jnp.argmax(logits, -1)) == labels))
