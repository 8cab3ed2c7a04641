"""The isotropic CDF family exactly on an atom (x_t = x0, r = 0): analytic limits, continuity
with r = 1e-6, finite gradients, and the atom's weight in the marginal velocity.

The limits: log φ_t(0) = -d/2 log(2π t²) for the Gaussian member; -log(2t) for tanh and exp
at d = 1 (∂_rψ_t(0) = 1/t over S_1(1) = 2); +inf for tanh and exp at d ≥ 2.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffusionlab.odes import CDF_FAMILY, GaussianCDF, isotropic

T = 0.7
DIMS = (1, 2, 64)
CONTINUITY_TOL = 1e-5  # r = 1e-6 against r = 0: the log-density moves by ≤ 1.5e-6 here


def _log_sphere_area(d):
    return math.log(2.0) + 0.5 * d * math.log(math.pi) - math.lgamma(0.5 * d)


def _singular(path, d):
    return path.name in ("tanh", "exp") and d >= 2


def _limit(path, d):
    if path.name == "gaussian":
        return -0.5 * d * math.log(2 * math.pi * T * T)
    return math.inf if d >= 2 else -math.log(2 * T)


def _log_density_reference(path, r, d):
    # float64 closed forms of log φ_t(r) for r > 0.
    u = r / T
    if path.name == "gaussian":
        return -0.5 * u * u - 0.5 * d * math.log(2 * math.pi * T * T)
    log_dpsi = (math.log(4.0) - 2 * u - 2 * math.log1p(math.exp(-2 * u)) if path.name == "tanh"
                else -u) - math.log(T)
    return log_dpsi - (d - 1) * math.log(r) - _log_sphere_area(d)


def _unit(d):
    e = np.ones(d) / math.sqrt(d)
    return e


@pytest.mark.parametrize("path", CDF_FAMILY, ids=lambda p: p.name)
@pytest.mark.parametrize("d", DIMS)
def test_conditional_log_density_on_the_atom_is_the_limit(path, d):
    with jax.enable_x64(True):
        x0 = jnp.full((d,), 0.3)
        at_atom = float(isotropic.conditional_log_density(path, x0, T, x0))
        x_near = x0 + 1e-6 * _unit(d)
        r_near = float(np.linalg.norm(np.asarray(x_near) - np.asarray(x0)))  # ≈ 1e-6
        near = float(isotropic.conditional_log_density(path, x_near, T, x0))
        assert near == pytest.approx(_log_density_reference(path, r_near, d), rel=1e-12,
                                     abs=1e-12)
        if _singular(path, d):
            assert at_atom == math.inf
            assert near > _log_density_reference(path, 1e-3, d) + (d - 1) * math.log(1e3) - 1e-3
        else:
            assert math.isfinite(at_atom)
            assert at_atom == pytest.approx(_limit(path, d), rel=1e-13, abs=1e-13)
            assert abs(at_atom - near) <= CONTINUITY_TOL


@pytest.mark.parametrize("path", CDF_FAMILY, ids=lambda p: p.name)
@pytest.mark.parametrize("d", DIMS)
def test_gradients_on_the_atom_are_finite(path, d):
    with jax.enable_x64(True):
        x0 = jnp.full((d,), 0.3)

        def f(x, t):
            return isotropic.conditional_log_density(path, x, t, x0)

        @jax.jit
        def derivatives(x, t):
            gx, gt = jax.grad(f, argnums=(0, 1))(x, t)
            green = isotropic.green_function(path, x, t, x0)
            jac = jax.jacfwd(lambda z: isotropic.green_function(path, z[1:], z[0], x0))(
                jnp.concatenate([t[None], x]))
            return gx, gt, jax.jacfwd(f)(x, t), green, jac

        gx, gt, gx_fwd, g, jac = derivatives(x0, jnp.asarray(T))
        assert np.all(np.isfinite(gx)) and np.all(np.isfinite(gx_fwd)) and np.isfinite(gt)
        # The symmetric value in x: 0. In t, the limit's: -d/t (Gaussian), -1/t (d = 1),
        # 0 where the limit is the constant +inf.
        np.testing.assert_array_equal(np.asarray(gx), 0.0)
        want_t = -d / T if path.name == "gaussian" else (-1 / T if d == 1 else 0.0)
        assert float(gt) == pytest.approx(want_t, rel=1e-12, abs=1e-12)
        # The Green's function is NaN-free on the atom, with flux 0, and so is its Jacobian.
        assert not np.any(np.isnan(g)) and np.all(np.asarray(g[1:]) == 0.0)
        assert not np.any(np.isnan(jac))


def _atoms(d):
    # The query's atom (twice: weight 2 φ_t(0)) and two others at distances 0.6 and 0.9.
    q = np.full(d, 0.3)
    e = _unit(d)
    e2 = np.roll(np.eye(d)[0], 1) if d > 1 else -np.ones(1)
    return q, np.stack([q, q, q + 0.6 * e, q - 0.9 * e2])


def _reference_velocity(path, d, x, data):
    # float64: Σ w_i (x - x_i)/t / Σ w_i with w_i = φ_t(r_i), φ_t(0) its limit.
    diff = x[None, :] - data
    r = np.sqrt(np.sum(diff * diff, axis=1))
    log_w = np.array([_limit(path, d) if ri == 0 else _log_density_reference(path, ri, d)
                      for ri in r])
    w = np.exp(log_w - log_w.max())
    return w @ diff / (T * w.sum())


@pytest.mark.parametrize("path", CDF_FAMILY, ids=lambda p: p.name)
@pytest.mark.parametrize("d", DIMS)
def test_marginal_velocity_on_an_atom_gives_it_its_weight(path, d):
    with jax.enable_x64(True):
        q, data = _atoms(d)
        v = np.asarray(isotropic.marginal_velocity(path, q[None], T, data))[0]
        near = q + 1e-6 * _unit(d)
        v_near = np.asarray(isotropic.marginal_velocity(path, near[None], T, data))[0]
        assert np.all(np.isfinite(v))
        if _singular(path, d):
            # The coincident atom takes all the weight: the velocity is its limit, 0.
            assert np.max(np.abs(v)) <= 1e-300
        else:
            want = _reference_velocity(path, d, q, data)
            np.testing.assert_allclose(v, want, rtol=1e-12, atol=1e-14)
            # The atom's weight: 2 φ_t(0) against the others' (the duplicate counts twice).
            half = _reference_velocity(path, d, q, data[1:])
            assert np.max(np.abs(want - half)) > 1e-3 * np.max(np.abs(want))
        assert np.max(np.abs(v_near - v)) <= CONTINUITY_TOL
        # Just off the atom: the plain float64 formula.
        np.testing.assert_allclose(v_near, _reference_velocity(path, d, near, data), rtol=1e-8,
                                   atol=1e-14)


@pytest.mark.parametrize("path", CDF_FAMILY, ids=lambda p: p.name)
@pytest.mark.parametrize("d", (1, 2))
def test_marginal_velocity_jacobian_on_an_atom_is_finite(path, d):
    with jax.enable_x64(True):
        q, data = _atoms(d)

        def v(x):
            return isotropic.marginal_velocity(path, x[None], T, data)[0]

        jf = jax.jit(jax.jacfwd(v))(jnp.asarray(q))
        assert np.all(np.isfinite(jf))
        if d == 2:  # reverse mode too (through the blockwise scan)
            jr = jax.jit(jax.jacrev(v))(jnp.asarray(q))
            np.testing.assert_allclose(jf, jr, rtol=1e-12, atol=1e-12)
        if _singular(path, d):
            # All the weight on the atom: v = (x - x_0)/t to first order, J = I/t.
            np.testing.assert_allclose(jf, np.eye(d) / T, rtol=1e-12)
        elif not (path.name == "exp" and d == 1):
            # Smooth weights: the Jacobian is continuous (exp at d = 1 has a cusp, e^{-|x|/t}).
            j_near = jax.jacfwd(v)(jnp.asarray(q + 1e-6 * _unit(d)))
            np.testing.assert_allclose(jf, j_near, atol=1e-4)


def test_on_the_atom_in_float32():
    q, data = _atoms(2)
    for path in CDF_FAMILY:
        v = isotropic.marginal_velocity(path, jnp.asarray(q[None], jnp.float32), T,
                                        jnp.asarray(data, jnp.float32))
        assert v.dtype == jnp.float32 and np.all(np.isfinite(v))
        lp = isotropic.conditional_log_density(path, jnp.asarray(q, jnp.float32), T,
                                               jnp.asarray(q, jnp.float32))
        assert not np.isnan(lp)


def test_gaussian_with_a_general_sigma_on_the_atom():
    with jax.enable_x64(True):
        path = GaussianCDF(sigma=jnp.sinh)
        for d in DIMS:
            x0 = jnp.full((d,), 0.3)
            got = float(isotropic.conditional_log_density(path, x0, T, x0))
            assert got == pytest.approx(-0.5 * d * math.log(2 * math.pi * math.sinh(T) ** 2),
                                        rel=1e-13)
