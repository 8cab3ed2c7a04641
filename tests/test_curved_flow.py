"""Flow matching and rectified flow along any path: the straight path is rectified_loss /
cfm_loss; the labels are the path's characteristics velocity; for Gaussian data the loss is
minimised by the analytic marginal velocity E[∂_tΨ | x_t]; reflow composes with a curved path;
Liu et al.'s straightness of closed-form fields; bad input."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate

from diffusionlab.odes import LinearPath, characteristics_velocity, flows
from tests.asserts import assert_z

KEY = jax.random.key(11)
M, S = 1.5, 0.5  # x0 ~ N(M, S² I); x1 ~ N(0, I)
PATHS = {
    "straight": (lambda t: 1 - t, lambda t: -jnp.ones_like(t), lambda t: t,
                 lambda t: jnp.ones_like(t)),
    "trigonometric": (lambda t: jnp.cos(math.pi * t / 2),
                      lambda t: -math.pi / 2 * jnp.sin(math.pi * t / 2),
                      lambda t: jnp.sin(math.pi * t / 2),
                      lambda t: math.pi / 2 * jnp.cos(math.pi * t / 2)),
}


def _path(name):
    return LinearPath() if name == "straight" else flows.trigonometric_path()


def _gaussian_velocity(name):
    r"""E[α̇ x0 + σ̇ x1 | x_t = x] = α̇ m + (α̇ α s² + σ̇ σ)/(α² s² + σ²) (x − α m)."""
    alpha, d_alpha, sigma, d_sigma = PATHS[name]

    def v(x, t):
        t = jnp.broadcast_to(t, x.shape[:1])  # the solvers pass a scalar t
        a, da, s, ds = (f(t)[:, None] for f in (alpha, d_alpha, sigma, d_sigma))
        gain = (da * a * S**2 + ds * s) / (a * a * S**2 + s * s)
        return da * M + gain * (x - a * M)

    return v


def _minimum(name, d):
    """d ∫_0^1 Var(u_t | x_t) dt: the loss at the marginal velocity."""
    alpha, d_alpha, sigma, d_sigma = PATHS[name]

    def conditional_variance(t):
        t = np.float64(t)
        a, da, s, ds = (float(f(t)) for f in (alpha, d_alpha, sigma, d_sigma))
        return da * da * S**2 + ds * ds - (da * a * S**2 + ds * s) ** 2 / (a * a * S**2 + s * s)

    return d * scipy.integrate.quad(conditional_variance, 0.0, 1.0, epsabs=1e-12)[0]


def _coupling(n, d, key=KEY):
    k0, k1 = jax.random.split(key)
    return (M + S * jax.random.normal(k0, (n, d), jnp.float64),
            jax.random.normal(k1, (n, d), jnp.float64))


def _mean_se(values):
    values = np.asarray(values, np.float64)
    return values.mean(), values.std(ddof=1) / math.sqrt(values.size)


# ------------------------------------------------------------------ the straight path


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_straight_path_is_rectified_loss_and_cfm_loss(dtype):
    with jax.enable_x64(True):
        k0, k1, k2 = jax.random.split(KEY, 3)
        x0 = jax.random.normal(k0, (64, 3), dtype)
        x1 = jax.random.normal(k1, (64, 3), dtype)

        def model(x, t):
            return jnp.sin(x) * t[:, None] - x

        expected = flows.rectified_loss(model, x0, x1, key=k2)
        for path in (None, LinearPath()):
            got = flows.path_rectified_loss(model, x0, x1, key=k2, path=path)
            assert got.dtype == expected.dtype
            np.testing.assert_allclose(got, expected, rtol=1e-6 if dtype == jnp.float32 else 1e-13)
            np.testing.assert_allclose(flows.path_cfm_loss(model, x0, key=k2, path=path),
                                       flows.cfm_loss(model, x0, key=k2),
                                       rtol=1e-6 if dtype == jnp.float32 else 1e-13)
        # a general callable path: the straight interpolant written out
        got = flows.path_rectified_loss(model, x0, x1, key=k2,
                                        path=lambda a, b, t: (1 - t) * a + t * b)
        np.testing.assert_allclose(got, expected, rtol=1e-5 if dtype == jnp.float32 else 1e-12)


def test_image_shaped_examples_and_half_precision():
    k0, k1, k2 = jax.random.split(KEY, 3)
    x0 = jax.random.normal(k0, (8, 2, 3, 1))
    x1 = jax.random.normal(k1, (8, 2, 3, 1))
    model = lambda x, t: 0.5 * x  # noqa: E731
    full = flows.path_rectified_loss(model, x0, x1, key=k2, path=flows.trigonometric_path())
    flat = flows.path_rectified_loss(model, x0.reshape(8, 6), x1.reshape(8, 6), key=k2,
                                     path=flows.trigonometric_path())
    np.testing.assert_allclose(full, flat, rtol=1e-6)
    half = flows.path_rectified_loss(model, x0.astype(jnp.bfloat16), x1.astype(jnp.bfloat16),
                                     key=k2, path=flows.trigonometric_path())
    assert half.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(half, np.float32), full, rtol=3e-2, atol=1e-2)


# -------------------------------------------------------------- labels of a curved path


def test_curved_labels_are_the_characteristics_velocity():
    with jax.enable_x64(True):
        path = flows.trigonometric_path()
        x0, x1 = _coupling(7, 3)
        t = jax.random.uniform(jax.random.key(5), (7,), jnp.float64, 0.05, 0.95)
        x_t, u_t = flows.path_interpolate(x0, x1, t, path=path)
        c, s = jnp.cos(math.pi * t / 2)[:, None], jnp.sin(math.pi * t / 2)[:, None]
        np.testing.assert_allclose(x_t, c * x0 + s * x1, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(u_t, math.pi / 2 * (c * x1 - s * x0), rtol=1e-12, atol=1e-13)
        # f = -(∂Φ/∂x)^{-1} ∂_tΦ of the label map Φ_t(x|x0) = (x - μ_t)/σ_t at x = x_t
        np.testing.assert_allclose(u_t, characteristics_velocity(path.label, x_t, t, x0=x0),
                                   rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(u_t, path.velocity(x_t, t, x0), rtol=1e-10, atol=1e-12)


# ------------------------------------------------ Gaussian data: the analytic minimiser


@pytest.mark.parametrize("name", list(PATHS))
def test_gaussian_marginal_velocity_minimises_the_loss(name):
    n, d = 20000, 2
    with jax.enable_x64(True):
        x0, x1 = _coupling(n, d)
        path, v_star = _path(name), _gaussian_velocity(name)
        key = jax.random.key(2)

        def g(x, t):  # a perturbation direction
            return jnp.tanh(x) * (1 + t[:, None])

        @jax.jit
        def losses(eps):
            return flows.path_cfm_loss(lambda x, t: v_star(x, t) + eps * g(x, t), x0, key=key,
                                       path=path)

        base = losses(0.0)
        # the loss at the marginal velocity is d ∫ Var(u_t | x_t) dt
        assert_z(*_mean_se(base), _minimum(name, d))
        # the directional derivative at v* vanishes (in expectation)
        assert_z(*_mean_se(jax.jacfwd(losses)(0.0)), 0.0)
        # and perturbed velocities do worse, both ways
        for eps in (-0.3, 0.3):
            mean, se = _mean_se(losses(eps) - base)
            assert mean - 4 * se > 0, (eps, mean, se)


def test_straight_marginal_velocity_is_not_the_curved_minimiser():
    with jax.enable_x64(True):
        x0, _ = _coupling(20000, 2)
        key = jax.random.key(4)
        path = flows.trigonometric_path()
        curved = flows.path_cfm_loss(_gaussian_velocity("trigonometric"), x0, key=key, path=path)
        straight = flows.path_cfm_loss(_gaussian_velocity("straight"), x0, key=key, path=path)
        mean, se = _mean_se(straight - curved)
        assert mean - 4 * se > 0, (mean, se)


# ------------------------------------------------------------- reflow on a curved path


def test_reflow_composes_with_a_curved_path():
    """The trigonometric marginal ODE maps N(0, I) onto N(M, S² I) by x̂0 = M + S x1 (affine,
    increasing): reflow_pairs recovers that map, and along the curved path this deterministic,
    non-crossing coupling has a velocity with zero loss."""
    with jax.enable_x64(True):
        noise = jax.random.normal(jax.random.key(8), (64, 2), jnp.float64)
        x0_hat, x1 = flows.reflow_pairs(_gaussian_velocity("trigonometric"), noise,
                                        solver="heun", steps=200)
        np.testing.assert_allclose(x0_hat, M + S * x1, atol=1e-4)  # Heun: O(h²)
        alpha, d_alpha, sigma, d_sigma = PATHS["trigonometric"]

        def v_reflowed(x, t):
            t = jnp.broadcast_to(t, x.shape[:1])
            a, da, s, ds = (f(t)[:, None] for f in (alpha, d_alpha, sigma, d_sigma))
            z = (x - a * M) / (a * S + s)  # the x1 of the path through x at t
            return da * (M + S * z) + ds * z

        loss = flows.path_rectified_loss(v_reflowed, x0_hat, x1, key=jax.random.key(9),
                                         path=flows.trigonometric_path())
        assert float(jnp.max(loss)) < 1e-6
        # the same field scored against the independent coupling is far from zero
        indep = flows.path_cfm_loss(v_reflowed, x0_hat, key=jax.random.key(9),
                                    path=flows.trigonometric_path())
        assert float(jnp.mean(indep)) > 0.1


# ------------------------------------------------------------------------ straightness


def test_straightness_of_closed_form_fields():
    with jax.enable_x64(True):
        noise = jax.random.normal(jax.random.key(6), (5, 2), jnp.float64)
        # a constant velocity is straight
        out = flows.straightness(lambda x, t: jnp.ones_like(x) * 0.7, noise, steps=8)
        np.testing.assert_allclose(out.straightness, 0.0, atol=1e-24)
        np.testing.assert_allclose(out.samples, noise - 0.7, rtol=1e-13)
        # v = a x: the Euler velocities v_k = a (1 - a h)^k x1; S is their variance over k
        a, n = -1.0, 16
        out = flows.straightness(lambda x, t: a * x, noise, steps=n)
        vk = a * (1 - a / n) ** np.arange(n)
        expected = (np.mean(vk**2) - np.mean(vk) ** 2) * np.sum(np.asarray(noise) ** 2, axis=1)
        np.testing.assert_allclose(out.straightness, expected, rtol=1e-12)
        np.testing.assert_allclose(out.path_deviation, out.straightness, rtol=1e-12)
        # the continuous limit: ‖x1‖² (a(1 - e^{-2a})/2 - (1 - e^{-a})²)
        fine = flows.straightness(lambda x, t: a * x, noise, steps=4000).straightness
        limit = (a * (1 - math.exp(-2 * a)) / 2 - (1 - math.exp(-a)) ** 2) * np.sum(
            np.asarray(noise) ** 2, axis=1)
        np.testing.assert_allclose(fine, limit, rtol=2e-3)


def test_straightness_of_a_trigonometric_arc():
    """A field whose trajectory is the trigonometric arc from x1 to x0: it deviates from the
    path by O(h) only, and its straightness is the arc's,
    π²/8 (‖x0‖² + ‖x1‖²) − (π/2) x0·x1 − ‖x1 − x0‖²."""
    with jax.enable_x64(True):
        x0, x1 = _coupling(4, 2)
        path = flows.trigonometric_path()

        def arc(x, t):
            return path.velocity(x, t, x0)

        out = flows.straightness(arc, x1, steps=2000, path=path)
        np.testing.assert_allclose(out.samples, x0, atol=5e-3)
        dot = np.sum(np.asarray(x0 * x1), axis=1)
        sq0, sq1 = (np.sum(np.asarray(v) ** 2, axis=1) for v in (x0, x1))
        arc_s = math.pi**2 / 8 * (sq0 + sq1) - math.pi / 2 * dot - (sq0 + sq1 - 2 * dot)
        np.testing.assert_allclose(out.straightness, arc_s, rtol=2e-2)
        assert np.all(np.asarray(out.path_deviation) < 1e-2 * arc_s)


# --------------------------------------------------------------------------- bad input


def test_bad_input_names_the_argument():
    x = jnp.zeros((3, 2))
    model = lambda x, t: x  # noqa: E731
    with pytest.raises(TypeError, match="path"):
        flows.path_rectified_loss(model, x, x, key=KEY, path=3.0)
    with pytest.raises(ValueError, match="path"):
        flows.path_rectified_loss(model, x, x, key=KEY, path=lambda a, b, t: a[:1])
    with pytest.raises(ValueError, match="t_max"):
        flows.path_rectified_loss(model, x, x, key=KEY, t_min=0.5, t_max=0.5)
    with pytest.raises(ValueError, match="t_min"):
        flows.path_cfm_loss(model, x, key=KEY, t_min=-0.1)
    with pytest.raises(TypeError, match="velocity_model"):
        flows.path_rectified_loss(None, x, x, key=KEY)
    with pytest.raises(ValueError, match="x1"):
        flows.path_rectified_loss(model, x, jnp.zeros((3, 3)), key=KEY)
    with pytest.raises(ValueError, match="t"):
        flows.path_interpolate(x, x, jnp.full((3,), 1.5))
    with pytest.raises(ValueError, match="steps"):
        flows.straightness(model, x, steps=0)
    with pytest.raises(TypeError, match="velocity_fn"):
        flows.straightness(None, x)
    with pytest.raises(ValueError, match="velocity_fn"):
        flows.straightness(lambda x, t: x[:, :1], x)
