"""metrics: zero on identical sets, positive and ordered on shifted ones, closed forms,
degenerate and bad inputs, and a feature network for FD-digits that is the same everywhere."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffusionlab import data, fd_digits, metrics
from tests.asserts import assert_tree_allclose

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
    # Zero by construction (the same sums on both sides), but the sums pass through float32
    # matmuls and reductions whose order is the backend's business: allow rounding at the
    # float32 level of these unit-scale data.
    for name, value in _all(X, X).items():
        assert 0.0 <= value <= 1e-6, (name, value)


def test_shift_is_detected_and_grows():
    same, small, large = _all(X, Y), _all(X, Y + 0.3), _all(X, Y + 1.0)
    for name in same:
        assert same[name] < small[name] < large[name], name
    # Two independent samples of one law are much closer than a 0.3 shift.
    assert same["sw2"] < 0.3 * small["sw2"]


def test_sliced_w2_of_a_translation_is_the_mean_projected_shift():
    """For y = x + s, every projection is shifted by θ·s, so SW2² = E(θ·s)² = |s|²/D.

    With 4000 projections the Monte Carlo error of SW2 is about 0.6% (one sd): rtol 0.02
    is 3.5 of them."""
    shift = jnp.array([[0.6, -0.8]])
    value = metrics.sliced_wasserstein(X, X + shift, key=KEY, num_projections=4000)
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
    # A set against itself: 0 up to the eigensolvers' float64 rounding, ~F·eps·Tr Σ.
    assert 0.0 <= metrics.frechet_distance(a, a) <= 1e-9 * np.trace(np.cov(a, rowvar=False))


def test_fd_digits_orders_real_noise_and_identity():
    train, _ = data.digits("train")
    test, _ = data.digits("test")
    noise = np.random.default_rng(0).uniform(-1, 1, test.shape).astype(np.float32)
    fd_same = metrics.fd_digits(test, test)
    fd_real = metrics.fd_digits(train, test)
    fd_noise = metrics.fd_digits(test, noise)
    # The identity holds up to the float64 eigensolvers' rounding, ~F·eps·Tr Σ with F = 64
    # (about 1e-11 here); 1e-9 · Tr Σ leaves room for other LAPACKs.
    trace = np.trace(np.cov(fd_digits.digit_features(test), rowvar=False))
    assert 0.0 <= fd_same <= 1e-9 * trace, (fd_same, trace)
    assert fd_real > 1e-3 * trace and fd_noise > 20 * fd_real
    assert fd_digits.classifier_accuracy("test") > 0.97


@pytest.mark.parametrize("bad, error, match", [
    (np.full((4, 8, 8, 1), np.nan, np.float32), ValueError, "images_b must be finite"),
    (np.zeros((4, 8, 8, 1), np.int32), TypeError, "images_b must hold real floats"),
    (np.zeros((4, 7, 8, 1), np.float32), ValueError, r"images_b must have shape \(N, 8, 8, 1\)"),
    (np.zeros((1, 64), np.float32), ValueError, "images_b must have shape .* N ≥ 2"),
    (np.zeros((4, 8, 8), np.float32).tolist(), TypeError, "images_b must be a JAX or NumPy"),
    (np.full((4, 64), 1e38, np.float32), ValueError, "images_b gives non-finite"),
])
def test_fd_digits_bad_images_raise_naming_the_argument(bad, error, match):
    test, _ = data.digits("test")
    with pytest.raises(error, match=match):
        metrics.fd_digits(test[:10], bad)


# The feature network every machine must train (see fd_digits.feature_checksum). If this
# changes, FD-digits values are no longer comparable with those already recorded.
FEATURE_CHECKSUM = "v2-144fd1d22b81"


@pytest.mark.slow
def test_fd_digits_network_is_reproducible(tmp_path, monkeypatch):
    """Two trainings in two empty caches give the same float32 network and checksum.

    The parameters are compared to 1e-6 of each tensor's largest entry (float64 training
    rounded to float32: in practice they agree bit for bit), the checksums exactly.
    """
    trained = []
    for folder in ("first", "second"):
        # The cache is keyed by its path, so a new folder means a new training.
        monkeypatch.setenv("DIFFUSIONLAB_CACHE", str(tmp_path / folder))
        params = fd_digits.classifier_params()
        assert (tmp_path / folder).is_dir()
        trained.append((jax.tree.map(np.asarray, params), fd_digits.feature_checksum()))
    (first, checksum_first), (second, checksum_second) = trained
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(second), strict=True):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 * np.max(np.abs(a)))
    assert checksum_first == checksum_second == FEATURE_CHECKSUM


SAMPLE_METRICS = [metrics.mmd, metrics.energy_distance,
                  lambda x, y: metrics.sliced_wasserstein(x, y, key=KEY)]


@pytest.mark.parametrize("fn", SAMPLE_METRICS)
def test_shape_mismatch_raises(fn):
    with pytest.raises(ValueError, match="same D"):
        fn(X, jnp.zeros((10, 3)))


@pytest.mark.parametrize("fn", SAMPLE_METRICS)
@pytest.mark.parametrize("bad, error, match", [
    (np.zeros((0, 2)), ValueError, r"x must have shape \(N, D\) with N ≥ 2"),
    (np.zeros((1, 2)), ValueError, r"x must have shape \(N, D\) with N ≥ 2"),
    (np.zeros((5, 0)), ValueError, "D ≥ 1"),
    (np.zeros(5), ValueError, r"x must have shape \(N, D\)"),
    (np.array([[0.0, np.nan], [1.0, 2.0]]), ValueError, "x must be finite"),
    (np.array([[0.0, np.inf], [1.0, 2.0]]), ValueError, "x must be finite"),
    (np.ones((5, 2), np.complex64), TypeError, "x must hold real"),
    (np.array([["a", "b"], ["c", "d"]]), TypeError, "x must hold real"),
    (np.ones((5, 2), bool), TypeError, "x must hold real"),
    (None, TypeError, "x must be a JAX or NumPy array"),
    ([[0.0, 1.0], [1.0, 2.0]], TypeError, "x must be a JAX or NumPy array"),
])
def test_bad_samples_raise(fn, bad, error, match):
    with pytest.raises(error, match=match):
        fn(bad, X)


@pytest.mark.parametrize("bandwidths, error", [
    (0.0, ValueError), (-1.0, ValueError), ([1.0, np.inf], ValueError), ([], ValueError),
    (np.ones((2, 2)), ValueError), ("wide", TypeError),
])
def test_mmd_bad_bandwidths_raise(bandwidths, error):
    with pytest.raises(error, match="bandwidths"):
        metrics.mmd(X, Y, bandwidths=bandwidths)


@pytest.mark.parametrize("num_projections, error", [(0, ValueError), (-3, ValueError),
                                                     (2.5, TypeError), (True, TypeError),
                                                     (10**12, ValueError), (2**31 - 2, ValueError)])
def test_sliced_w2_bad_num_projections_raise(num_projections, error):
    with pytest.raises(error, match="num_projections"):
        metrics.sliced_wasserstein(X, Y, key=KEY, num_projections=num_projections)


# Bernoulli samples as 0/1 integers (boolean arrays are refused: a mask is not data).
BERNOULLI_A = jax.random.bernoulli(jax.random.key(5), 0.3, (400, 1)).astype(jnp.int32)
BERNOULLI_B = jax.random.bernoulli(jax.random.key(6), 0.3, (300, 1)).astype(jnp.int32)


@pytest.mark.parametrize("x, y, equal", [
    (BERNOULLI_A, BERNOULLI_A, True),  # mostly tied: the median pairwise distance is 0
    (BERNOULLI_A, BERNOULLI_B, False),
    (jnp.zeros((50, 3)), jnp.zeros((40, 3)), True),  # every point the same
])
def test_tied_samples_give_finite_values(x, y, equal):
    values = _all(x, y)
    for name, value in values.items():
        assert np.isfinite(value) and value >= 0.0, (name, value)
        if equal:
            # Equal empirical laws: 0 up to float32 rounding of unit-scale sums.
            assert value <= 1e-6, (name, value)


def test_two_bernoulli_laws_are_told_apart():
    rare = jax.random.bernoulli(jax.random.key(7), 0.05, (400, 1)).astype(jnp.int32)
    same, different = _all(BERNOULLI_A, BERNOULLI_B), _all(BERNOULLI_A, rare)
    for name in same:
        assert 0.0 <= same[name] < different[name], name


def test_constant_sets_closed_forms():
    """Point masses at 0 and at (1, 1, 1): energy 2√3, SW2 √(E(θ·1)²) = 1, MMD 2·Σ(1 - e^{-3/2h²})."""
    zeros, ones = jnp.zeros((60, 3)), jnp.ones((40, 3))
    np.testing.assert_allclose(float(metrics.energy_distance(zeros, ones)), 2 * np.sqrt(3), rtol=1e-5)
    sw2 = metrics.sliced_wasserstein(zeros, ones, key=KEY, num_projections=20000)
    np.testing.assert_allclose(float(sw2), 1.0, rtol=0.02)
    # The positive pairwise distances are all √3, so the widths are √3 · (¼, ½, 1, 2, 4).
    h = np.sqrt(3) * np.array([0.25, 0.5, 1.0, 2.0, 4.0])
    np.testing.assert_allclose(float(metrics.mmd(zeros, ones)), 2 * np.sum(1 - np.exp(-3 / (2 * h**2))),
                               rtol=1e-5)


def test_translation_far_from_the_origin_changes_nothing():
    """The metrics are translation invariant; data far from 0 must not cancel catastrophically."""
    x, y = X[:500], Y[:500] + 0.3
    near, far = _all(x, y), _all(x + 1e4, y + 1e4)
    for name in near:
        np.testing.assert_allclose(far[name], near[name], rtol=0.01, err_msg=name)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16, jnp.int32])
def test_low_precision_inputs_are_computed_in_float32(dtype):
    x, y = (jnp.round(X[:300] * 4) / 4).astype(dtype), (jnp.round(Y[:300] * 4 + 1) / 4).astype(dtype)
    reference = _all(x.astype(jnp.float32), y.astype(jnp.float32))
    for fn in (metrics.mmd, metrics.energy_distance):
        assert fn(x, y).dtype == jnp.float32
    # The same float32 computation on the same (exactly converted) values; a float16
    # computation would be off by ~1e-3.
    assert_tree_allclose(_all(x, y), reference)


def test_metrics_jit():
    x, y = X[:300], Y[:300]
    eager = _all(x, y)
    jitted = {"mmd": jax.jit(metrics.mmd), "energy": jax.jit(metrics.energy_distance)}
    for name, fn in jitted.items():
        # Other fusion, other rounding: float32 sums of cancelling terms.
        np.testing.assert_allclose(float(fn(x, y)), eager[name], rtol=1e-3, err_msg=name)


@pytest.mark.parametrize("a, b, error, match", [
    (np.zeros((1, 3)), np.zeros((5, 3)), ValueError, "features_a must have shape"),
    (np.zeros((5, 0)), np.zeros((5, 0)), ValueError, "F ≥ 1"),
    (np.zeros((5, 3)), np.zeros((5, 2)), ValueError, "same F"),
    (np.full((5, 3), np.nan), np.zeros((5, 3)), ValueError, "features_a must be finite"),
    (np.zeros((5, 3)), np.ones((5, 3), complex), TypeError, "features_b must hold real"),
    (np.zeros((5, 3), bool), np.zeros((5, 3)), TypeError, "features_a must hold real"),
    (None, np.zeros((5, 3)), TypeError, "features_a must be a JAX or NumPy array"),
    (np.zeros((5, 3)), [[0.0, 1.0], [2.0]], TypeError, "features_b must be an"),
])
def test_frechet_distance_bad_inputs_raise(a, b, error, match):
    with pytest.raises(error, match=match):
        metrics.frechet_distance(a, b)


def test_frechet_distance_takes_host_lists_and_integers():
    a = [[0, 1], [1, 0], [2, 3], [5, 1]]
    b = np.array([[1.0, 1.0], [0.0, 2.0], [3.0, 1.0]])
    expected = metrics.frechet_distance(np.asarray(a, np.float64), b)
    assert metrics.frechet_distance(a, b.tolist()) == expected
    assert metrics.frechet_distance(np.asarray(a, np.int64), b) == expected


def test_sliced_w2_bad_key_raises():
    for key in (None, 0, np.zeros(2, np.float32)):
        with pytest.raises(TypeError, match="key must be a JAX PRNG key"):
            metrics.sliced_wasserstein(X, Y, key=key)


def test_frechet_distance_degenerate_features():
    """Constant features: zero covariance, so FD is the squared mean gap."""
    a, b = np.zeros((10, 4)), np.ones((7, 4))
    np.testing.assert_allclose(metrics.frechet_distance(a, b), 4.0, rtol=1e-12)
    # All-zero covariances; the eigensolvers are still allowed their rounding.
    assert 0.0 <= metrics.frechet_distance(a, a) <= 1e-12


def test_quality_dispatches_to_the_domain_metric():
    """toy: sliced W2 at the key (a translation by s gives |s|/√D); digits: FD-digits."""
    shift = jnp.array([[0.6, -0.8]])
    value = metrics.quality(X, X + shift, domain="toy", key=KEY)
    assert value == float(metrics.sliced_wasserstein(X, X + shift, key=KEY))
    np.testing.assert_allclose(value, np.sqrt(1.0 / 2), rtol=0.1)  # 256 projections: ~2% s.e.
    train, test = data.digits("train")[0], data.digits("test")[0]
    assert metrics.quality(train, test, domain="digits") == metrics.fd_digits(train, test)
    assert [metrics.quality_metric(d) for d in ("digits", "toy")] == ["FD-digits", "sliced W2"]


def test_quality_of_digits_clips_samples_and_ignores_layout():
    """Pixels beyond [-1, 1] count as the range's ends; (N, 64) and (N, 8, 8, 1) agree."""
    train, test = data.digits("train")[0], data.digits("test")[0]
    overshoot = 3.0 * test  # most pixels leave [-1, 1]
    expected = metrics.fd_digits(np.clip(overshoot, -1, 1), train)
    assert metrics.quality(overshoot, train, domain="digits") == expected
    assert metrics.quality(overshoot.reshape(len(test), 64), train.reshape(len(train), 64),
                           domain="digits") == expected


@pytest.mark.parametrize("kwargs, error, match", [
    ({"domain": "images"}, ValueError, "domain must be one of"),
    ({"domain": "toy"}, TypeError, "key must be a JAX PRNG key"),
])
def test_quality_bad_arguments_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        metrics.quality(X, Y, **kwargs)
