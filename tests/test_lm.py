"""The small LM: tokenizer, cache = recompute, padding, causality, overfitting, checkpoints."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from diffusionlab import lm
from diffusionlab.train import TrainConfig, fit
from tests.asserts import assert_compiles_once, assert_tree_allclose

CONFIG = lm.LMConfig(dim=32, depth=2, num_heads=2, mlp_dim=64, max_length=48)


@pytest.fixture(scope="module", params=[0, 3], ids=["plain", "token_shift"])
def model(request):
    """The plain transformer and the one with a token shift: every invariant below holds for both."""
    config = dataclasses.replace(CONFIG, shift=request.param)
    return lm.pure(lm.LanguageModel(config, rngs=nnx.Rngs(0)))


def test_tokenizer_round_trip():
    tok = lm.ByteTokenizer()
    text = "QXB: 417. naïve"
    ids = tok.encode(text, bos=True, eos=True)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id and ids.min() >= 0
    assert ids.max() < tok.vocab_size
    assert tok.decode(ids) == text
    assert tok.decode(np.concatenate([[0, 0], ids, [70, 71]])) == text  # stops at EOS


def test_cached_logits_equal_full_recompute(model):
    apply, params = model
    prompts = jnp.asarray(lm.left_pad([[1, 5, 6, 7, 8, 9, 10, 11, 12], [1, 40, 41, 42]]))
    full, _ = apply(params, prompts, None)
    cache = apply.init_cache(2, 12)
    first, cache = apply(params, prompts[:, :5], cache)
    pieces = [first]
    for t in range(5, prompts.shape[1]):
        logits, cache = apply(params, prompts[:, t:t + 1], cache)
        pieces.append(logits)
    cached = jnp.concatenate(pieces, axis=1)
    valid = np.asarray(prompts != 0)
    assert_tree_allclose(np.asarray(cached)[valid], np.asarray(full)[valid], rtol=1e-5, atol=1e-5)


def test_left_padding_does_not_change_logits(model):
    apply, params = model
    row = [1, 20, 21, 22, 23]
    alone, _ = apply(params, jnp.asarray([row]), None)
    padded, _ = apply(params, jnp.asarray([[0, 0, 0] + row]), None)
    assert_tree_allclose(padded[:, 3:], alone, rtol=1e-5, atol=1e-5)


def test_causality_by_gradient(model):
    apply, params = model
    tokens = jnp.asarray([[30, 31, 32, 33, 34, 35]])  # distinct ids: table row = position
    probe = 200  # a logit whose output-projection gradient lands on an unused row

    def logit(table, i):
        swapped = jax.tree_util.tree_map_with_path(
            lambda path, leaf: table if "embedding" in jax.tree_util.keystr(path) else leaf,
            params)
        logits, _ = apply(swapped, tokens, None)
        return logits[0, i, probe]

    table = params["trunk"]["embed"]["embedding"][...]
    for i in range(6):
        g = np.asarray(jnp.abs(jax.grad(logit)(table, i)[30:36]).sum(-1))
        assert np.all(g[i + 1:] == 0), f"logits at {i} depend on later tokens"
        assert np.all(g[: i + 1] > 0), f"logits at {i} ignore earlier tokens"


def test_causality_by_perturbation(model):
    apply, params = model
    a = jnp.asarray([[1, 30, 31, 32, 33, 34]])
    b = a.at[0, 4].set(99)
    la, _ = apply(params, a, None)
    lb, _ = apply(params, b, None)
    assert_tree_allclose(la[:, :4], lb[:, :4], rtol=1e-6, atol=1e-6)
    assert float(jnp.abs(la[:, 4:] - lb[:, 4:]).max()) > 1e-3


def test_cached_generation_equals_uncached(model):
    apply, params = model
    prompts = lm.left_pad([[1, 5, 6, 7, 8], [1, 9, 10]])
    cached = lm.generate(apply, params, prompts, max_new_tokens=5, eos_id=-1)
    uncached = lm.uncached_generate(apply, params, jnp.asarray(prompts), max_new_tokens=5)
    np.testing.assert_array_equal(cached, uncached)


def test_generate_compiles_once(model):
    apply, params = model
    from diffusionlab.lm.decode import decode, prefill

    def call(seed):
        prompts = jnp.asarray(np.random.default_rng(seed).integers(3, 200, (2, 6)), jnp.int32)
        logits, cache = prefill(apply, params, prompts, max_new_tokens=3)
        return (apply, params, logits, cache, jax.random.key(seed), jnp.float32(1.0))

    calls = [call(seed) for seed in range(3)]
    assert_compiles_once(lambda *args: decode(*args, max_new_tokens=3, eos_id=2, greedy=True), calls)
    # a model loaded apart (another object, same architecture) reuses the compiled programs
    twin, _ = lm.pure(lm.LanguageModel(apply.config, rngs=nnx.Rngs(1)))
    assert twin is not apply and twin == apply
    assert_compiles_once(lambda a, *args: decode(a, *args, max_new_tokens=3, eos_id=2, greedy=True),
                         [calls[0], (twin, *calls[1][1:])])


def test_greedy_decoding_needs_no_key_and_ignores_one(model):
    """Greedy decoding draws nothing: without a key, and with any key, the tokens are the
    argmax path of the uncached baseline."""
    apply, params = model
    prompts = np.array([[0, 0, 1, 5, 9], [1, 7, 8, 9, 10]], np.int32)
    keyless = lm.generate(apply, params, prompts, max_new_tokens=4, eos_id=-1)
    for seed in (0, 1):
        keyed = lm.generate(apply, params, prompts, max_new_tokens=4, eos_id=-1,
                            key=jax.random.key(seed))
        np.testing.assert_array_equal(keyed, keyless)
    np.testing.assert_array_equal(
        keyless, lm.uncached_generate(apply, params, jnp.asarray(prompts), max_new_tokens=4))
    from diffusionlab.lm.decode import decode, prefill
    logits, cache = prefill(apply, params, jnp.asarray(prompts), max_new_tokens=4)
    with pytest.raises(ValueError, match="needs a key"):
        decode(apply, params, logits, cache, None, jnp.float32(1.0), max_new_tokens=4,
               eos_id=-1, greedy=False)


def test_generate_rejects_bad_arguments(model):
    apply, params = model
    prompts = np.array([[1, 2]], np.int32)
    with pytest.raises(ValueError, match="max_new_tokens"):
        lm.generate(apply, params, prompts, max_new_tokens=0)
    with pytest.raises(ValueError, match="key"):
        lm.generate(apply, params, prompts, max_new_tokens=2, temperature=1.0)
    with pytest.raises(ValueError, match=r"prompts_BxP must hold integers in \[0, 258\]"):
        lm.generate(apply, params, np.array([[1, 259]], np.int32), max_new_tokens=2)
    with pytest.raises(TypeError, match="prompts_BxP"):
        lm.generate(apply, params, [[1, 2]], max_new_tokens=2)


def test_full_cache_is_rejected(model):
    apply, params = model
    cache = apply.init_cache(1, 4)
    _, cache = apply(params, np.array([[5, 6, 7]], np.int32), cache)
    with pytest.raises(ValueError, match="cache is full"):
        apply(params, np.array([[8, 9]], np.int32), cache)


def test_overfits_a_tiny_corpus():
    config = lm.LMConfig(dim=32, depth=2, num_heads=2, mlp_dim=64, max_length=40)
    apply, params = lm.pure(lm.LanguageModel(config, rngs=nnx.Rngs(1)))
    tok = lm.ByteTokenizer()
    texts = ["QXB: 417.\nQ: QXB?\nA: QXB: 417", "ABC: 902.\nQ: ABC?\nA: ABC: 902"]
    data = {"tokens": lm.left_pad([tok.encode(t, bos=True, eos=True) for t in texts],
                                  length=41)}
    data["answer"] = (data["tokens"] != 0).astype(np.float32)
    train = TrainConfig(steps=150, batch_size=2, learning_rate=1e-2, ema_decay=0.0,
                        log_every=50)
    result = fit(lm.lm_loss(apply, lm_weight=0.0), params, data, config=train,
                 key=jax.random.key(0), progress=False)
    assert result.history["loss"][-1] < 0.05 * result.history["loss"][0]
    prompts = lm.left_pad([tok.encode(t.rsplit(": ", 1)[0] + ": ", bos=True) for t in texts])
    out = lm.generate(apply, result.params, prompts, max_new_tokens=4)
    assert [tok.decode(o) for o in np.asarray(out)] == ["417", "902"]


def test_checkpoint_round_trip(model, tmp_path):
    apply, params = model
    lm.save_lm(tmp_path / "ckpt", apply.config, params)
    apply2, params2 = lm.load_lm(tmp_path / "ckpt")
    assert apply2.config == apply.config
    assert_tree_allclose(nnx.to_pure_dict(params2), nnx.to_pure_dict(params))
    tokens = jnp.asarray([[1, 5, 6]])
    assert_tree_allclose(apply2(params2, tokens)[0], apply(params, tokens)[0])
    with pytest.raises(FileNotFoundError):
        lm.load_lm(tmp_path / "missing")


def test_training_set_marks_answers_and_splits_vocabularies():
    data = lm.training_set(64, seed=0, max_length=96)
    tok = lm.ByteTokenizer()
    assert data["tokens"].shape == (64, 96) and data["answer"].shape == (64, 96)
    for tokens, answer in zip(data["tokens"][:8], data["answer"][:8], strict=True):
        text = tok.decode(tokens[answer == 0])
        marked = tokens[answer == 1]
        assert marked[-1] == tok.eos_id and text.endswith(": ")
    train, test = lm.QACorpus("train"), lm.QACorpus("test")
    assert not set(train._keys()) & set(test._keys())
    assert not set(train._values()) & set(test._values())
    assert not set(train._words()) & set(test._words())
    ex = test.single(5, np.random.default_rng(0))
    assert len(ex.documents) == 5 and len(ex.relevant) == 1
    key = ex.question.split("Q: ")[1].split("?")[0]
    holders = [i for i, d in enumerate(ex.documents) if f"{key}: " in d]
    assert holders == list(ex.relevant) and f"{key}: {ex.answer}." in ex.documents[holders[0]]
    assert dataclasses.is_dataclass(ex)


def test_token_shift_is_the_causal_convolution():
    """x'_t = x_t + Σ_k W_k x_{t-k}, with zeros before the start and on (left) pads."""
    dim, width, length = 4, 3, 7
    shift = lm.TokenShift(dim, width, rngs=nnx.Rngs(1))
    x = jax.random.normal(jax.random.key(0), (2, length, dim))
    valid = jnp.asarray([[True] * length, [False, False] + [True] * (length - 2)])
    y, history = shift(x, valid, jnp.zeros((2, width, dim)))
    kernel = np.asarray(shift.mix.kernel[...]).reshape(width, dim, dim)  # W_k^T blocks
    masked = np.where(np.asarray(valid)[..., None], np.asarray(x), 0.0)
    expected = np.asarray(x).copy()
    for t in range(length):
        for k in range(1, width + 1):
            if t - k >= 0:
                expected[:, t] += masked[:, t - k] @ kernel[k - 1]
    assert_tree_allclose(y, expected, rtol=1e-5, atol=1e-5)
    assert_tree_allclose(history, masked[:, -width:])
    # A chunk of pads only leaves the history untouched.
    _, same = shift(x[:, :1], jnp.zeros((2, 1), bool), history)
    assert_tree_allclose(same, history)


def test_train_or_load_trains_once_under_parallel_callers(tmp_path, monkeypatch):
    """Parallel experiments (``--jobs``) share one training run: the first trains, the others
    wait on the lock and load what it saved; nothing under the final name is incomplete."""
    import threading

    import diffusionlab.lm.train as lm_train

    calls = []
    real = lm_train.train_lm

    def counted(config, **kwargs):
        calls.append(config)
        return real(config, **kwargs)

    monkeypatch.setattr(lm_train, "train_lm", counted)
    config = lm.LMTrainConfig.quick()
    results = [None, None]

    def one(i):
        results[i] = lm.train_or_load(config, tmp_path, progress=False)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert_tree_allclose(results[0][1], results[1][1], rtol=0, atol=0)  # one file, read twice
    assert not list(tmp_path.glob("*.partial"))
    again = lm.train_or_load(config, tmp_path, progress=False)
    assert len(calls) == 1
    assert_tree_allclose(again[1], results[0][1], rtol=0, atol=0)
