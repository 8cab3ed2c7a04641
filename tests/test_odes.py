"""Gravity, power-law fields and the isotropic CDF family: closed forms and identities."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from asserts import assert_compiles_once, assert_tree_allclose, assert_z

from diffusionlab.odes import CDF_FAMILY, gravity, isotropic, memorisation, powerlaw

KEY = jax.random.key(0)


def _points(d, n=37, b=9, key=KEY, dtype=jnp.float64):
    k1, k2, k3 = jax.random.split(key, 3)
    data = jax.random.normal(k1, (n, d), dtype)
    x = jax.random.normal(k2, (b, d), dtype) * 1.5
    t = jax.random.uniform(k3, (b,), dtype, 0.1, 2.0)
    return x, t, data


# ------------------------------------------------------------------------------- the field


@pytest.mark.parametrize("d", [1, 4])
def test_field_is_gradient_of_potential(d):
    with jax.enable_x64(True):
        x, t, data = _points(d)
        grad = jax.vmap(jax.grad(lambda xb, tb: gravity.potential(xb[None], tb[None], data)[0],
                                 argnums=(0, 1)))(x, t)
        f_x, f_t = gravity.field(x, t, data, block=8)  # 37 masses: 5 blocks with padding
        assert_tree_allclose((f_x, f_t), grad, rtol=1e-9, atol=1e-12)
        assert_tree_allclose(gravity.velocity(x, t, data, block=8), f_x / f_t[:, None],
                             rtol=1e-9, atol=1e-12)


def test_field_blocks_agree_in_float32():
    x, t, data = _points(3, n=300, dtype=jnp.float32)
    whole = gravity.field(x, t, data, block=1024)
    blocks = gravity.field(x, t, data, block=64)
    assert_tree_allclose(blocks, whole, rtol=2e-5, atol=1e-7)


@pytest.mark.parametrize("d", [2, 64])
def test_field_finite_at_the_data(d):
    _, _, data = _points(d, n=20, dtype=jnp.float32)
    for t in (1e-30, 1e-12, 1e-4):
        f_x, f_t = gravity.field(data[:4], t, data)
        v = gravity.velocity(data[:4] + 1e-3, t, data)
        assert np.all(np.isfinite(f_x)) and np.all(np.isfinite(f_t)) and np.all(np.isfinite(v))
        assert np.all(np.asarray(f_t) < 0)  # the field points down, towards the plane


def test_velocity_points_into_a_single_mass():
    # One mass: every field line is a straight ray into it, dx/dt = (x - x0)/t.
    x, t, data = _points(3, n=1, dtype=jnp.float32)
    assert_tree_allclose(gravity.velocity(x, t, data), (x - data) / t[:, None], rtol=1e-5)


def test_field_compiles_once():
    x, t, data = _points(2, n=50, dtype=jnp.float32)
    calls = [(x + i, t, data * (1 + i), 512) for i in range(3)]
    assert_compiles_once(gravity._gravity_sums, calls)


# ----------------------------------------------------------------------- divergence-freeness


@pytest.mark.parametrize("d", [1, 3])
def test_power_law_divergence(d):
    with jax.enable_x64(True):
        x, t, data = _points(d, b=5)
        for k in (d + 1.0, d - 0.5, d + 3.0):
            div = jax.vmap(functools.partial(powerlaw.divergence, x0=data[0], k=k))(x, t)
            r = jnp.sqrt(jnp.sum((x - data[:1]) ** 2, 1) + t * t)
            assert_tree_allclose(div, (d + 1 - k) * r ** (-k), rtol=1e-9, atol=1e-12)
            if k != d + 1:
                assert np.all(np.abs(div) > 1e-6)


@pytest.mark.parametrize("d", [2])
def test_gravity_green_function_is_the_conditional_and_divergence_free(d):
    # G = c_d (t, x - x0) / R^{d+1}: first component is p_t(x_t|x0), divergence zero.
    with jax.enable_x64(True):
        x, t, data = _points(d, b=6)
        dens = jnp.exp(gravity.conditional_log_density(x, t, jnp.broadcast_to(data[0], x.shape)))
        g = jax.vmap(lambda xb, tb: powerlaw.point_field(xb, tb, data[0], k=d + 1))(x, t)
        assert_tree_allclose(math.exp(gravity.log_normaliser(d)) * g[:, 0], dens, rtol=1e-10)
        div = jax.vmap(lambda xb, tb: powerlaw.divergence(xb, tb, data[0], k=d + 1))(x, t)
        assert np.max(np.abs(div)) < 1e-9


@pytest.mark.parametrize("path", CDF_FAMILY, ids=lambda p: p.name)
@pytest.mark.parametrize("d", [1, 3])
def test_cdf_family_divergence_free(path, d):
    with jax.enable_x64(True):
        x, t, data = _points(d, b=6)

        def div(xb, tb):
            jac = jax.jacfwd(lambda z: isotropic.green_function(path, z[1:], z[0], data[0]))(
                jnp.concatenate([tb[None], xb]))
            return jnp.trace(jac)

        g = jax.vmap(lambda xb, tb: isotropic.green_function(path, xb, tb, data[0]))(x, t)
        assert np.all(np.asarray(g[:, 0]) > 0)
        divergence = jax.vmap(div)(x, t)
        scale = jax.vmap(jax.jacfwd(lambda z: isotropic.green_function(
            path, z[1:], z[0], data[0])[0]))(jnp.concatenate([t[:, None], x], 1))
        assert np.all(np.abs(divergence) <= 1e-8 * (1 + np.abs(scale).max(1)))
        # The conditional velocity φ/ϕ (x - x0) is (x - x0)/t for the scale family.
        assert_tree_allclose(g[:, 1:] / g[:, :1], (x - data[:1]) / t[:, None], rtol=1e-8)


# ----------------------------------------------------------------------------- priors (KS)


def _beta_radius_cdf(d, scale):
    # r²/(r² + s²) ~ Beta(d/2, 1/2) for the prior (s = T) and for the Cauchy radius (s = t).
    def cdf(r):
        r_sq = np.square(np.asarray(r, np.float64))  # float64: no overflow for r ≤ 1e150
        return scipy.stats.beta.cdf(r_sq / (r_sq + scale**2), d / 2, 0.5)

    return cdf


@pytest.mark.parametrize("d", [1, 8])
def test_prior_forms_agree(d):
    T = 7.0
    radii = {m: np.linalg.norm(gravity.sample_prior(4000, d, T, key=jax.random.key(i),
                                                    method=m), axis=1)
             for i, m in enumerate(gravity.PRIOR_METHODS)}
    assert scipy.stats.ks_2samp(radii["direct"], radii["beta"]).pvalue > 1e-3
    assert scipy.stats.ks_2samp(radii["direct"], radii["ratio"]).pvalue > 1e-3
    for r in radii.values():
        assert np.all(np.isfinite(r))
        assert scipy.stats.kstest(r, _beta_radius_cdf(d, T)).pvalue > 1e-3
    # The density integrates to one and matches the samples' mean of a bounded function.
    grid = np.geomspace(1e-6, 400 * T, 20_001)
    pdf = np.asarray(gravity.prior_radial_density(jnp.asarray(grid), d, T), np.float64)
    mass = np.trapezoid(pdf, grid) + scipy.stats.beta.sf(grid[-1]**2 / (grid[-1]**2 + T**2),
                                                         d / 2, 0.5)
    assert abs(mass - 1) < 1e-3


def test_prior_directions_are_isotropic():
    x = np.asarray(gravity.sample_prior(4000, 3, 5.0, key=KEY, method="direct"))
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    # E[u] = 0 and E[u uᵀ] = I/3 with standard errors sqrt(1/(3n)).
    assert_z(u.mean(0), np.sqrt(1 / 3 / len(u)), np.zeros(3))


@pytest.mark.parametrize("d", [1, 16])
def test_conditional_sample_matches_the_radial_law(d):
    x0 = jnp.broadcast_to(jnp.arange(d, dtype=jnp.float32), (5000, d))
    t = 0.3
    x_t = gravity.conditional_sample(x0, t, key=KEY)
    r = np.linalg.norm(np.asarray(x_t - x0), axis=1)
    assert scipy.stats.kstest(r, _beta_radius_cdf(d, t)).pvalue > 1e-3
    assert scipy.stats.kstest(r, _beta_radius_cdf(d, 2 * t)).pvalue < 1e-6  # can fail


def test_pfgm_perturbation_has_the_cauchy_radius_marginally():
    d = 3
    x0 = jnp.zeros((5000, d))
    x, t = gravity.pfgm_perturb(x0, key=KEY)
    z = np.linalg.norm(np.asarray(x - x0), axis=1) / np.asarray(t)
    assert scipy.stats.kstest(z, _beta_radius_cdf(d, 1.0)).pvalue > 1e-3


def test_conditional_density_normalises_in_1d_and_2d():
    with jax.enable_x64(True):
        t = 0.7
        xs = jnp.linspace(-3000, 3000, 600_001)[:, None]
        dens = jnp.exp(gravity.conditional_log_density(xs, t, jnp.full_like(xs, 0.4)))
        assert abs(float(jnp.trapezoid(dens, xs[:, 0])) - 1) < 1e-3
        r = jnp.linspace(1e-9, 3000, 600_001)
        pts = jnp.stack([r, jnp.zeros_like(r)], 1)
        dens2 = jnp.exp(gravity.conditional_log_density(pts, t, jnp.zeros_like(pts)))
        assert abs(float(jnp.trapezoid(2 * jnp.pi * r * dens2, r)) - 1) < 1e-3


@pytest.mark.parametrize("path", CDF_FAMILY, ids=lambda p: p.name)
def test_cdf_family_psi_is_the_radius_cdf(path):
    d, t = 3, 0.5
    x0 = jnp.zeros((4000, d))
    r = np.linalg.norm(np.asarray(isotropic.conditional_sample(path, x0, t, key=KEY)), axis=1)
    cdf = lambda rr: np.asarray(path.psi(jnp.asarray(rr), t, d))  # noqa: E731
    assert scipy.stats.kstest(r, cdf).pvalue > 1e-3
    # log φ and ψ agree: ∂_r ψ = S_d r^{d-1} φ.
    rr = jnp.linspace(0.05, 3.0, 17)
    dpsi = jax.vmap(jax.grad(path.psi), in_axes=(0, None, None))(rr, t, d)
    assert_tree_allclose(jnp.exp(path.log_dpsi_dr(rr, t, d)), dpsi, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------- the posterior-mean identity


def test_velocity_is_the_posterior_mean_of_the_conditional_target():
    # F_x/F_t = E[(x_t - x0)/t | x_t] ⇔ the residual z - v(x_t) is orthogonal to every
    # function of x_t. The residual (E[x0|x_t] - x0)/t is bounded, so the z-test is sound.
    data = jnp.array([[0.0, 0.0], [1.0, 0.5], [-0.8, 1.2], [0.3, -1.0], [2.0, 2.0]])
    m, t = 100_000, 0.6
    k_idx, k_z = jax.random.split(KEY)
    x0 = data[jax.random.randint(k_idx, (m,), 0, data.shape[0])]
    x_t, z = gravity.conditional_target(x0, t, key=k_z)
    tests = jnp.stack([jnp.exp(-jnp.sum((x_t - c[None]) ** 2, 1)) for c in data[:4]], 1)

    def z_scores(v):
        prod = ((z - v)[:, :, None] * tests[:, None, :]).reshape(m, -1)
        return np.asarray(prod.mean(0) / (prod.std(0) / np.sqrt(m)))

    assert np.all(np.abs(z_scores(gravity.velocity(x_t, t, data))) < 4.5)
    # A wrong exponent gives a different field: the same test rejects it.
    assert np.max(np.abs(z_scores(powerlaw.velocity(x_t, t, data, k=1.0)))) > 10


def test_pfgm_target_is_the_normalised_field():
    x, t, data = _points(2, dtype=jnp.float32)
    f_x, f_t = gravity.field(x, t, data)
    f = jnp.concatenate([f_x, f_t[:, None]], 1)
    target = gravity.pfgm_target(x, t, data, gamma=0.0)
    assert_tree_allclose(target, math.sqrt(3) * f / jnp.linalg.norm(f, axis=1, keepdims=True),
                         rtol=1e-5, atol=1e-6)
    assert gravity.pfgm_loss(target, x, t, data, gamma=0.0).shape == (x.shape[0],)


# ------------------------------------------------------------------------------ bad input


def test_bad_inputs_raise():
    x, t, data = _points(2, dtype=jnp.float32)
    for bad_t in (0.0, -1.0, jnp.array([0.5] * 8 + [0.0])):
        with pytest.raises(ValueError, match="t must be > 0"):
            gravity.field(x, bad_t, data)
        with pytest.raises(ValueError, match="t must be > 0"):
            gravity.velocity(x, bad_t, data)
        with pytest.raises(ValueError, match="t must be > 0"):
            gravity.conditional_sample(x, bad_t, key=KEY)
    with pytest.raises(ValueError, match="dimension mismatch"):
        gravity.field(x, t, jnp.zeros((5, 3)))
    with pytest.raises(ValueError, match="dimension mismatch"):
        powerlaw.velocity(x, t, jnp.zeros((5, 3)), k=2.0)
    for bad_T in (0.0, -2.0):
        with pytest.raises(ValueError, match="T must be > 0"):
            gravity.sample_prior(10, 2, bad_T, key=KEY)
    with pytest.raises(ValueError, match="method"):
        gravity.sample_prior(10, 2, 1.0, key=KEY, method="inverse")


def test_chi_square_of_uniform_hits():
    data = jnp.eye(4) * 10
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 4, 4000)
    report = memorisation.hit_report(np.asarray(data)[idx] + 1e-3, data, tolerance=0.1)
    assert report.hit_fraction == 1.0 and report.counts.sum() == 4000
    assert report.p_value > 1e-3
    skewed = memorisation.hit_report(np.asarray(data)[np.minimum(idx, 2)], data, tolerance=0.1)
    assert skewed.p_value < 1e-6
