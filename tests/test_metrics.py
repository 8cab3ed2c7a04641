"""metrics: zero on identical sets, positive and ordered on shifted ones, closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffusionlab import data, metrics

KEY = jax.random.key(0)
X = data.toy2d("two_moons", 1500, key=jax.random.key(1))
Y = data.toy2d("two_moons", 1500, key=jax.random.key(2))


def _all(x, y):
    return {
        "sw2": float(metrics.sliced_wasserstein(x, y, key=KEY)),
        "mmd": float(metrics.mmd(x, y)),
        "energy": float(metrics.energy_distance(x, y)),
    }


def test_zero_on_identical_sets():
    assert _all(X, X) == {"sw2": 0.0, "mmd": 0.0, "energy": 0.0}


def test_shift_is_detected_and_grows():
    same, small, large = _all(X, Y), _all(X, Y + 0.3), _all(X, Y + 1.0)
    for name in same:
        assert same[name] < small[name] < large[name], name
    # Two independent samples of one law are much closer than a 0.3 shift.
    assert same["sw2"] < 0.3 * small["sw2"]


def test_sliced_w2_of_a_translation_is_the_mean_projected_shift():
    """For y = x + s, every projection is shifted by θ·s, so SW2² = E(θ·s)² = |s|²/D."""
    shift = jnp.array([[0.6, -0.8]])
    value = metrics.sliced_wasserstein(X, X + shift, key=KEY, num_projections=20000)
    np.testing.assert_allclose(float(value), np.sqrt(1.0 / 2), rtol=0.02)


def test_sliced_w2_unequal_sizes_and_gaussian_scale():
    """SW2 between N(0,1) and N(0,4) in 1-D is |σ1-σ2| = 1."""
    a = jax.random.normal(jax.random.key(3), (20000, 1))
    b = 2 * jax.random.normal(jax.random.key(4), (15000, 1))
    np.testing.assert_allclose(float(metrics.sliced_wasserstein(a, b, key=KEY)), 1.0, atol=0.03)


def test_energy_distance_closed_form_1d():
    """Point masses at 0 and 1 vs at 0 and 3 (equal weights): 2·E|X-Y| - E|X-X'| - E|Y-Y'| = 2."""
    x = jnp.array([[0.0], [1.0]] * 50)
    y = jnp.array([[0.0], [3.0]] * 50)
    # E|X-Y| = (0+3+1+2)/4 = 1.5, E|X-X'| = 0.5, E|Y-Y'| = 1.5
    np.testing.assert_allclose(float(metrics.energy_distance(x, y)), 2 * 1.5 - 0.5 - 1.5, atol=1e-4)


def test_frechet_distance_of_gaussians():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200000, 3))
    b = rng.normal(size=(200000, 3)) * 2 + 1
    # |μ|² = 3, Tr(Σa + Σb - 2(ΣaΣb)^½) = 3·(1 + 4 - 4) = 3
    np.testing.assert_allclose(metrics.frechet_distance(a, b), 6.0, rtol=0.02)
    assert metrics.frechet_distance(a, a) == 0.0


def test_fd_digits_orders_real_noise_and_identity():
    train, _ = data.digits("train")
    test, _ = data.digits("test")
    noise = np.random.default_rng(0).uniform(-1, 1, test.shape).astype(np.float32)
    fd_same = metrics.fd_digits(test, test)
    fd_real = metrics.fd_digits(train, test)
    fd_noise = metrics.fd_digits(test, noise)
    assert fd_same == 0.0 and fd_real > 0 and fd_noise > 20 * fd_real


@pytest.mark.parametrize("fn", [metrics.mmd, metrics.energy_distance,
                                lambda x, y: metrics.sliced_wasserstein(x, y, key=KEY)])
def test_shape_mismatch_raises(fn):
    with pytest.raises(ValueError, match="same D"):
        fn(X, jnp.zeros((10, 3)))
