"""The UDM process contract: a process written here, in one class, samples and trains through
the generic sampler, kernels, networks and training loop with no other change."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffusionlab import data, stats, train, udm
from diffusionlab.udm.consistency import marginal_consistency
from diffusionlab.udm.networks import NetworkConfig
from diffusionlab.udm.training import expected_loss, fit_process, untrained_model

KEY = jax.random.key(0)


@udm.process_dataclass
class InterpolationDiffusion(udm.Process):
    r"""Straight-line interpolation to Gaussian noise: :math:`x_t=(1-t/T)x_0+(t/T)\varepsilon`."""

    T: int = 10
    event_shape: tuple[int, ...] = (2,)
    kernel: str = "deterministic"

    def _weight(self, t, like):
        return (jnp.asarray(t, like.dtype) / self.T).reshape(jnp.shape(t) + (1,) * len(self.event_shape))

    def apply(self, x0, t, noise):
        w = self._weight(t, x0)
        return (1 - w) * x0 + w * noise

    def invert(self, x0, x_t, t, *, key=None):
        w = self._weight(t, x_t)
        return jnp.where(w > 0, (x_t - (1 - w) * x0) / jnp.where(w > 0, w, 1.0), 0.0)

    def draw_noise(self, x0, *, key):
        return jax.random.normal(key, jnp.shape(x0), x0.dtype)

    def prior(self, x0, *, key):
        return self.draw_noise(jnp.asarray(x0, jnp.float32), key=key)

    def nll(self, x0, prediction, t):
        return udm.base.event_mean((x0 - prediction) ** 2, t)


def test_a_process_defined_here_is_a_udm_process():
    process = InterpolationDiffusion()
    assert isinstance(process, udm.Process)
    # the generic forward draws x_t = (1 - t/T) x0 + (t/T) eps with the key's eps
    x0 = jnp.array([[1.0, -2.0], [0.5, 3.0]])
    eps = process.draw_noise(x0, key=KEY)
    np.testing.assert_allclose(process.forward(x0, 4, key=KEY), 0.6 * x0 + 0.4 * eps, rtol=1e-6)
    # the generic loss checks its arguments and names them
    with pytest.raises(ValueError, match=r"t must lie in \[1, 10\]"):
        process.loss(x0, x0, 0)
    with pytest.raises(ValueError, match="x0 and prediction"):
        process.loss(x0, x0[:, :1], 3)


def test_the_contract_is_enforced():
    class Incomplete(udm.Process):  # no forward map, no loss
        T = 3
        event_shape = (2,)

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()
    with pytest.raises(TypeError, match="process must be a UDM process"):
        udm.sample(object(), lambda x, t: x, jnp.zeros((2, 2)), key=KEY)


def test_the_framework_kernel_is_consistent_for_the_new_process():
    # x_s through the deterministic kernel has the law of a direct forward draw (z-scores of the
    # feature means at a fixed key), and a kernel that breaks the constraint is caught.
    process, x0 = InterpolationDiffusion(), jnp.array([1.0, -0.5])
    good = marginal_consistency(process, udm.deterministic_kernel, x0, 8, 5, key=KEY, num=4096)
    assert good.max_abs_z < 4.5, good
    # the control doubles the noise variance: E[x_s^2] is off by (s/T)^2 = 0.25, about 15 s.e.
    bad = marginal_consistency(process, udm.consistency.inconsistent_kernel, x0, 8, 5, key=KEY,
                               num=4096, sigma_tilde=1.0)
    assert bad.max_abs_z > 8, bad


def test_the_generic_sampler_with_the_exact_predictor_returns_the_data_point():
    # With x0_hat = x0 exactly, the deterministic kernel recovers the noise of x_T and walks the
    # straight line back: every sample is x0, at any number of steps.
    process, point = InterpolationDiffusion(), jnp.array([0.7, -1.3])
    x_T = process.prior(jnp.zeros((16, 2)), key=KEY)
    for steps in (10, 3, 1):
        out = udm.sample(process, lambda x, t: jnp.broadcast_to(point, x.shape), x_T, key=KEY,
                         steps=steps)
        np.testing.assert_allclose(out, jnp.broadcast_to(point, out.shape), atol=1e-5)


def test_the_new_process_trains_through_the_generic_loop():
    process = InterpolationDiffusion()
    network = NetworkConfig(hidden=64, depth=2)
    config = train.TrainConfig(steps=300, batch_size=128, learning_rate=3e-3, ema_decay=0.0,
                               log_every=300)
    x_train = np.asarray(data.toy2d("8gaussians", 2048, key=jax.random.key(1)))
    x_test = jnp.asarray(data.toy2d("8gaussians", 1024, key=jax.random.key(2)))
    trained = fit_process(process, x_train, config=config, network=network, key=KEY)
    untrained = untrained_model(process, x_train.shape[1:], network, key=KEY)
    # the default head predicts x0_hat directly, in the data's shape
    x_t = process.forward(x_test[:5], 4, key=KEY)
    assert trained.predict_x0(x_t, jnp.full(5, 4)).shape == (5, 2)
    keys = jax.random.split(jax.random.key(3), 4)
    loss_trained = np.array([expected_loss(trained, x_test, key=k) for k in keys])
    loss_untrained = np.array([expected_loss(untrained, x_test, key=k) for k in keys])
    verdict = stats.compare(loss_trained, 0.8 * loss_untrained, alternative="less", paired=True)
    assert verdict.verdict == "holds", (str(verdict), loss_trained, loss_untrained)
