"""The method of characteristics: f = -(∂Φ/∂x)^{-1} ∂_tΦ and the density carried along the
trajectories reproduce the closed forms of gravity, the isotropic CDF family and straight
paths; general linear paths; bad input."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffusionlab.odes import (
    CDF_FAMILY,
    GaussianCDF,
    characteristics,
    characteristics_velocity,
    flows,
    gravity,
    isotropic,
)

KEY = jax.random.key(3)
TOL = 1e-10  # float64 autodiff against closed forms: rounding only


def _points(d, b=5, key=KEY):
    k1, k2, k3 = jax.random.split(key, 3)
    x0 = jax.random.normal(k1, (b, d), jnp.float64)
    x = x0 + jax.random.normal(k2, (b, d), jnp.float64)
    t = jax.random.uniform(k3, (b,), jnp.float64, 0.2, 0.9)
    return x, t, x0


def _straight_label(x, t, x0):
    return (x - x0) / t + x0


def _sinh(t):
    return jnp.sinh(t)


@pytest.mark.parametrize("d", [1, 3])
def test_straight_lines_give_the_flow_matching_target(d):
    with jax.enable_x64(True):
        x0, x1 = _points(d)[2], jax.random.normal(jax.random.key(4), (5, d), jnp.float64)
        t = jnp.linspace(0.2, 0.9, 5)
        x_t = flows.interpolate(x0, x1, t)
        v = characteristics_velocity(_straight_label, x_t, t, x0=x0)
        # The rectified-flow / CFM target x1 - x0 = (x_t - x0)/t.
        np.testing.assert_allclose(v, x1 - x0, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("d", [1, 3])
def test_rays_give_gravity_and_the_cdf_family(d):
    with jax.enable_x64(True):
        x, t, x0 = _points(d)
        phi = characteristics.rays(lambda s: s, T=40.0)
        v = characteristics_velocity(phi, x, t, x0=x0)
        # Gravity's conditional target z = (x_t - x0)/t at x_t = x0 + t z.
        x_t, z = gravity.conditional_target(x0, t, key=KEY)
        np.testing.assert_allclose(characteristics_velocity(phi, x_t, t, x0=x0), z, rtol=1e-9,
                                   atol=1e-9)
        for path in CDF_FAMILY:
            np.testing.assert_allclose(v, isotropic.conditional_velocity(path, x, t, x0),
                                       rtol=TOL, atol=TOL)
        # A Gaussian with a general σ_t: rays with scale σ, velocity σ̇/σ (x - x0).
        path = GaussianCDF(sigma=_sinh)
        v_sigma = characteristics_velocity(characteristics.rays(_sinh, 2.0), x, t, x0=x0)
        np.testing.assert_allclose(v_sigma, isotropic.conditional_velocity(path, x, t, x0),
                                   rtol=TOL, atol=TOL)
        np.testing.assert_allclose(v_sigma, (x - x0) / jnp.tanh(t)[:, None], rtol=TOL)


def test_a_rotating_path_matches_the_forward_derivative():
    # x_t = μ_t + σ_t R(θ t) x1: a non-diagonal Jacobian. The velocity at x_t is ∂_tΨ at
    # fixed x1, computed here by a JVP of the forward map: an independent route.
    with jax.enable_x64(True):
        def rotation(t):
            c, s = jnp.cos(2.0 * t), jnp.sin(2.0 * t)
            return jnp.array([[c, -s], [s, c]])

        def forward(x1, t, x0):
            return (1 - t) * x0 + (t + t * t) / 2 * rotation(t) @ x1

        def label(x, t, x0):
            return rotation(t).T @ ((x - (1 - t) * x0) / ((t + t * t) / 2))

        x1, t, x0 = _points(2)
        x_t = jax.vmap(forward)(x1, t, x0)
        want = jax.vmap(lambda a, s, c: jax.jvp(lambda u: forward(a, u, c), (s,), (1.0,))[1])(
            x1, t, x0)
        np.testing.assert_allclose(characteristics_velocity(label, x_t, t, x0=x0), want,
                                   rtol=TOL, atol=TOL)


def test_general_linear_paths():
    with jax.enable_x64(True):
        def mean(x0, t):
            return jnp.cos(0.5 * math.pi * t) * x0

        def sigma(t):
            return jnp.sin(0.5 * math.pi * t)

        path = characteristics.LinearPath(mean, sigma)
        x, t, x0 = _points(3)
        v = path.velocity(x, t, x0)
        # The formula against the characteristics of its label map.
        np.testing.assert_allclose(v, characteristics_velocity(path.label, x, t, x0=x0),
                                   rtol=TOL, atol=TOL)
        # Closed form: μ̇ + σ̇/σ (x - μ), with μ̇ = -π/2 sin x0, σ̇/σ = π/2 cot.
        a = 0.5 * math.pi * t[:, None]
        want = -0.5 * math.pi * jnp.sin(a) * x0 + 0.5 * math.pi / jnp.tan(a) * (
            x - jnp.cos(a) * x0)
        np.testing.assert_allclose(v, want, rtol=TOL, atol=TOL)
        # Divergence d σ̇/σ, and the autodiff trace of the characteristics velocity.
        _, div = characteristics.characteristics_divergence(path.label, x, t, x0=x0)
        np.testing.assert_allclose(div, path.divergence(t, 3), rtol=TOL)
        np.testing.assert_allclose(path.divergence(t, 3), 3 * 0.5 * math.pi / jnp.tan(a[:, 0]),
                                   rtol=TOL)
        # The straight default is CFM: density N((1 - t) x0, t² I).
        straight = characteristics.LinearPath()
        got = straight.log_density(x, t, x0, log_prior=flows.standard_normal_log_density)
        want = jax.scipy.stats.norm.logpdf(x, (1 - t[:, None]) * x0, t[:, None]).sum(1)
        np.testing.assert_allclose(got, want, rtol=TOL)
        np.testing.assert_allclose(got, flows.conditional_log_density(
            x, t, x0, log_prior=flows.standard_normal_log_density), rtol=TOL)
        x_t, x1 = straight.sample(x0, t, key=KEY)
        np.testing.assert_allclose(straight.velocity(x_t, t, x0), x1 - x0, rtol=1e-9, atol=1e-9)


def test_density_carried_along_the_characteristics():
    # p_t(x|x0) = p_T(Φ_t(x|x0)) exp ∫_t^T ∇·f: against the closed forms of gravity (rays,
    # Cauchy prior at T = 40, integrated in log t) and the straight path with a normal prior.
    # Solver tolerance 1e-9; agreement to 1e-6.
    with jax.enable_x64(True):
        d, t = 2, 0.3
        x, _, x0 = _points(d, b=4)
        T = 40.0
        got = characteristics.characteristics_log_density(
            characteristics.rays(lambda s: s, T), x, t, T, x0=x0,
            log_prior=lambda x_T: gravity.conditional_log_density(x_T, T, x0),
            rtol=1e-9, atol=1e-9, time="log")
        np.testing.assert_allclose(got.log_prob, gravity.conditional_log_density(x, t, x0),
                                   atol=1e-6)
        np.testing.assert_allclose(got.x_T, x0 + T / t * (x - x0), rtol=1e-12)
        got = characteristics.characteristics_log_density(
            _straight_label, x, t, 1.0, x0=x0, log_prior=flows.standard_normal_log_density,
            rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(got.log_prob, flows.conditional_log_density(
            x, t, x0, log_prior=flows.standard_normal_log_density), atol=1e-6)


def test_gaussian_with_a_general_sigma_is_divergence_free():
    # G = (φ, φ σ̇/σ (x - x0)) with ∂_tψ by autodiff: ∇_(t,x)·G = 0 for σ_t = sinh t.
    with jax.enable_x64(True):
        path = GaussianCDF(sigma=_sinh)
        x, t, x0 = _points(3)

        def div(xb, tb, cb):
            jac = jax.jacfwd(lambda z: isotropic.green_function(path, z[1:], z[0], cb))(
                jnp.concatenate([tb[None], xb]))
            return jnp.trace(jac)

        g = jax.vmap(lambda a, b, c: isotropic.green_function(path, a, b, c))(x, t, x0)
        assert np.max(np.abs(jax.vmap(div)(x, t, x0))) <= 1e-9 * np.max(np.abs(g))
        np.testing.assert_allclose(g[:, 1:] / g[:, :1], (x - x0) / jnp.tanh(t)[:, None],
                                   rtol=1e-9)
        # Its draws have radius law N(0, σ_t² I): E r² = d σ_t².
        r_sq = np.sum((np.asarray(isotropic.conditional_sample(path, x0[:1].repeat(2000, 0), 0.5,
                                                              key=KEY)) - np.asarray(x0[:1])) ** 2,
                      1)
        se = np.std(r_sq) / math.sqrt(r_sq.size)
        assert abs(r_sq.mean() - 3 * math.sinh(0.5) ** 2) <= 4 * se


def _constant_label(x, t):
    return jnp.zeros_like(x)


BAD = [
    ("phi", lambda: characteristics_velocity("phi", np.ones((2, 2), np.float32), 0.5), TypeError, "phi"),
    ("phi args", lambda: characteristics_velocity(_straight_label, np.ones((2, 2), np.float32), 0.5),
     TypeError, "phi must be callable as phi"),
    ("phi shape", lambda: characteristics_velocity(lambda x, t: x[:1], np.ones((2, 2), np.float32), 0.5),
     ValueError, "phi"),
    ("x0 shape", lambda: characteristics_velocity(_straight_label, np.ones((2, 2), np.float32), 0.5,
                                                  x0=np.ones((3, 2), np.float32)), ValueError, "x0"),
    ("t zero", lambda: characteristics_velocity(_straight_label, np.ones((2, 2), np.float32), 0.0,
                                                x0=np.ones((2, 2), np.float32)), ValueError, "t"),
    ("t shape", lambda: characteristics_velocity(_straight_label, np.ones((2, 2), np.float32),
                                                 np.ones(3, np.float32), x0=np.ones((2, 2), np.float32)),
     ValueError, "t must be"),
    ("x nan", lambda: characteristics_velocity(_straight_label, np.full((2, 2), np.nan, np.float32), 0.5,
                                               x0=np.ones((2, 2), np.float32)), ValueError, "x"),
    ("x int", lambda: characteristics_velocity(_straight_label, np.ones((2, 2), int), 0.5,
                                               x0=np.ones((2, 2), np.float32)), TypeError, "x"),
    ("singular", lambda: characteristics_velocity(_constant_label, np.ones((2, 2), np.float32), 0.5),
     ValueError, "Jacobian"),
    ("T", lambda: characteristics.characteristics_log_density(
        _straight_label, np.ones((2, 2), np.float32), 0.5, 0.4, x0=np.ones((2, 2), np.float32),
        log_prior=flows.standard_normal_log_density), ValueError, "t must be smaller than T"),
    ("log_prior", lambda: characteristics.characteristics_log_density(
        _straight_label, np.ones((2, 2), np.float32), 0.5, 1.0, x0=np.ones((2, 2), np.float32), log_prior=3),
     TypeError, "log_prior"),
    ("sigma ends", lambda: characteristics.LinearPath(sigma=lambda t: 2 * t), ValueError,
     "sigma"),
    ("mean ends", lambda: characteristics.LinearPath(mean=lambda x0, t: x0), ValueError, "mean"),
    ("mean type", lambda: characteristics.LinearPath(mean=1.0), TypeError, "mean"),
    ("gaussian sigma", lambda: GaussianCDF(sigma=2.0), TypeError, "sigma"),
    ("rays T", lambda: characteristics.rays(lambda s: s, T=-1.0), ValueError, "T"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_input_names_the_argument(case):
    _, call, error, match = case
    with pytest.raises(error, match=match):
        call()


def test_batches_and_empty_inputs():
    x = np.ones((0, 2), np.float32)
    assert characteristics_velocity(_straight_label, x, 0.5, x0=x).shape == (0, 2)
    v = characteristics_velocity(_straight_label, np.ones((2, 3, 2), np.float32), 0.5,
                                 x0=np.zeros((2, 3, 2), np.float32))
    assert v.shape == (2, 3, 2) and v.dtype == jnp.float32
    np.testing.assert_allclose(v, 2.0, rtol=1e-6)
    v16 = characteristics_velocity(functools.partial(_straight_label),
                                   np.ones((2, 2), np.float16), 0.5,
                                   x0=np.zeros((2, 2), np.float16))
    assert v16.dtype == jnp.float16
    np.testing.assert_allclose(np.asarray(v16, np.float32), 2.0, rtol=1e-3)


def test_gaussian_with_a_general_sigma_marginal_is_the_probability_flow():
    # f_t = -σ̇ σ ∇ log p_t for the empirical mixture p_t = mean_i N(x_i, σ_t² I), σ = sinh.
    with jax.enable_x64(True):
        path = GaussianCDF(sigma=_sinh)
        x, _, data = _points(2, b=4)
        t = 0.6

        def log_p(z):
            zs = jnp.broadcast_to(z, data.shape)
            return jax.scipy.special.logsumexp(isotropic.conditional_log_density(path, zs, t,
                                                                                 data))

        score = jax.vmap(jax.grad(log_p))(x)
        want = -math.cosh(t) * math.sinh(t) * score
        np.testing.assert_allclose(isotropic.marginal_velocity(path, x, t, data), want,
                                   rtol=1e-9, atol=1e-12)
