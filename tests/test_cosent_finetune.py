"""Fine-tuning the top of a pretrained BERT: pair inputs, the split forward, AnglE, training."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from diffusionlab.cosent import finetune as ft
from diffusionlab.cosent.angle import angle_loss, angle_similarity
from diffusionlab.cosent.pretrained import BertEncoder, WordPieceTokenizer
from tests.asserts import assert_compiles_once

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + [f"w{i}" for i in range(24)]


def _encoder(depth=2, seed=0):
    return BertEncoder(vocab_size=len(VOCAB), dim=16, depth=depth, num_heads=2, mlp_dim=32,
                       max_positions=32, rngs=nnx.Rngs(seed))


@jax.jit
def _forward(graphdef, state, tokens, types):
    return nnx.merge(graphdef, state)(tokens, types)


_top = jax.jit(ft.top_states, static_argnums=0)


@jax.jit
def _lower(graphdef, state, tokens):
    return nnx.merge(graphdef, state).hidden(tokens, layers=slice(0, 1))


def _texts(rng, n):
    return [" ".join(f"w{j}" for j in rng.integers(0, 24, rng.integers(1, 5))) for _ in range(n)]


def _splits(seed=0, sizes=(("train", 24), ("valid", 8), ("test", 8))):
    rng = np.random.default_rng(seed)
    return {name: (_texts(rng, n), _texts(rng, n), rng.uniform(0, 10, n)) for name, n in sizes}


# ----------------------------------------------------------------------------- pair inputs


def test_encode_pairs_segments_and_longest_first_truncation():
    tokenizer = WordPieceTokenizer(VOCAB)
    tokens, types = tokenizer.encode_pairs(["w1 w2", "w1 w2 w3 w4 w5"], ["w3", "w6 w7"],
                                           max_length=8)
    np.testing.assert_array_equal(tokens, [[2, 5, 6, 3, 7, 3, 0, 0],
                                           [2, 5, 6, 7, 3, 10, 11, 3]])
    np.testing.assert_array_equal(types, [[0, 0, 0, 0, 1, 1, 0, 0],
                                          [0, 0, 0, 0, 0, 1, 1, 1]])
    with pytest.raises(ValueError, match="max_length"):
        tokenizer.encode_pairs(["w1"], ["w2"], max_length=2)
    with pytest.raises(ValueError, match="same number"):
        tokenizer.encode_pairs(["w1"], ["w2", "w3"], max_length=8)
    with pytest.raises(TypeError, match="strings"):
        tokenizer.encode_pairs([1], ["w2"], max_length=8)


# -------------------------------------------------------------------------- split forward


def test_cached_lower_layers_then_top_equal_the_full_forward():
    encoder = _encoder()
    tokenizer = WordPieceTokenizer(VOCAB)
    rng = np.random.default_rng(1)
    tokens, types = tokenizer.encode_pairs(_texts(rng, 5), _texts(rng, 5), max_length=12)
    graphdef_all, state_all = nnx.split(encoder)
    full = np.asarray(_forward(graphdef_all, state_all, tokens, types))
    for k in (1, 2):  # the top block, or every block (the lower part: the embeddings)
        states = ft.lower_states(encoder, tokens, types, trainable_layers=k, chunk=2)
        graphdef, params = ft.split_top(encoder, k)
        top = np.asarray(_top(graphdef, params, states, jnp.asarray(tokens)))
        np.testing.assert_allclose(top, full, rtol=1e-5, atol=1e-5)
    # Segment ids matter: the same tokens with all-zero segments differ.
    zeros = np.zeros_like(types)
    assert np.abs(np.asarray(_forward(graphdef_all, state_all, tokens, zeros)) - full).max() > 1e-3


def test_split_forward_rejects_bad_arguments():
    encoder = _encoder()
    tokens = np.array([[2, 5, 3]])
    with pytest.raises(ValueError, match="pass states"):
        encoder.hidden(tokens, layers=slice(1, None))
    with pytest.raises(ValueError, match="states must be None"):
        encoder.hidden(tokens, layers=slice(0, 1), states=jnp.zeros((1, 3, 16)))
    with pytest.raises(ValueError, match="contiguous"):
        encoder.hidden(tokens, layers=slice(0, 2, 2))
    with pytest.raises(ValueError, match="shape"):
        encoder.hidden(tokens, layers=slice(1, None), states=jnp.zeros((1, 4, 16)))
    with pytest.raises(ValueError, match="trainable_layers"):
        ft.split_top(encoder, 3)
    with pytest.raises(ValueError, match="trainable_layers"):
        ft.lower_states(encoder, tokens, trainable_layers=0)
    with pytest.raises(ValueError, match="tokens_NxL"):
        ft.lower_states(encoder, np.array([[2, 99]]), trainable_layers=1)
    with pytest.raises(ValueError, match="types_NxL"):
        ft.lower_states(encoder, tokens, np.array([[0, 2, 0]]), trainable_layers=1)


def test_cache_splits_bi_rows_and_labels():
    encoder = _encoder()
    tokenizer = WordPieceTokenizer(VOCAB)
    splits = {"train": (["w1", "w2", "w1"], ["w2", "w3 w4", "w3 w4"], np.array([9.0, 2.0, 5.0]))}
    cached = ft.cache_splits(encoder, tokenizer, splits, score_range=(0, 10), kind="bi",
                             max_length=8, trainable_layers=1)["train"]
    # Three distinct texts; length = longest ([CLS] w3 w4 [SEP]).
    assert cached.tokens.shape == (3, 4) and cached.states.shape == (3, 4, 16)
    np.testing.assert_array_equal(cached.first, [0, 1, 0])
    np.testing.assert_array_equal(cached.second, [1, 2, 2])
    np.testing.assert_array_equal(cached.binary, [1, 0, 0])  # midpoint 5 is not above
    np.testing.assert_allclose(cached.targets, [0.9, 0.2, 0.5], rtol=1e-6)
    # The cached states equal the lower block on the trimmed tokens.
    expected = _lower(*nnx.split(encoder), cached.tokens)
    np.testing.assert_allclose(cached.states, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="score_range"):
        ft.cache_splits(encoder, tokenizer, splits, score_range=(0, 5), kind="bi",
                        max_length=8, trainable_layers=1)
    with pytest.raises(ValueError, match="kind"):
        ft.cache_splits(encoder, tokenizer, splits, score_range=(0, 10), kind="tri",
                        max_length=8, trainable_layers=1)
    with pytest.raises(ValueError, match="one entry per pair"):
        ft.cache_splits(encoder, tokenizer, {"train": (["w1"], ["w2", "w3"], [1.0])},
                        score_range=(0, 10), kind="bi", max_length=8, trainable_layers=1)


# -------------------------------------------------------------------------------- AnglE


def test_angle_similarity_analytic_unit_complex_numbers():
    # One complex component: u = e^{i a}, v = e^{i b} -> |cos(a - b) + sin(a - b)|.
    a = np.array([0.0, 0.3, np.pi / 4, np.pi / 2, 3 * np.pi / 4, 1.0])
    b = np.array([0.0, 0.3, 0.0, 0.0, 0.0, -0.5])
    u = np.stack([np.cos(a), np.sin(a)], 1)
    v = 3.0 * np.stack([np.cos(b), np.sin(b)], 1)  # scale does not matter
    expected = np.abs(np.cos(a - b) + np.sin(a - b))
    with jax.enable_x64(True):
        np.testing.assert_allclose(angle_similarity(u, v), expected, rtol=1e-12, atol=1e-12)
        assert float(angle_similarity(u, v)[2]) == pytest.approx(np.sqrt(2), rel=1e-12)
        # Real part = cosine: with the imaginary halves zero the score is |cos|.
        rng = np.random.default_rng(0)
        x, y = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
        pad = np.zeros_like(x)
        cos = np.sum(x * y, 1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)
        np.testing.assert_allclose(angle_similarity(np.hstack([x, pad]), np.hstack([y, pad])),
                                   np.abs(cos), rtol=1e-12)
    # In float32 the same to float32 rounding.
    np.testing.assert_allclose(angle_similarity(u.astype(np.float32), v.astype(np.float32)),
                               expected, rtol=1e-5, atol=1e-6)


def test_angle_loss_is_cosent_on_angle_scores():
    # Two pairs: labels [0, 1], scores s0 = sqrt(2) (pi/4), s1 = 1 (0): log(1 + e^{l(s0-s1)}).
    u = np.array([[np.cos(np.pi / 4), np.sin(np.pi / 4)], [1.0, 0.0]])
    v = np.array([[1.0, 0.0], [1.0, 0.0]])
    with jax.enable_x64(True):
        value = float(angle_loss(u, v, np.array([0, 1]), scale=1.0))
        assert value == pytest.approx(np.log1p(np.exp(np.sqrt(2) - 1)), rel=1e-12)
        assert float(angle_loss(u, v, np.array([1, 0]), scale=20.0)) == pytest.approx(
            np.log1p(np.exp(20 * (1 - np.sqrt(2)))), rel=1e-10)


def test_angle_rejects_bad_input():
    with pytest.raises(ValueError, match="even"):
        angle_similarity(np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="same shape"):
        angle_similarity(np.ones((2, 4)), np.ones((3, 4)))
    with pytest.raises(TypeError, match="real floats"):
        angle_similarity(np.ones((2, 4), np.int32), np.ones((2, 4)))
    with pytest.raises(ValueError, match="shape"):
        angle_similarity(np.ones(4), np.ones(4))
    with pytest.raises(ValueError, match="scale"):
        angle_loss(np.ones((2, 4)), np.ones((2, 4)), np.array([0, 1]), scale=0.0)
    # Half precision is computed in float32.
    assert angle_similarity(np.ones((2, 4), np.float16), np.ones((2, 4), np.float16)).dtype \
        == jnp.float32


# ------------------------------------------------------------------------------ training


TRAINING = ft.FinetuneSettings(epochs=8, batch_size=8, learning_rate=3e-3,
                               head_learning_rate=3e-3)


@pytest.mark.parametrize("kind", ["bi", "cross"])
def test_training_reduces_each_loss(kind):
    encoder, tokenizer = _encoder(), WordPieceTokenizer(VOCAB)
    # The same 8 pairs every epoch (one batch): each loss must fall on its own batch.
    cached = ft.cache_splits(encoder, tokenizer, _splits(2, (("train", 8), ("valid", 4),
                                                             ("test", 4))),
                             score_range=(0, 10), kind=kind, max_length=6, trainable_layers=1)
    losses = ft.KINDS[kind]
    result = ft.finetune(encoder, kind, losses, cached, num_seeds=1, settings=TRAINING,
                         key=jax.random.key(0))
    assert result.train_loss.shape == (len(losses), 1, 8)
    assert result.valid_scores.shape == (len(losses), 1, 9, 4)
    first, last = result.train_loss[:, 0, 0], result.train_loss[:, 0, -1]
    assert np.all(np.isfinite(result.train_loss))
    assert np.all(last < 0.9 * first), (first, last)
    # Before training every bi-encoder scores with the same pretrained cosine.
    if kind == "bi":
        assert np.ptp(result.test_scores[:, :, 0], axis=0).max() < 1e-6
    picked = ft.best_epoch_spearman(result)
    assert np.all((picked["best_epoch"] >= 1) & (picked["best_epoch"] <= 8))
    np.testing.assert_allclose(picked["best_valid"], picked["valid"][:, :, 1:].max(axis=2))


def test_train_epoch_compiles_once_across_parameters_keys_and_epochs():
    # The data and settings of the cross-encoder training test: in one session its program
    # is reused here.
    encoder, tokenizer = _encoder(), WordPieceTokenizer(VOCAB)
    cached = ft.cache_splits(encoder, tokenizer, _splits(2, (("train", 8), ("valid", 4),
                                                             ("test", 4))),
                             score_range=(0, 10), kind="cross", max_length=6, trainable_layers=1)
    graphdef, top = ft.split_top(encoder, 1)

    def args(seed, epoch):
        params, opt, keys = ft.init_models("cross", top, num_losses=2, num_seeds=1, dim=16,
                                           settings=TRAINING, key=jax.random.key(seed))
        weights = jnp.eye(2, dtype=jnp.float32)
        return ("cross", graphdef, TRAINING, params, opt, weights, keys,
                jnp.asarray(epoch, jnp.int32), cached["train"], cached["valid"])

    assert_compiles_once(ft.train_epoch, [args(0, 0), args(1, 3), args(2, 1)])


def test_seeds_share_heads_across_losses_and_keys_are_explicit():
    encoder = _encoder()
    _, top = ft.split_top(encoder, 1)
    settings = ft.FinetuneSettings()
    params, _, keys = ft.init_models("bi", top, num_losses=3, num_seeds=2, dim=16,
                                     settings=settings, key=jax.random.key(7))
    kernel = np.asarray(params["head"]["kernel"])
    assert kernel.shape == (6, 48, 2)
    np.testing.assert_array_equal(kernel[0], kernel[2])  # seed 0 in losses 0 and 1
    np.testing.assert_array_equal(np.asarray(keys)[1], np.asarray(keys)[5])
    assert np.abs(kernel[0] - kernel[1]).max() > 0  # seeds differ
    again, _, _ = ft.init_models("bi", top, num_losses=3, num_seeds=2, dim=16,
                                 settings=settings, key=jax.random.key(7))
    np.testing.assert_array_equal(np.asarray(again["head"]["kernel"]), kernel)


def test_finetune_rejects_bad_arguments():
    encoder, tokenizer = _encoder(), WordPieceTokenizer(VOCAB)
    cached = ft.cache_splits(encoder, tokenizer, _splits(4), score_range=(0, 10), kind="bi",
                             max_length=5, trainable_layers=1)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="losses"):
        ft.finetune(encoder, "bi", ("cross_entropy",), cached, key=key)
    with pytest.raises(TypeError, match="losses"):
        ft.finetune(encoder, "bi", "cosent", cached, key=key)
    with pytest.raises(TypeError, match="splits"):
        ft.finetune(encoder, "bi", ("cosent",), {"train": cached["train"]}, key=key)
    with pytest.raises(ValueError, match="num_seeds"):
        ft.finetune(encoder, "bi", ("cosent",), cached, num_seeds=0, key=key)
    with pytest.raises(ValueError, match="trainable_layers"):
        ft.FinetuneSettings(trainable_layers=0)
    with pytest.raises(ValueError, match="learning_rate"):
        ft.FinetuneSettings(learning_rate=-1.0)
    with pytest.raises(ValueError, match="trainable_layers"):
        ft.finetune(encoder, "bi", ("cosent",), cached,
                    settings=ft.FinetuneSettings(trainable_layers=3), key=key)
