"""The shared VP schedule: its closed forms, and Su's discrete linear schedule as its samples."""

import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
from asserts import assert_tree_allclose

from diffusionlab import udm
from diffusionlab.odes import VPSchedule as OdesVPSchedule
from diffusionlab.schedules import VPSchedule


def test_log_alpha_is_minus_half_the_integrated_rate():
    schedule = VPSchedule(beta_min=0.3, beta_max=7.0)
    for t in (0.0, 0.2, 0.9, 1.0):
        integral, _ = scipy.integrate.quad(schedule.beta, 0.0, t)
        assert schedule.log_alpha(t) == pytest.approx(-0.5 * integral, rel=1e-12, abs=1e-15)
    t = jnp.linspace(0.0, 1.0, 11, dtype=jnp.float32)
    alpha = jnp.exp(schedule.log_alpha(t))
    assert_tree_allclose(alpha**2 + schedule.sigma(t) ** 2, jnp.ones(11))
    assert float(schedule.sigma(jnp.float32(0.0))) == 0.0


def test_the_derivative_of_log_alpha_is_minus_half_beta():
    schedule = VPSchedule()
    t = jnp.linspace(0.05, 1.0, 7)
    assert_tree_allclose(jax.vmap(jax.grad(schedule.log_alpha))(t), -0.5 * schedule.beta(t),
                         rtol=1e-5)


def test_the_odes_name_is_the_core_class():
    assert OdesVPSchedule is VPSchedule


@pytest.mark.parametrize("T", [1, 3, 10, 1000, 4096])
def test_su_linear_alpha_bar_is_the_vp_alpha_at_t_over_T(T):
    tau = np.arange(T + 1) / T
    # Ho's linear log ᾱ, written out: the same float64 numbers, to the bit.
    assert np.array_equal(2.0 * VPSchedule().log_alpha(tau), -0.1 * tau - 9.95 * tau**2)
    coefficients = udm.schedule(T)
    np.testing.assert_allclose(coefficients.alpha_bar, np.exp(VPSchedule().log_alpha(tau)),
                               rtol=1e-12)


# sha256 of the four float64 tables (alpha, beta, alpha_bar, beta_bar), computed before the
# linear table was built from VPSchedule: the refactor changed no bit (numpy float64 on x86-64).
_TABLES = {
    (1, "linear"): "f2399e7fde9697c5fc1d38eb4e27a41e1010d698896a74ce6aecc99ad42e0564",
    (1, "cosine"): "81f7300df99708bede4b770e0ce1e25e75c75b3839e2887cd87d6b99f72eea16",
    (10, "linear"): "203fccb7173fbdcd40f5fb3cb164395530ae5796e5612b7f9bceac493e7c957d",
    (10, "cosine"): "9a848a54f6cafe1cffc0615b8eac702fffd362188bc20933b19e4217c89d32cb",
    (1000, "linear"): "292ca4837f4878d6f39d280eba0eb63fa040536a73ab6033dcbebf7521fa4644",
    (1000, "cosine"): "95a526c00979921ca0235e96acf580edaea1b54c4592008533ce476d6795fa91",
}


@pytest.mark.parametrize("T, kind", sorted(_TABLES))
def test_udm_schedule_tables_are_unchanged(T, kind):
    tables = udm.schedule(T, kind)
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in tables))
    assert digest.hexdigest() == _TABLES[T, kind]


def test_udm_linear_alpha_bar_at_ten_steps_to_the_bit():
    expected = [float.fromhex(h) for h in (
        "0x1.0000000000000p+0", "0x1.e4b8b838b0846p-1", "0x1.9f6f32426ff4ep-1",
        "0x1.425460ad489edp-1", "0x1.c4cf443eff6e0p-2", "0x1.1fee67b4de543p-2",
        "0x1.4b7f404f35a0ep-3", "0x1.598214a44cf13p-4", "0x1.4601551c380e5p-5",
        "0x1.16785576d2e08p-6", "0x1.aeaced141c602p-8")]
    assert udm.schedule(10).alpha_bar.tolist() == expected
