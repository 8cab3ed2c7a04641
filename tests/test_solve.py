"""solve: closed forms of linear ODEs, exact NFE accounting, SDE moments, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from asserts import assert_compiles_once, assert_z

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
    assert_compiles_once(f, [(jnp.ones(3),), (2 * jnp.ones(3),)])


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


# ------------------------------------------------------ half precision, empty states, errors


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16], ids=["float16", "bfloat16"])
def test_half_precision_state_and_times_are_integrated_in_float32(dtype):
    # A bfloat16 time cannot resolve the steps; the state and the times are promoted, and
    # the result is the float32 one rounded once.
    x = X0.astype(dtype)
    sol = solve_ode(lambda t, y: y @ A.T.astype(y.dtype), x, jnp.asarray(0.0, dtype),
                    jnp.asarray(2.0, dtype), rtol=1e-6, atol=1e-6)
    ref = solve_ode(lambda t, y: y @ A.T, x.astype(jnp.float32), 0.0, 2.0, rtol=1e-6, atol=1e-6)
    assert sol.x.dtype == jnp.dtype(dtype)
    np.testing.assert_array_equal(np.asarray(sol.x, np.float32),
                                  np.asarray(ref.x.astype(dtype), np.float32))
    assert int(sol.nfe) == int(ref.nfe)
    sde = solve_sde(lambda t, y: -y, lambda t: 0.5, x, 0.0, 1.0, key=jax.random.key(1), steps=8)
    sde32 = solve_sde(lambda t, y: -y, lambda t: 0.5, x.astype(jnp.float32), 0.0, 1.0,
                      key=jax.random.key(1), steps=8)
    assert sde.x.dtype == jnp.dtype(dtype)
    np.testing.assert_array_equal(np.asarray(sde.x, np.float32),
                                  np.asarray(sde32.x.astype(dtype), np.float32))


def test_empty_state_is_returned_with_zero_nfe():
    calls = []

    def velocity(t, x):
        calls.append(1)
        return -x

    empty = jnp.zeros((0, 2))
    for solver, steps in [("tsit5", None), ("euler", 3)]:
        sol = solve_ode(velocity, empty, 1.0, 0.0, solver=solver, steps=steps)
        assert sol.x.shape == (0, 2) and int(sol.nfe) == 0 and sol.ts is None
    traj = solve_ode(velocity, {"a": empty, "b": jnp.zeros((0,))}, 1.0, 0.0, save_trajectory=3)
    assert traj.ts.shape == (4,) and traj.xs["a"].shape == (4, 0, 2)
    sde = solve_sde(lambda t, x: -x, lambda t: 1.0, empty, 0.0, 1.0, key=jax.random.key(0),
                    steps=3)
    assert sde.x.shape == (0, 2) and int(sde.nfe) == 0
    assert calls == []


def _minus(t, x):
    return -x


KEY = jax.random.key(0)
BAD_CALLS = [
    # T = nan used to return x_T unchanged
    ("T nan", lambda: solve_ode(_minus, X0, float("nan"), 0.0), ValueError,
     "T must be a finite real number"),
    ("t_end inf", lambda: solve_ode(_minus, X0, 1.0, float("inf")), ValueError,
     "t_end must be a finite real number"),
    ("T None", lambda: solve_ode(_minus, X0, None, 0.0), TypeError, "T must be a real number"),
    ("T complex", lambda: solve_ode(_minus, X0, 1j, 0.0), TypeError, "T must be a real number"),
    # NaN in x_T used to surface as "maximum number of solver steps"
    ("x_T nan", lambda: solve_ode(_minus, X0.at[0, 0].set(jnp.nan), 1.0, 0.0), ValueError,
     "x_T must be finite"),
    ("x_T list", lambda: solve_ode(_minus, [1.0, 2.0], 1.0, 0.0), TypeError, "x_T must be"),
    ("x_T None", lambda: solve_ode(_minus, None, 1.0, 0.0), TypeError, "x_T must be"),
    ("x_T int", lambda: solve_ode(_minus, jnp.ones(3, jnp.int32), 1.0, 0.0), TypeError,
     "x_T must hold real floats"),
    ("x_T bool", lambda: solve_ode(_minus, jnp.ones(3, bool), 1.0, 0.0), TypeError,
     "x_T must hold real floats"),
    ("velocity", lambda: solve_ode(None, X0, 1.0, 0.0), TypeError, "velocity must be callable"),
    ("velocity shape", lambda: solve_ode(lambda t, x: x[0], X0, 1.0, 0.0), ValueError,
     r"velocity\(t, x\) must return"),
    ("steps float", lambda: solve_ode(_minus, X0, 1.0, 0.0, solver="euler", steps=2.5),
     TypeError, "steps must be an integer"),
    ("steps huge", lambda: solve_ode(_minus, X0, 1.0, 0.0, solver="euler", steps=10**12),
     ValueError, "steps must be an integer in"),
    ("max_steps", lambda: solve_ode(_minus, X0, 1.0, 0.0, max_steps=0), ValueError,
     "max_steps must be"),
    ("atol nan", lambda: solve_ode(_minus, X0, 1.0, 0.0, atol=float("nan")), ValueError,
     "atol must be"),
    ("save_trajectory huge", lambda: solve_ode(_minus, jnp.ones((1000, 2)), 1.0, 0.0,
                                               save_trajectory=2**31 - 2),
     ValueError, "save_trajectory is too large.*memory"),
    ("sde key", lambda: solve_sde(_minus, lambda t: 1.0, X0, 0.0, 1.0, key=None, steps=3),
     TypeError, "key must be"),
    ("sde steps", lambda: solve_sde(_minus, lambda t: 1.0, X0, 0.0, 1.0, key=KEY, steps=0),
     ValueError, "steps must be"),
    ("sde x_T complex", lambda: solve_sde(_minus, lambda t: 1.0, X0.astype(jnp.complex64), 0.0,
                                          1.0, key=KEY, steps=3),
     TypeError, "x_T must hold real floats"),
    ("sde drift shape", lambda: solve_sde(lambda t, x: x[:1], lambda t: 1.0, X0, 0.0, 1.0,
                                          key=KEY, steps=3), ValueError, r"drift\(t, x\) must"),
    ("sde T equal", lambda: solve_sde(_minus, lambda t: 1.0, X0, 1.0, 1.0, key=KEY, steps=3),
     ValueError, "t_end must differ from T"),
    ("sde solver", lambda: solve_sde(_minus, lambda t: 1.0, X0, 0.0, 1.0, key=KEY, steps=3,
                                     solver="tsit5"), ValueError, "solver must be one of"),
]


@pytest.mark.parametrize("case", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_input_names_the_argument(case):
    _, call, error, match = case
    with pytest.raises(error, match=match):
        call()


def test_traced_times_are_not_checked():
    # Under jit the values are unknown: T and t_end pass through, shapes are still checked.
    f = jax.jit(lambda T: solve_ode(_minus, X0, T, 0.0, solver="heun", steps=20).x)
    np.testing.assert_allclose(f(1.0), X0 * np.exp(1.0), rtol=1e-3)
