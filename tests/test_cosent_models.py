"""CoSENT models and training: encoder invariances, initialisation, compile-once, and the
part II effect at small size (the cross-encoder wins on the adversarial task)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from diffusionlab.cosent import (
    BiEncoder,
    CrossEncoder,
    EncoderConfig,
    TrainSettings,
    encode_task,
    synthetic_task,
)
from diffusionlab.cosent.comparison import compare, seed_averages
from diffusionlab.cosent.tokenizer import CLS, SEP, Tokenizer
from diffusionlab.cosent.train import init_params, train_stack
from tests.asserts import assert_compiles_once, assert_tree_allclose

TINY = EncoderConfig(vocab_size=32, dim=8, depth=1, num_heads=2, mlp_dim=16)


def _jitted(kind, config, method):
    """A jitted pure call of a freshly initialised model (eager calls compile every op)."""
    graphdef, params = init_params(kind, config, 0)
    return jax.jit(lambda *args: method(nnx.merge(graphdef, params), *args))


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_bi_encoder_padding_invariance_and_self_similarity(pooling):
    config = dataclasses.replace(TINY, pooling=pooling)
    embed = _jitted("bi", config, BiEncoder.embed)
    score = _jitted("bi", config, lambda m, a, b: m(a, b)[0])
    tokens = jnp.array([[CLS, 5, 6, 7, 0], [CLS, 9, 4, 0, 0]])
    padded = jnp.pad(tokens, ((0, 0), (0, 3)))
    assert_tree_allclose(embed(padded), embed(tokens), rtol=1e-5, atol=1e-6)
    assert_tree_allclose(score(tokens, tokens), jnp.ones(2), rtol=1e-5, atol=1e-6)
    assert not np.allclose(score(tokens, tokens[::-1]), 1.0)


def test_cross_encoder_padding_invariance_and_segment_positions():
    score = _jitted("cross", TINY, CrossEncoder.__call__)
    pair = jnp.array([[CLS, 5, 6, SEP, 7, 8, SEP, 0]])
    assert_tree_allclose(score(jnp.pad(pair, ((0, 0), (0, 4)))), score(pair), rtol=1e-5,
                         atol=1e-6)
    # The second segment counts its positions from 0: its score does not depend on how long
    # the first segment was, only on what it holds (RoPE sees relative positions only).
    longer_first = jnp.array([[CLS, 5, 6, 6, SEP, 7, 8, SEP]])
    assert score(longer_first).shape == (1,)
    assert not np.allclose(score(longer_first), score(pair))


def test_host_side_initialisation_matches_flax_structure_and_scale():
    config = EncoderConfig(vocab_size=64, dim=32, depth=1, num_heads=2, mlp_dim=64)
    for kind, cls in (("bi", BiEncoder), ("cross", CrossEncoder)):
        graphdef, params = init_params(kind, config, seed=3)
        reference = nnx.split(nnx.eval_shape(lambda cls=cls: cls(config, rngs=nnx.Rngs(0))))
        assert graphdef == reference[0]
        assert jax.tree.structure(params) == jax.tree.structure(reference[1])
    kernel = np.asarray(params["trunk"]["blocks"][0]["mlp_in"]["kernel"].get_value())
    fan_in = kernel.shape[0]
    assert abs(kernel.std() * np.sqrt(fan_in) - 1) < 0.05
    assert np.abs(kernel).max() * np.sqrt(fan_in) <= 2 / 0.87962566103423978 + 1e-6
    _, again = init_params("cross", config, seed=3)
    assert_tree_allclose(again, params)


def test_training_program_compiles_once():
    task = synthetic_task("adversarial", num_train=64, num_valid=8, num_test=8)
    tokenizer = Tokenizer.fit(task.texts(), max_vocab=TINY.vocab_size)
    arrays = encode_task(task, tokenizer, kind="bi", max_length=8)
    settings = TrainSettings(steps=2, batch_size=16, eval_every=1)
    graphdef, params = init_params("bi", TINY, 0)
    stack = jax.tree.map(lambda x: jnp.stack([x, x]), params)
    keys = jnp.stack([jax.random.key(0), jax.random.key(1)])
    weights = jnp.eye(3, dtype=jnp.float32)[:2]
    calls = [(graphdef, "bi", settings, stack, weights, keys, arrays["train"], arrays["valid"],
              arrays["test"]),
             (graphdef, "bi", settings, jax.tree.map(lambda x: 0.5 * x, stack), weights[::-1],
              keys[::-1], arrays["train"], arrays["valid"], arrays["test"])]
    assert_compiles_once(train_stack, calls)
    losses, valid, test = train_stack(*calls[0])
    assert losses.shape == (2, 2) and valid.shape == (2, 3, 8) and test.shape == (2, 3, 8)
    assert np.all(np.isfinite(np.asarray(losses)))


def test_cross_encoder_beats_bi_encoder_on_the_adversarial_task():
    """Part II at small size: word-order negatives defeat the cosine of pooled embeddings."""
    task = synthetic_task("adversarial", num_train=4000, num_valid=200, num_test=200)
    encoder = EncoderConfig(vocab_size=256, dim=32, depth=2, num_heads=2, mlp_dim=64)
    settings = TrainSettings(steps=300, batch_size=32, learning_rate=3e-3, eval_every=150)
    kwargs = dict(encoder=encoder, settings=settings, seeds=(0,), max_length=16,
                  select_by="accuracy")
    bi, _, _ = compare(task, "bi", ("cosent",), **kwargs)
    cross, _, _ = compare(task, "cross", ("cross_entropy",), **kwargs)
    assert cross[0]["test_accuracy"] > bi[0]["test_accuracy"] + 0.1, (bi, cross)


def test_seed_averages_pair_runs_by_seed_and_refuse_a_missing_run():
    rows = [{"task": t, "loss": loss, "seed": s, "m": base + 0.1 * s + (0.2 if t == "b" else 0)}
            for t in ("a", "b") for loss, base in (("x", 0.5), ("y", 0.3)) for s in (2, 0, 1)]
    out = seed_averages(rows, "m")
    assert_tree_allclose(out["x"], 100 * np.array([0.6, 0.7, 0.8]))
    assert_tree_allclose(out["y"] - out["x"], np.full(3, -20.0))
    assert_tree_allclose(seed_averages(rows, "m", tasks=("a",))["x"], 100 * np.array([0.5, 0.6, 0.7]))
    with pytest.raises(ValueError, match="no run"):
        seed_averages(rows[:-1], "m")
