"""CoSENT loss: reference values, the double-loop definition, invariances, precision."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffusionlab.cosent import (
    binary_cross_entropy_loss,
    cosent_loss,
    cosent_loss_sorted,
    cosine_mse_loss,
    sbert_softmax_loss,
)
from diffusionlab.cosent.loss import SORTED_FROM_BATCH, _choose_method
from tests.asserts import assert_compiles_once, assert_tree_allclose


def cosent_loss_dense(scores, labels, *, scale=20.0):
    return cosent_loss(scores, labels, scale=scale, method="dense")


LOSSES = [cosent_loss, cosent_loss_sorted]
# Eager JAX compiles every primitive for every new shape; one jit per loss is far cheaper.
VALUE_AND_GRAD = {loss: jax.jit(jax.value_and_grad(loss), static_argnames="scale")
                  for loss in [*LOSSES, cosent_loss_dense]}


def double_loop(scores, labels, scale):
    """The definition: log(1 + sum over y_a > y_b of exp(scale (s_b - s_a)))."""
    total = 1.0
    for a, b in itertools.product(range(len(scores)), repeat=2):
        if labels[a] > labels[b]:
            total += math.exp(scale * (scores[b] - scores[a]))
    return math.log(total)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("scores, expected", [([0.9, 0.1], 1.171101), ([0.1, 0.9], 0.371101)])
def test_reference_values(loss, scores, expected):
    value = loss(jnp.array(scores), jnp.array([0, 1]), scale=1.0)
    assert abs(float(value) - expected) < 5e-7
    assert abs(expected - math.log1p(math.exp(scores[0] - scores[1]))) < 5e-7


@pytest.mark.parametrize("loss", LOSSES)
def test_equals_double_loop_with_ties(loss):
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        jitted = jax.jit(loss, static_argnames="scale")
        for size in (1, 2, 30, 30):
            scores = rng.normal(size=size)
            labels = rng.integers(0, 3, size=size).astype(np.float64)
            value = jitted(jnp.asarray(scores), jnp.asarray(labels), scale=2.0)
            assert value.dtype == jnp.float64
            np.testing.assert_allclose(float(value), double_loop(scores, labels, 2.0), rtol=1e-12)


def test_sorted_equals_dense_on_random_batches():
    rng = np.random.default_rng(1)
    for size in (16, 257):
        for levels in (2, 3, 6, size):
            scores = jnp.asarray(rng.uniform(-1, 1, size=size), jnp.float32)
            labels = jnp.asarray(rng.integers(0, levels, size=size))
            value, grad = VALUE_AND_GRAD[cosent_loss_sorted](scores, labels)
            value_dense, grad_dense = VALUE_AND_GRAD[cosent_loss_dense](scores, labels)
            assert_tree_allclose(value, value_dense, rtol=2e-5, atol=1e-5)
            assert_tree_allclose(grad, grad_dense, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("loss", LOSSES)
def test_all_tied_is_exactly_zero_with_zero_gradient(loss):
    scores = jnp.array([0.3, -0.9, 0.5, 0.99])
    labels = jnp.full(4, 2.0)
    assert float(loss(scores, labels)) == 0.0
    assert np.all(np.asarray(jax.grad(loss)(scores, labels)) == 0.0)


@pytest.mark.parametrize("loss", LOSSES)
def test_ties_do_not_couple(loss):
    # labels (1, 1, 0): only pair 2 is compared, with each of pairs 0 and 1.
    s = np.array([0.2, -0.4, 0.7])
    expected = math.log(1 + math.exp(s[2] - s[0]) + math.exp(s[2] - s[1]))
    np.testing.assert_allclose(float(loss(jnp.asarray(s), jnp.array([1, 1, 0]), scale=1.0)),
                               expected, rtol=1e-6)
    # Only score differences enter, so the gradient sums to zero.
    grad = np.asarray(jax.grad(loss)(jnp.asarray(s), jnp.array([1, 1, 0]), scale=1.0))
    np.testing.assert_allclose(grad.sum(), 0.0, atol=1e-6)


@pytest.mark.parametrize("loss", LOSSES)
def test_invariant_to_permutation_and_monotone_relabelling(loss):
    rng = np.random.default_rng(2)
    scores = jnp.asarray(rng.normal(size=20), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 4, size=20))
    base = loss(scores, labels)
    perm = rng.permutation(20)
    assert_tree_allclose(loss(scores[perm], labels[perm]), base, rtol=1e-5)
    relabelled = jnp.exp(labels.astype(jnp.float32)) * 3.0 - 7.0  # strictly increasing map
    assert_tree_allclose(loss(scores, relabelled), base, rtol=1e-5)


@pytest.mark.parametrize("loss", LOSSES)
def test_monotone_in_the_extreme_pairs(loss):
    rng = np.random.default_rng(3)
    scores = rng.normal(size=12)
    labels = rng.integers(0, 4, size=12)
    top, bottom = int(np.argmax(labels)), int(np.argmin(labels))
    base = float(loss(jnp.asarray(scores), jnp.asarray(labels)))
    raised, lowered = scores.copy(), scores.copy()
    raised[top] += 0.3
    lowered[bottom] -= 0.3
    assert float(loss(jnp.asarray(raised), jnp.asarray(labels))) <= base
    assert float(loss(jnp.asarray(lowered), jnp.asarray(labels))) <= base


@pytest.mark.parametrize("loss", LOSSES)
def test_gradient_matches_finite_differences(loss):
    rng = np.random.default_rng(4)
    with jax.enable_x64(True):
        scores = jnp.asarray(rng.uniform(-1, 1, size=9))
        labels = jnp.asarray(rng.integers(0, 3, size=9).astype(np.float64))
        grad = np.asarray(jax.grad(loss)(scores, labels, scale=5.0))
        eps = 1e-6
        steps = eps * jnp.eye(9)
        batched = jax.jit(jax.vmap(lambda s: loss(s, labels, scale=5.0)))
        fd = (batched(scores[None] + steps) - batched(scores[None] - steps)) / (2 * eps)
        np.testing.assert_allclose(grad, np.asarray(fd), rtol=1e-6, atol=1e-9)


# B = 512 is above the crossover, so the default runs the sorted form: the dense one is named.
@pytest.mark.parametrize("loss", [*LOSSES, cosent_loss_dense])
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_finite_under_half_precision_and_extreme_scores(loss, dtype):
    rng = np.random.default_rng(5)
    labels = jnp.asarray(rng.integers(0, 3, size=512))
    for magnitude in (1.0, 1e3, 6e4):
        scores = jnp.asarray(rng.uniform(-magnitude, magnitude, size=512), dtype)
        value, grad = VALUE_AND_GRAD[loss](scores, labels)
        assert np.isfinite(float(value))
        assert np.all(np.isfinite(np.asarray(grad, np.float32)))
    # Mostly tied: one comparable pair among 512, the rest masked.
    labels = jnp.zeros(512, jnp.int32).at[0].set(1)
    value, grad = VALUE_AND_GRAD[loss](jnp.asarray(rng.normal(size=512), dtype), labels)
    assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(grad, np.float32)))


def test_large_constant_mask_gives_nan_in_fp16():
    """Regression note: subtracting (1 - M) * 1e12, the reference's mask, breaks in fp16."""
    s = jnp.array([0.9, 0.1], jnp.float16) * 20
    y = jnp.array([0, 1])
    mask = (y[:, None] > y[None, :]).astype(jnp.float16)
    diff = s[None, :] - s[:, None] - (1 - mask) * jnp.float16(1e12)
    legacy = jax.nn.logsumexp(jnp.concatenate([jnp.zeros(1, jnp.float16), diff.reshape(-1)]))
    assert not np.isfinite(float(legacy))
    assert np.isfinite(float(cosent_loss(s / 20, y)))


