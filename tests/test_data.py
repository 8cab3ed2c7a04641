"""data: shapes, ranges, determinism, and the statistics each toy is built to have."""

import jax
import numpy as np
import pytest

from diffusionlab import data


@pytest.mark.parametrize("name", data.TOY2D_NAMES)
def test_toys_are_deterministic_unit_scale_2d(name):
    a = data.toy2d(name, 4000, key=jax.random.key(0))
    b = data.toy2d(name, 4000, key=jax.random.key(0))
    c = data.toy2d(name, 4000, key=jax.random.key(1))
    assert a.shape == (4000, 2) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert 0.6 < float(np.std(a)) < 1.3


def test_toy_structure():
    key = jax.random.key(0)
    g = np.asarray(data.toy2d("8gaussians", 8000, key=key))
    radius = np.linalg.norm(g, axis=1)
    assert abs(np.median(radius) - 1.4) < 0.02
    angle_bins = np.bincount(np.round(np.arctan2(g[:, 1], g[:, 0]) / (np.pi / 4)).astype(int) % 8)
    assert angle_bins.min() > 800  # 8 balanced modes (expected 1000 each)
    rings = np.linalg.norm(np.asarray(data.toy2d("rings", 6000, key=key)), axis=1)
    for r in (0.5, 1.0, 1.5):  # ring weights ∝ radius: 1/6, 1/3, 1/2
        frac = np.mean(np.abs(rings - r) < 0.2)
        assert abs(frac - r / 3) < 4 * np.sqrt(r / 3 * (1 - r / 3) / len(rings)), (r, frac)
    board = np.asarray(data.toy2d("checkerboard", 8000, key=key)) * 1.15
    cells = (np.floor(board[:, 0]) + np.floor(board[:, 1])) % 2
    assert np.all(cells == cells[0]), "all points on squares of one colour"


def test_unknown_toy_lists_valid_names():
    with pytest.raises(ValueError, match="two_moons"):
        data.toy2d("moons", 10, key=jax.random.key(0))
    with pytest.raises(ValueError, match="num"):
        data.toy2d("rings", 0, key=jax.random.key(0))


def test_atoms_weights():
    x = np.asarray(data.atoms1d(40000, key=jax.random.key(0)))[:, 0]
    for loc, w in data.ATOMS1D:
        frac = np.mean(np.isclose(x, loc))
        assert abs(frac - w) < 4 * np.sqrt(w * (1 - w) / len(x))


def test_digits_split_is_fixed_and_scaled():
    tr, ytr = data.digits("train")
    te, yte = data.digits("test")
    assert tr.shape == (1437, 8, 8, 1) and te.shape == (360, 8, 8, 1)
    assert tr.min() == -1.0 and tr.max() == 1.0
    assert set(np.unique(yte)) == set(range(10))
    flat = lambda a: {r.tobytes() for r in a.reshape(len(a), -1)}  # noqa: E731
    assert len(flat(tr) & flat(te)) < 5, "train and test are (almost) disjoint images"
    with pytest.raises(ValueError, match="split"):
        data.digits("valid")


def test_tokens_round_trip():
    tokens, labels = data.digit_tokens("test", levels=17)
    assert tokens.shape == (360, 64) and tokens.min() == 0 and tokens.max() == 16
    # 17 levels reproduce the original 0..16 grey levels exactly.
    np.testing.assert_array_equal(data.tokens_to_images(tokens, levels=17), data.digits("test")[0])
    coarse, _ = data.digit_tokens("test", levels=4)
    assert coarse.max() == 3
    with pytest.raises(ValueError, match="levels"):
        data.digit_tokens(levels=1)
    with pytest.raises(ValueError, match=r"tokens must hold integers in \[0, 3\]"):
        data.tokens_to_images(coarse + 3, levels=4)


def test_examples_by_name():
    """Digits: the fixed split, at most ``num``; a toy: ``num`` draws at the key."""
    train = data.examples("digits", "train")
    np.testing.assert_array_equal(train, data.digits("train")[0])
    assert data.examples("digits", "test", num=1000).shape == (360, 8, 8, 1)
    np.testing.assert_array_equal(data.examples("digits", "test", num=5), data.digits("test")[0][:5])
    key = jax.random.key(3)
    np.testing.assert_array_equal(data.examples("two_moons", "test", num=50, key=key),
                                  data.toy2d("two_moons", 50, key=key))
    assert [data.domain(n) for n in ("digits", "8gaussians")] == ["digits", "toy"]
    assert set(data.DATASET_NAMES) == {"digits", *data.TOY2D_NAMES}


@pytest.mark.parametrize("args, kwargs, error, match", [
    (("mnist", "train"), {}, ValueError, "name must be one of"),
    (("digits", "valid"), {}, ValueError, "split must be one of"),
    (("8gaussians", "train"), {"key": jax.random.key(0)}, ValueError, "num is required"),
    (("8gaussians", "train"), {"num": 10}, TypeError, "key must be a JAX PRNG key"),
    (("digits", "train"), {"num": 0}, ValueError, "num"),
])
def test_examples_bad_arguments_raise(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        data.examples(*args, **kwargs)
