"""Shared draws: the sphere and the multivariate Cauchy, checked against their laws."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from asserts import assert_tree_allclose, assert_z

from diffusionlab.draws import multivariate_cauchy, uniform_on_sphere

KEY = jax.random.key(0)


def test_sphere_points_have_the_radius_per_point():
    radius = jnp.linspace(0.5, 4.0, 500)[:, None]
    x = uniform_on_sphere(KEY, 500, 4, radius=radius)
    assert x.shape == (500, 4)
    assert_tree_allclose(jnp.linalg.norm(x, axis=1), radius[:, 0], rtol=1e-6)


def test_sphere_coordinate_is_uniform_in_three_dimensions():
    # Archimedes: one coordinate of a uniform point on S² is uniform on [-1, 1].
    x = np.asarray(uniform_on_sphere(KEY, 20_000, 3))
    assert scipy.stats.kstest(x[:, 0], scipy.stats.uniform(-1, 2).cdf).pvalue > 1e-3
    assert_z(x.mean(0), x.std(0) / np.sqrt(len(x)), np.zeros(3))


def test_cauchy_in_one_dimension_is_the_standard_cauchy():
    z = np.asarray(multivariate_cauchy(KEY, 20_000, 1))[:, 0]
    assert scipy.stats.kstest(z, scipy.stats.cauchy().cdf).pvalue > 1e-3


@pytest.mark.parametrize("dim", [2, 5])
def test_cauchy_radius_law_and_scale(dim):
    # ‖z‖²/d ~ F(d, 1) for z = g/|s|; the scale multiplies every draw.
    z = np.asarray(multivariate_cauchy(KEY, 20_000, dim, scale=3.0), np.float64) / 3.0
    assert scipy.stats.kstest(np.sum(z * z, 1) / dim, scipy.stats.f(dim, 1).cdf).pvalue > 1e-3
    # The direction is uniform: the sign pattern of each coordinate is a fair coin.
    positive = (z > 0).mean(0)
    assert_z(positive, 0.5 / np.sqrt(len(z)), np.full(dim, 0.5))


def test_dtype_and_empty_draws():
    assert uniform_on_sphere(KEY, 0, 2).shape == (0, 2)
    assert multivariate_cauchy(KEY, 3, 2, dtype=jnp.bfloat16).dtype == jnp.bfloat16


@pytest.mark.parametrize("draw", [uniform_on_sphere, multivariate_cauchy])
@pytest.mark.parametrize("num, dim", [(-1, 2), (3, 0)])
def test_bad_shapes_raise(draw, num, dim):
    with pytest.raises(ValueError, match="dim >= 1"):
        draw(KEY, num, dim)