def test_default_equals_dense_and_sorted_on_both_sides_of_the_crossover():
    rng = np.random.default_rng(7)
    for size in (SORTED_FROM_BATCH - 1, SORTED_FROM_BATCH):
        scores = jnp.asarray(rng.uniform(-1, 1, size=size), jnp.float32)
        labels = jnp.asarray(rng.integers(0, 5, size=size))  # many ties
        value, grad = VALUE_AND_GRAD[cosent_loss](scores, labels)
        # The default runs one form (see the dispatch test below); compare with the other.
        other = cosent_loss_sorted if size < SORTED_FROM_BATCH else cosent_loss_dense
        value_other, grad_other = VALUE_AND_GRAD[other](scores, labels)
        assert_tree_allclose(value, value_other, rtol=2e-5, atol=1e-5)
        assert_tree_allclose(grad, grad_other, rtol=1e-4, atol=1e-6)


def test_auto_dispatch_depends_on_the_static_batch_size():
    assert _choose_method(SORTED_FROM_BATCH - 1, "auto") == "dense"
    assert _choose_method(SORTED_FROM_BATCH, "auto") == "sorted"
    assert _choose_method(1, "sorted") == "sorted"
    assert _choose_method(10**6, "dense") == "dense"

    # The choice is made at trace time: only the sorted form sorts, only the dense one
    # builds a B x B matrix.
    def traced(size, method="auto"):
        spec = jax.ShapeDtypeStruct((size,), jnp.float32)
        return str(jax.make_jaxpr(lambda s, y: cosent_loss(s, y, method=method))(spec, spec))

    def sorts(text):  # the printed program, nested jaxprs (argsort's) included
        return " sort[" in text

    below, above = SORTED_FROM_BATCH - 1, SORTED_FROM_BATCH
    assert not sorts(traced(below)) and f"{below},{below}" in str(traced(below))
    assert sorts(traced(above)) and f"{above},{above}" not in str(traced(above))
    assert sorts(traced(below, "sorted")) and not sorts(traced(above, "dense"))


