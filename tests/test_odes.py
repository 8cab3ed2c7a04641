"""Gravity, power-law fields and the isotropic CDF family: closed forms and identities."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from asserts import assert_compiles_once, assert_tree_allclose, assert_z

from diffusionlab.odes import (
    CDF_FAMILY,
    VPSchedule,
    flows,
    gravity,
    isotropic,
    learned,
    memorisation,
    powerlaw,
    unaugmented,
    vp,
)

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
        with pytest.raises(ValueError, match="t must be a finite real number > 0"):
            gravity.field(x, bad_t, data)
        with pytest.raises(ValueError, match="t must be a finite real number > 0"):
            gravity.velocity(x, bad_t, data)
        with pytest.raises(ValueError, match="t must be a finite real number > 0"):
            gravity.conditional_sample(x, bad_t, key=KEY)
    with pytest.raises(ValueError, match="dimension mismatch"):
        gravity.field(x, t, jnp.zeros((5, 3)))
    with pytest.raises(ValueError, match="dimension mismatch"):
        powerlaw.velocity(x, t, jnp.zeros((5, 3)), k=2.0)
    for bad_T in (0.0, -2.0):
        with pytest.raises(ValueError, match="T must be a finite real number > 0"):
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


# ----------------------------------------------------------- numerics at the edges (float32)

# Two sources 1e-4 apart far from the origin, and a third far away: in float32,
# |x|² + |y|² - 2 x·y cannot tell the first two apart once t is small.
CLOSE_DATA = np.array([[3.0, -3.0], [3.0 + 1e-4, -3.0], [-3.0, 3.0]], np.float32)
CLOSE_QUERIES = np.array([[3.0 + 3e-5, -3.0 + 1e-5], [3.0 + 1e-4 - 2e-5, -3.0 - 1e-5],
                          [0.5, 0.5]], np.float32)


def _log_sech_sq(u):
    return np.log(4.0) - 2 * u - 2 * np.log1p(np.exp(-2 * u))


# name -> (velocity(x, t, data), float64 log-weight(r, t, diff, y) up to a per-row constant)
CLOSE_FIELDS = {
    "gravity": (gravity.velocity, lambda r, t, diff, y: -1.5 * np.log(r * r + t * t)),
    "powerlaw": (functools.partial(powerlaw.velocity, k=4.5),
                 lambda r, t, diff, y: -2.25 * np.log(r * r + t * t)),
    "tanh": (functools.partial(isotropic.marginal_velocity, CDF_FAMILY[0]),
             lambda r, t, diff, y: _log_sech_sq(r / t) - np.log(r)),
    "exp": (functools.partial(isotropic.marginal_velocity, CDF_FAMILY[1]),
            lambda r, t, diff, y: -r / t - np.log(r)),
    "gaussian": (functools.partial(isotropic.marginal_velocity, CDF_FAMILY[2]),
                 lambda r, t, diff, y: -r * r / (2 * t * t)),
    "straight": (lambda x, t, data: flows.marginal_velocity(
                     x, t, data, log_prior=flows.standard_normal_log_density),
                 lambda r, t, diff, y: -0.5 * np.sum((diff / t + y[None]) ** 2, axis=-1)),
}


def _reference_velocity(log_weight, x, t, data):
    # float64, direct differences: Σ w_i (x - y_i) / (t Σ w_i).
    x, data = np.asarray(x, np.float64), np.asarray(data, np.float64)
    diff = x[:, None, :] - data[None, :, :]
    log_w = log_weight(np.sqrt(np.sum(diff * diff, axis=-1)), t, diff, data)
    w = np.exp(log_w - log_w.max(axis=1, keepdims=True))
    return np.einsum("bn,bnd->bd", w, diff) / (t * w.sum(axis=1))[:, None]


@pytest.mark.parametrize("name", list(CLOSE_FIELDS))
def test_velocity_near_close_sources_matches_float64(name):
    # Each row's error is within 1e-4 of its size down to t = 1e-6 (the Gram-matrix distances
    # gave -50 instead of -1e-4 at t = 1e-6 for a query on one of the two close sources).
    velocity, log_weight = CLOSE_FIELDS[name]
    # Queries on a source (finite weights there) and, for the power laws, far from all three:
    # with weights like exp(-r/t) the far query's posterior is as ill-conditioned as r/t in
    # any precision, while R^{-k} weights depend on log R only.
    queries = CLOSE_QUERIES[:2]
    if name in ("gravity", "powerlaw", "straight"):
        queries = np.concatenate([CLOSE_DATA[:2], queries])
    if name in ("gravity", "powerlaw"):
        queries = np.concatenate([queries, CLOSE_QUERIES[2:]])
    for t in (1e-2, 1e-4, 1e-6):
        got = np.asarray(velocity(jnp.asarray(queries), t, jnp.asarray(CLOSE_DATA)), np.float64)
        want = _reference_velocity(log_weight, queries, t, CLOSE_DATA)
        scale = np.abs(want).max(axis=1, keepdims=True)
        assert np.all(np.abs(got - want) <= 1e-4 * scale + 1e-12), (t, got, want)


def test_velocity_on_a_source_of_a_close_pair():
    # The case that merged the pair: the query sits on the first source.
    x = jnp.asarray(CLOSE_DATA[:1])
    v = np.asarray(gravity.velocity(x, 1e-6, jnp.asarray(CLOSE_DATA)))
    want = _reference_velocity(CLOSE_FIELDS["gravity"][1], CLOSE_DATA[:1], 1e-6, CLOSE_DATA)
    assert_tree_allclose(v, want.astype(np.float32), rtol=1e-5, atol=0)
    assert abs(v[0, 0]) < 2e-4  # was -50


def _magnitude(f_x, f_t):
    f = np.concatenate([np.asarray(f_x, np.float64), np.asarray(f_t, np.float64)[:, None]], 1)
    return np.linalg.norm(f, axis=1)


BIG32 = float(np.finfo(np.float32).max)


@pytest.mark.parametrize("d", [1, 2, 3])
def test_point_mass_magnitude_is_exact_then_saturates_as_t_shrinks(d):
    # One mass at the origin, the query on it: |F| = t^{-d} / S_{d+1}(1) exactly until that
    # exceeds float32's range, then the largest float; never smaller as t decreases.
    mass = jnp.zeros((1, d))
    ts = np.geomspace(1.0, 1e-37, 75).astype(np.float32)
    f_x, f_t = gravity.field(jnp.zeros((ts.size, d)), jnp.asarray(ts), mass)
    got = _magnitude(f_x, f_t)
    exact = np.asarray(ts, np.float64) ** (-d) * math.exp(-gravity.log_sphere_area(d + 1))
    assert np.all(np.isfinite(np.asarray(f_t))) and np.all(np.asarray(f_t) < 0)
    assert np.all(np.asarray(f_x) == 0)
    representable = exact < 0.99 * BIG32
    np.testing.assert_allclose(got[representable], exact[representable], rtol=3e-5)
    assert np.all(got[~representable] >= 0.999 * BIG32)
    assert np.all(np.diff(got) >= -3e-5 * got[:-1])  # non-decreasing as t → 0
    assert (~representable).any() == (d > 1)  # d = 1 fits down to t = 1e-37
    with pytest.raises(ValueError, match="t must be ≥ 1.175e-38"):  # XLA flushes subnormals
        gravity.field(jnp.zeros((1, d)), 1e-42, mass)


@pytest.mark.parametrize("t", [1e-3, 1e-20])
def test_point_mass_magnitude_as_the_query_reaches_the_mass(t):
    # |F| = R^{-d}/S_{d+1}(1) with R² = r² + t² as r → 0, exact where representable, monotone.
    # (Below r ≈ 1e-19, r² underflows float32: such scales are out of range.)
    d = 2
    r = np.concatenate([np.geomspace(1.0, 1e-18, 37), [0.0]]).astype(np.float32)
    x = np.zeros((r.size, d), np.float32)
    x[:, 0] = r
    f_x, f_t = gravity.field(jnp.asarray(x), t, jnp.zeros((1, d)))
    got = _magnitude(f_x, f_t)
    r64 = np.asarray(r, np.float64)
    t64 = float(np.float32(t))
    exact = (r64**2 + t64**2) ** (-d / 2) * math.exp(-gravity.log_sphere_area(d + 1))
    representable = exact < 0.99 * BIG32
    np.testing.assert_allclose(got[representable], exact[representable], rtol=3e-5)
    assert np.all(got[~representable] >= 0.999 * BIG32)
    assert np.all(np.diff(got) >= -3e-5 * got[:-1])
    # The direction stays exact: F_x/F_t = r/t wherever F is not saturated.
    ratio = np.asarray(f_x[:, 0], np.float64) / np.asarray(f_t, np.float64)
    np.testing.assert_allclose(ratio[representable], (r64 / t64)[representable], rtol=1e-5)


def test_power_law_magnitude_saturates_instead_of_shrinking():
    # k = 6 in d = 2: |F| = R^{1-k} = t^{-5} overflows float32 at t ≈ 2e-8.
    mass = jnp.zeros((1, 2))
    ts = np.geomspace(1e-4, 1e-30, 27).astype(np.float32)
    f_x, f_t = powerlaw.field(jnp.zeros((ts.size, 2)), jnp.asarray(ts), mass, k=6.0)
    got = _magnitude(f_x, f_t)
    exact = np.asarray(ts, np.float64) ** -5.0
    representable = exact < 0.99 * BIG32
    np.testing.assert_allclose(got[representable], exact[representable], rtol=3e-5)
    assert np.all(got[~representable] >= 0.999 * BIG32) and np.all(np.diff(got) >= 0)


# ------------------------------------------------------------------------- half precision

HALF = [jnp.float16, jnp.bfloat16]
# Half-precision results are the float32 results rounded once: 2^-11 and 2^-8 relative.
HALF_RTOL = {jnp.float16: 2e-3, jnp.bfloat16: 1e-2}


def _half_cases():
    x, t, data = _points(2, n=7, b=5, dtype=jnp.float32)
    path = CDF_FAMILY[0]
    return {
        "gravity.field": (lambda x, t, d: gravity.field(x, t, d), (x, t, data)),
        "gravity.velocity": (gravity.velocity, (x, t, data)),
        "gravity.potential": (gravity.potential, (x, t, data)),
        "gravity.conditional_log_density": (gravity.conditional_log_density,
                                            (x, t, data[:5])),
        "gravity.pfgm_target": (gravity.pfgm_target, (x, t, data)),
        "gravity.prior_log_density": (lambda x, T: gravity.prior_log_density(x, T),
                                      (x, jnp.float32(3.0))),
        "powerlaw.field": (functools.partial(powerlaw.field, k=2.5), (x, t, data)),
        "powerlaw.velocity": (functools.partial(powerlaw.velocity, k=2.5), (x, t, data)),
        "powerlaw.point_field": (functools.partial(powerlaw.point_field, k=3.0),
                                 (x, t, data[:5])),
        "isotropic.marginal_velocity": (functools.partial(isotropic.marginal_velocity, path),
                                        (x, t, data)),
        "isotropic.conditional_log_density": (
            functools.partial(isotropic.conditional_log_density, path), (x, t, data[:5])),
        "flows.marginal_velocity": (functools.partial(
            flows.marginal_velocity, log_prior=flows.standard_normal_log_density),
            (x, t / jnp.max(t), data)),  # straight paths: t in (0, 1]
        "flows.standard_normal_log_density": (flows.standard_normal_log_density, (x,)),
    }


@pytest.mark.parametrize("dtype", HALF, ids=lambda d: jnp.dtype(d).name)
@pytest.mark.parametrize("name", list(_half_cases()))
def test_fields_in_half_precision_match_float32(name, dtype):
    fn, args = _half_cases()[name]
    half = tuple(jnp.asarray(a, dtype) for a in args)
    got = fn(*half)
    want = fn(*(a.astype(jnp.float32) for a in half))  # the same (rounded) inputs in float32
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert g.dtype == jnp.dtype(dtype)
        assert np.all(np.isfinite(np.asarray(g, np.float32)))
        np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(w),
                                   rtol=HALF_RTOL[dtype], atol=1e-3)


def test_half_precision_field_saturates_at_the_dtype_range():
    # Near a mass the float16 field saturates at 65504 instead of overflowing to inf.
    f_x, f_t = gravity.field(jnp.zeros((1, 2), jnp.float16), jnp.float16(1e-3),
                             jnp.zeros((1, 2), jnp.float16))
    assert f_t.dtype == jnp.float16 and float(f_t[0]) == -float(np.finfo(np.float16).max)


@pytest.mark.parametrize("dtype", HALF, ids=lambda d: jnp.dtype(d).name)
@pytest.mark.parametrize("method", gravity.PRIOR_METHODS)
def test_prior_draws_in_half_precision_stay_finite(method, dtype):
    # T = 40 in d = 2: about 1 draw in 1600 lies beyond float16's 65504 (128 of 20000 drawn
    # as inf before); they are drawn in float32 and scaled back along their direction.
    n, T = 20000, 40.0
    x = gravity.sample_prior(n, 2, T, key=KEY, method=method, dtype=dtype)
    ref = np.asarray(gravity.sample_prior(n, 2, T, key=KEY, method=method), np.float64)
    got = np.asarray(x, np.float64)
    assert x.dtype == jnp.dtype(dtype) and np.all(np.isfinite(got))
    big = float(jnp.finfo(dtype).max)
    inside = np.abs(ref).max(axis=1) < 0.99 * big
    np.testing.assert_allclose(got[inside], ref[inside], rtol=HALF_RTOL[dtype], atol=1e-3)
    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    np.testing.assert_allclose(unit(got[~inside]), unit(ref[~inside]), atol=1e-2)


@pytest.mark.parametrize("dtype", HALF, ids=lambda d: jnp.dtype(d).name)
def test_conditional_and_isotropic_draws_in_half_precision(dtype):
    x0 = jnp.zeros((2000, 3), dtype)
    for draw in (gravity.conditional_sample(x0, 50.0, key=KEY),
                 isotropic.conditional_sample(CDF_FAMILY[0], x0, 50.0, key=KEY),
                 isotropic.sample_prior(CDF_FAMILY[1], 2000, 3, 4000.0, key=KEY,
                                        centre=jnp.zeros((3,), dtype))):
        assert draw.dtype == jnp.dtype(dtype) and np.all(np.isfinite(np.asarray(draw, np.float32)))


# ------------------------------------------------------------------------ empty batches


def test_empty_query_batches_give_empty_results():
    x0 = jnp.zeros((0, 2))
    data = jnp.ones((3, 2))
    path = CDF_FAMILY[2]
    shapes = {
        "field": jax.tree.map(jnp.shape, gravity.field(x0, 0.5, data)),
        "velocity": gravity.velocity(x0, 0.5, data).shape,
        "potential": gravity.potential(x0, 0.5, data).shape,
        "conditional_log_density": gravity.conditional_log_density(x0, 0.5, x0).shape,
        "conditional_sample": gravity.conditional_sample(x0, 0.5, key=KEY).shape,
        "pfgm_target": gravity.pfgm_target(x0, 0.5, data).shape,
        "prior_log_density": gravity.prior_log_density(x0, 2.0).shape,
        "powerlaw": powerlaw.velocity(x0, 0.5, data, k=2.0).shape,
        "point_field": powerlaw.point_field(x0, 0.5, x0, k=2.0).shape,
        "isotropic": isotropic.marginal_velocity(path, x0, 0.5, data).shape,
        "isotropic_sample": isotropic.conditional_sample(path, x0, 0.5, key=KEY).shape,
        "flows": flows.marginal_velocity(x0, 0.5, data,
                                         log_prior=flows.standard_normal_log_density).shape,
        "interpolate": flows.interpolate(x0, x0, jnp.zeros((0,))).shape,
        "follow": unaugmented.follow_field_lines(x0, data, length=1.0, steps=2).shape,
    }
    assert shapes == {
        "field": ((0, 2), (0,)), "velocity": (0, 2), "potential": (0,),
        "conditional_log_density": (0,), "conditional_sample": (0, 2), "pfgm_target": (0, 3),
        "prior_log_density": (0,), "powerlaw": (0, 2), "point_field": (0, 3),
        "isotropic": (0, 2), "isotropic_sample": (0, 2), "flows": (0, 2),
        "interpolate": (0, 2), "follow": (0, 2)}
    report = memorisation.hit_report(x0, data, tolerance=0.1)
    assert report.nearest.shape == (0,) and report.counts.sum() == 0


# --------------------------------------------------------------------- bad input, by name

X, T_B, DATA = np.ones((3, 2), np.float32), np.full((3,), 0.5, np.float32), np.zeros((4, 2), np.float32)
NAN_X = np.array([[0.0, np.nan], [1.0, 1.0], [2.0, 2.0]], np.float32)
PATH = CDF_FAMILY[0]
NORMAL = flows.standard_normal_log_density

BAD_CALLS = [
    # (id, call, error, the message must match)
    ("x None", lambda: gravity.velocity(None, T_B, DATA), TypeError, "x must be"),
    ("x list", lambda: gravity.field(X.tolist(), T_B, DATA), TypeError, "x must be"),
    ("x int", lambda: gravity.velocity(X.astype(np.int32), T_B, DATA), TypeError, "x must hold real floats"),
    ("x bool", lambda: powerlaw.velocity(X > 0, T_B, DATA, k=2.0), TypeError, "x must hold real floats"),
    ("x complex", lambda: isotropic.marginal_velocity(PATH, X.astype(np.complex64), T_B, DATA),
     TypeError, "x must hold real floats"),
    ("x nan", lambda: gravity.velocity(NAN_X, T_B, DATA), ValueError, "x must be finite"),
    ("x rank", lambda: gravity.velocity(X[0], T_B, DATA), ValueError, "x must have 2 axes"),
    ("data empty", lambda: gravity.velocity(X, T_B, DATA[:0]),
     ValueError, "data must have shape .N, d. with N ≥ 1"),
    ("data inf", lambda: gravity.field(X, T_B, DATA + np.inf), ValueError, "data must be finite"),
    ("t nan", lambda: gravity.velocity(X, np.float32(np.nan), DATA),
     ValueError, "t must be a finite real number > 0"),
    ("t shape", lambda: gravity.velocity(X, np.ones(2, np.float32), DATA),
     ValueError, r"t must be a scalar or have shape \(3,\)"),
    ("t int array", lambda: gravity.velocity(X, np.ones(3, np.int32), DATA),
     TypeError, "t must hold real floats"),
    ("t None", lambda: gravity.field(X, None, DATA), TypeError, "t must be"),
    ("block", lambda: gravity.velocity(X, T_B, DATA, block=0),
     ValueError, r"block must be an integer in \[1, "),
    ("block float", lambda: gravity.velocity(X, T_B, DATA, block=2.5), TypeError, "block must be an integer"),
    ("k", lambda: powerlaw.field(X, T_B, DATA, k=-1.0), ValueError, "k must be a finite real number > 0"),
    ("k nan", lambda: powerlaw.point_field(X, T_B, X, k=np.nan), ValueError, "k must be a finite"),
    ("k complex", lambda: powerlaw.divergence(X, T_B, X, k=1j), TypeError, "k must be a real number"),
    ("x0 shape", lambda: powerlaw.point_field(X, T_B, X[:2], k=2.0),
     ValueError, "x and x0 must have the same shape"),
    ("path", lambda: isotropic.marginal_velocity("tanh", X, T_B, DATA), TypeError, "path must be"),
    ("n", lambda: gravity.log_sphere_area(0), ValueError, "n must be an integer"),
    ("dim float", lambda: gravity.log_normaliser(1.5), TypeError, "dim must be an integer"),
    ("num", lambda: gravity.sample_prior(0, 2, 1.0, key=KEY), ValueError, "num must be an integer ≥ 1"),
    ("num huge", lambda: gravity.sample_prior(10**12, 2, 1.0, key=KEY),
     ValueError, "num is too large.*memory"),
    ("num huge iso", lambda: isotropic.sample_prior(PATH, 10**12, 2, 1.0, key=KEY),
     ValueError, "num is too large.*memory"),
    ("num huge sphere", lambda: unaugmented.sample_sphere(10**12, 2, 1.0, key=KEY),
     ValueError, "num is too large.*memory"),
    ("T inf", lambda: gravity.sample_prior(3, 2, np.inf, key=KEY), ValueError, "T must be a finite"),
    ("T str", lambda: gravity.prior_log_density(X, "2"), TypeError, "T must be a real number"),
    ("key None", lambda: gravity.sample_prior(3, 2, 1.0, key=None), TypeError, "key must be a JAX PRNG key"),
    ("key int", lambda: gravity.conditional_sample(X, 0.5, key=0), TypeError, "key must be a JAX PRNG key"),
    ("dtype int", lambda: gravity.sample_prior(3, 2, 1.0, key=KEY, dtype=jnp.int32),
     TypeError, "dtype must be a float dtype"),
    ("method int", lambda: gravity.sample_prior(3, 2, 1.0, key=KEY, method=1),
     TypeError, "method must be one of"),
    ("r negative", lambda: gravity.prior_radial_density(-np.ones(2, np.float32), 2, 1.0),
     ValueError, "r must be a finite real number ≥ 0"),
    ("sigma", lambda: gravity.pfgm_perturb(X, key=KEY, sigma=0.0), ValueError, "sigma must be"),
    ("tau", lambda: gravity.pfgm_perturb(X, key=KEY, tau=-0.5), ValueError, "tau must be"),
    ("max_exponent", lambda: gravity.pfgm_perturb(X, key=KEY, max_exponent=1e5),
     ValueError, "max_exponent must keep"),
    ("gamma", lambda: gravity.pfgm_target(X, T_B, DATA, gamma=-1.0), ValueError, "gamma must be"),
    ("prediction", lambda: gravity.pfgm_loss(X, X, T_B, DATA),
     ValueError, r"prediction must have shape \(3, 3\)"),
    ("conditional_loss", lambda: gravity.conditional_loss(X[:2], X, T_B, X),
     ValueError, "prediction and x_t must have the same shape"),
    ("centre", lambda: isotropic.sample_prior(PATH, 3, 2, 1.0, key=KEY, centre=np.zeros(3, np.float32)),
     ValueError, "centre must have shape"),
    ("interpolate t", lambda: flows.interpolate(X, X, np.full(3, 1.5, np.float32)),
     ValueError, r"t must be a finite real number in \[0.0, 1.0\]"),
    ("x1 shape", lambda: flows.rectified_loss(lambda x, t: x, X, X[:2], key=KEY),
     ValueError, "x0 and x1 must have the same shape"),
    ("velocity_model", lambda: flows.cfm_loss(None, X, key=KEY),
     TypeError, "velocity_model must be callable"),
    ("velocity_model shape", lambda: flows.cfm_loss(lambda x, t: x[:, :1], X, key=KEY),
     ValueError, "velocity_model.x, t. must return"),
    ("t_min", lambda: flows.rectified_loss(lambda x, t: x, X, X, key=KEY, t_min=2.0),
     ValueError, "t_min must be"),
    ("log_prior", lambda: flows.marginal_velocity(X, 0.5, DATA, log_prior=None),
     TypeError, "log_prior must be callable"),
    ("weights", lambda: flows.marginal_velocity(X, 0.5, DATA, log_prior=NORMAL,
                                                weights=-np.ones(4, np.float32)),
     ValueError, "weights must be"),
    ("high", lambda: flows.uniform_log_density(1.0, 0.0), ValueError, "high must be > low"),
    ("low nan", lambda: flows.uniform_log_density(np.nan, 1.0), ValueError, "low must be a finite"),
    ("atoms", lambda: flows.atoms_velocity([(0.5, -1.0)]), ValueError, "atoms must be"),
    ("tolerance", lambda: memorisation.hit_report(X, DATA, tolerance=0.0), ValueError, "tolerance must be"),
    ("samples", lambda: memorisation.hit_report(X[:, :1], DATA, tolerance=0.1),
     ValueError, "dimension mismatch: samples"),
    ("length", lambda: unaugmented.follow_field_lines(X, DATA, length=np.inf),
     ValueError, "length must be a finite"),
    ("softening", lambda: unaugmented.follow_field_lines(X, DATA, length=1.0, softening=-1.0),
     ValueError, "softening must be"),
    ("radius", lambda: unaugmented.sample_sphere(3, 2, 0.0, key=KEY), ValueError, "radius must be"),
    ("beta_max", lambda: VPSchedule(beta_min=1.0, beta_max=0.5), ValueError, "beta_max must be ≥ beta_min"),
    ("beta_min", lambda: VPSchedule(beta_min=np.nan), ValueError, "beta_min must be a finite"),
    ("schedule", lambda: vp.probability_flow(lambda x, t: x, schedule=None),
     TypeError, "schedule must be a VPSchedule"),
    ("vp t_min", lambda: vp.vp_loss(lambda x, t: x, X, key=KEY, t_min=0.0), ValueError, "t_min must be"),
    ("noise_model", lambda: vp.vp_loss(lambda x, t: x[:1], X, key=KEY),
     ValueError, "noise_model.x_t, t. must return"),
    ("budget", lambda: learned.Budget(hidden=0), ValueError, "hidden must be an integer"),
    ("gravity_t_min", lambda: learned.Budget(gravity_t_min=50.0), ValueError, "gravity_T must be"),
    ("init_network budget", lambda: learned.init_network(2, None, key=KEY), TypeError, "budget must be"),
    ("fit method", lambda: learned.fit("flow", DATA, budget=learned.Budget(), config=None, key=KEY),
     ValueError, "method must be one of"),
    ("fit data", lambda: learned.fit("cfm", DATA[0], budget=learned.Budget(), config=None, key=KEY),
     ValueError, "data must have 2 axes"),
]


@pytest.mark.parametrize("case", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_input_names_the_argument(case):
    _, call, error, match = case
    with pytest.raises(error, match=match):
        call()


def test_values_are_not_checked_under_jit():
    # Traced values pass through (shapes are still checked): a jitted field compiles.
    x, t, data = _points(2, n=5, b=3, dtype=jnp.float32)
    v = jax.jit(gravity.velocity)(x, t, data)
    assert_tree_allclose(v, gravity.velocity(x, t, data), rtol=1e-6)
    with pytest.raises(ValueError, match="dimension mismatch"):
        jax.jit(gravity.velocity)(x, t, data[:, :1])


def test_importing_the_plots_leaves_the_backend_to_the_caller():
    """The figures draw and save under whatever backend the caller chose; import changes none."""
    import subprocess
    import sys

    script = (
        "import matplotlib; matplotlib.use('pdf')\n"
        "import numpy as np\n"
        "from diffusionlab.odes import plots\n"
        "assert matplotlib.get_backend() == 'pdf', matplotlib.get_backend()\n"
        "fig = plots.histograms({'a': np.arange(10.0)}, xlabel='x', title='t')\n"
        "import io; buffer = io.BytesIO(); fig.savefig(buffer, format='png')\n"
        "assert buffer.getvalue()[:4] == b'\\x89PNG'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)


def test_learned_algorithms_are_final_classes_behind_the_method_names():
    import abc
    import inspect

    assert tuple(learned.ALGORITHMS) == learned.METHODS
    assert isinstance(learned.Algorithm, abc.ABCMeta) and learned.Algorithm.__abstractmethods__
    budget = learned.Budget(hidden=8, depth=1, time_dim=4, gravity_T=30.0, gravity_t_min=1e-2)
    intervals = {"gravity": (30.0, 1e-2, "log"), "vp": (1.0, 1e-3, "linear"),
                 "cfm": (1.0, 0.0, "linear"), "reflow": (1.0, 0.0, "linear")}
    apply, params = learned.init_network(2, budget, key=KEY)
    for name, algorithm in learned.ALGORITHMS.items():
        # A final class: no subclasses, and every class above it is abstract.
        assert not type(algorithm).__subclasses__()
        assert all(inspect.isabstract(c) for c in type(algorithm).__mro__[1:-2])
        model = learned.LearnedModel(name, apply, params, budget, 2)
        assert model.algorithm is algorithm
        assert (model.T, model.t_end, model.time) == intervals[name]


def test_learned_models_of_one_architecture_share_the_compiled_sampler():
    # Two trained models of one method and architecture (different weights: two replicates)
    # give velocities whose functions are equal, so the sampler compiles once for both.
    budget = learned.Budget(hidden=8, depth=1, time_dim=4)
    models = []
    for seed in (1, 2):
        apply, params = learned.init_network(2, budget, key=jax.random.key(seed))
        models.append(learned.LearnedModel("cfm", apply, params, budget, 2))
    assert models[0].velocity().func == models[1].velocity().func
    assert_compiles_once(lambda m: learned.sample(m, 8, key=KEY, solver="euler", steps=3).samples,
                         [(m,) for m in models])


def test_learned_velocities_follow_their_parameterisations():
    budget = learned.Budget(hidden=8, depth=1, time_dim=4)
    apply, params = learned.init_network(2, budget, key=KEY)
    x = jax.random.normal(jax.random.key(5), (6, 2))
    t = 0.4
    t_B = jnp.full((6,), t)

    def velocity(name):
        return learned.LearnedModel(name, apply, params, budget, 2).velocity()(x, t)

    # Gravity: v = (x - D)/t with D the denoiser; cfm and reflow: the network itself.
    denoised = learned.gravity_denoiser(apply, budget, params, x, t_B)
    assert_tree_allclose(velocity("gravity"), (x - denoised) / t)
    assert_tree_allclose(velocity("cfm"), apply(params, x, t_B))
    assert_tree_allclose(velocity("reflow"), apply(params, x, t_B))
    # VP: v = -β/2 (x - ε/σ), the probability flow of the noise predictor.
    schedule = VPSchedule()
    expected = -0.5 * schedule.beta(t) * (x - apply(params, x, t_B) / schedule.sigma(t))
    assert_tree_allclose(velocity("vp"), expected, rtol=1e-5, atol=1e-6)
