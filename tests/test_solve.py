"""solve: closed forms of linear ODEs, exact NFE accounting, SDE moments, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from asserts import assert_z

from diffusionlab.solve import SOLVERS, solve_ode, solve_sde

A = jnp.array([[-0.5, 1.0], [-1.0, -0.5]])
X0 = jnp.array([[1.0, 0.0], [0.0, 2.0], [0.3, -0.7]])


def exact(t):
    return X0 @ jax.scipy.linalg.expm(t * A).T


@pytest.mark.parametrize("solver,steps,tol", [("tsit5", None, 2e-5), ("dopri5", None, 2e-5),
                                              ("heun", 200, 2e-4), ("euler", 2000, 2e-3)])
def test_linear_ode_matches_matrix_exponential(solver, steps, tol):
    sol = solve_ode(lambda t, x: x @ A.T, X0, 0.0, 2.0, solver=solver, steps=steps)
    np.testing.assert_allclose(sol.x, exact(2.0), atol=tol)


def test_backwards_in_time_inverts_forwards():
    forward = solve_ode(lambda t, x: x @ A.T, X0, 0.0, 1.0, rtol=1e-7, atol=1e-7)
    back = solve_ode(lambda t, x: x @ A.T, forward.x, 1.0, 0.0, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(back.x, X0, atol=1e-5)


def test_fixed_step_orders():
    """Halving the step divides the error by 2 (Euler) and 4 (Heun)."""
    for solver, order in [("euler", 1), ("heun", 2)]:
        errs = [float(jnp.abs(solve_ode(lambda t, x: x @ A.T, X0, 0.0, 1.0, solver=solver, steps=n).x
                              - exact(1.0)).max()) for n in (50, 100, 200)]
        fitted = np.polyfit(np.log([50, 100, 200]), np.log(errs), 1)[0]
        assert abs(-fitted - order) < 0.15, (solver, fitted)


@pytest.mark.parametrize("solver,steps", [("tsit5", None), ("tsit5", 10), ("dopri5", None),
                                          ("euler", 17), ("heun", 9)])
def test_nfe_counts_every_vector_field_call(solver, steps):
    calls = []

    def velocity(t, x):
        jax.debug.callback(lambda: calls.append(1))
        return x @ A.T

    sol = solve_ode(velocity, X0, 0.0, 2.0, solver=solver, steps=steps)
    jax.block_until_ready(sol.x)
    assert int(sol.nfe) == len(calls)


def test_trajectory_and_jit_compile_once():
    f = jax.jit(lambda x: solve_ode(lambda t, y: -y, x, 1.0, 0.0, save_trajectory=4))
    sol = f(jnp.ones(3))
    np.testing.assert_allclose(sol.ts, [1.0, 0.75, 0.5, 0.25, 0.0])
    np.testing.assert_allclose(sol.xs[:, 0], np.exp(1.0 - np.asarray(sol.ts)), rtol=1e-4)
    f(2 * jnp.ones(3))
    assert f._cache_size() == 1


def test_ou_sde_variance_matches_closed_form():
    """dx = -x dt + √2 dW from 0: Var x_t = 1 - e^{-2t} (per coordinate)."""
    n = 20000
    sol = solve_sde(lambda t, x: -x, lambda t: jnp.sqrt(2.0), jnp.zeros((n, 2)), 0.0, 1.0,
                    key=jax.random.key(0), steps=400)
    var = float(jnp.var(sol.x))
    true = 1 - np.exp(-2.0)
    # Var of a sample variance of 2n normals: 2σ⁴/(2n).
    assert_z(var, np.sqrt(2 * true**2 / (2 * n)), true, z=4)
    assert int(sol.nfe) == 400


@pytest.mark.parametrize("kwargs,match", [
    ({"solver": "rk4"}, "solver"), ({"solver": "euler"}, "steps"), ({"steps": 0}, "steps"),
    ({"rtol": 0.0}, "rtol"), ({"save_trajectory": -1}, "save_trajectory"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        solve_ode(lambda t, x: -x, X0, 0.0, 1.0, **kwargs)


def test_equal_times_and_bad_sde_diffusion():
    with pytest.raises(ValueError, match="t_end"):
        solve_ode(lambda t, x: -x, X0, 1.0, 1.0)
    with pytest.raises(ValueError, match="scalar"):
        solve_sde(lambda t, x: -x, lambda t: jnp.ones(2), X0, 0.0, 1.0, key=jax.random.key(0), steps=3)
    assert set(SOLVERS) == {"tsit5", "dopri5", "euler", "heun"}