def test_bad_method_raises_naming_it():
    for bad in ("fast", "Auto", None, 1):
        with pytest.raises(ValueError, match=r"method must be one of 'auto', 'dense', 'sorted'"):
            cosent_loss(jnp.zeros(3), jnp.arange(3), method=bad)


def test_compiles_once_under_jit():
    rng = np.random.default_rng(6)
    jitted = jax.jit(cosent_loss_sorted)
    calls = [(jnp.asarray(rng.normal(size=64), jnp.float32), jnp.asarray(rng.integers(0, 3, 64)))
             for _ in range(3)]
    assert_compiles_once(jitted, calls)
    assert_tree_allclose(jitted(*calls[0]), cosent_loss(*calls[0]), rtol=2e-5)


@pytest.mark.parametrize("loss", LOSSES)
def test_bad_input_raises(loss):
    with pytest.raises(ValueError, match="same length"):
        loss(jnp.zeros(3), jnp.zeros(4))
    with pytest.raises(ValueError, match="finite"):
        loss(jnp.zeros(2), jnp.array([0.0, jnp.nan]))
    with pytest.raises(ValueError, match="scale"):
        loss(jnp.zeros(2), jnp.zeros(2), scale=0.0)
    with pytest.raises(ValueError, match="scale"):
        loss(jnp.zeros(2), jnp.zeros(2), scale=-1.0)
    with pytest.raises(ValueError, match="empty"):
        loss(jnp.zeros(0), jnp.zeros(0))
    with pytest.raises(ValueError, match="1-D"):
        loss(jnp.zeros((2, 2)), jnp.zeros((2, 2)))


def test_baselines_per_example_values():
    cos = jnp.array([0.8, -0.2])
    np.testing.assert_allclose(cosine_mse_loss(cos, jnp.array([1.0, 0.0])), [0.04, 0.04],
                               rtol=1e-5)
    logits = jnp.array([[0.0, 2.0], [1.0, -1.0]])
    expected = [math.log1p(math.exp(-2.0)), math.log1p(math.exp(-2.0))]
    np.testing.assert_allclose(sbert_softmax_loss(logits, jnp.array([1, 0])), expected, rtol=1e-6)
    # Binary CE on f equals the 2-way softmax with logits (0, f).
    f = jnp.array([0.7, -1.3, 2.0])
    y = jnp.array([1, 0, 0])
    np.testing.assert_allclose(
        binary_cross_entropy_loss(f, y),
        sbert_softmax_loss(jnp.stack([jnp.zeros(3), f], axis=1), y), rtol=1e-6)
    with pytest.raises(ValueError, match="same batch size"):
        cosine_mse_loss(jnp.zeros(2), jnp.zeros(3))
