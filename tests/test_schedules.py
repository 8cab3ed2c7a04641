"""The shared VP schedule: its closed forms, and Su's discrete linear schedule as its samples."""

import math

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


# (sum, index-weighted sum with weights t/T) of each of the four float64 tables (alpha, beta,
# alpha_bar, beta_bar), from the tables as they were before the linear one was built from
# VPSchedule. numpy's exp and expm1 differ in the last bit or two between CPUs (SIMD code
# paths), and T = 1000 accumulates that through the cumulative product, so the pin is 1e-12
# relative: far below any change of formula, far above rounding.
_TABLE_SUMS = {
    (1, "linear"): (
        (1.0065715864949318, 0.006571586494931831),
        (0.9999784068923386, 0.9999784068923386),
        (1.0065715864949318, 0.006571586494931831),
        (0.9999784068923386, 0.9999784068923386),
    ),
    (1, "cosine"): (
        (1.0316227766016839, 0.031622776601683805),
        (0.999499874937461, 0.999499874937461),
        (1.0316227766016839, 0.031622776601683805),
        (0.999499874937461, 0.999499874937461),
    ),
    (10, "linear"): (
        (7.300245364744995, 2.9563841598738394),
        (7.33104117113196, 4.5245578807620195),
        (4.420626808227695, 0.9731563632755885),
        (8.52237346334405, 5.20959484062872),
    ),
    (10, "cosine"): (
        (8.484562920135476, 3.4414645411741844),
        (5.489609326576634, 3.730283208054417),
        (6.82969980810566, 2.283246239260277),
        (6.896391236991427, 4.574614588405405),
    ),
    (1000, "linear"): (
        (995.9917086201281, 497.16833839229474),
        (94.43779576342392, 56.50764062364092),
        (392.24963590869913, 97.87667450945972),
        (806.0565808125389, 470.63877009868236),
    ),
    (1000, "cosine"): (
        (993.9891231541391, 494.18081203032415),
        (76.54497580753106, 54.23902359147226),
        (634.2621068853894, 229.96720785879663),
        (641.9485724099358, 407.13709097289166),
    ),
}


@pytest.mark.parametrize("T, kind", sorted(_TABLE_SUMS))
def test_udm_schedule_tables_are_unchanged(T, kind):
    weights = np.arange(T + 1) / T
    got = [(math.fsum(a), math.fsum(weights * a)) for a in udm.schedule(T, kind)]
    np.testing.assert_allclose(got, _TABLE_SUMS[T, kind], rtol=1e-12, atol=0)


def test_udm_linear_alpha_bar_at_ten_steps():
    # the values of the tables above, to 1e-14 relative (a few units in the last place: exp
    # differs in the last bit or two between CPUs)
    expected = [float.fromhex(h) for h in (
        "0x1.0000000000000p+0", "0x1.e4b8b838b0846p-1", "0x1.9f6f32426ff4ep-1",
        "0x1.425460ad489edp-1", "0x1.c4cf443eff6e0p-2", "0x1.1fee67b4de543p-2",
        "0x1.4b7f404f35a0ep-3", "0x1.598214a44cf13p-4", "0x1.4601551c380e5p-5",
        "0x1.16785576d2e08p-6", "0x1.aeaced141c602p-8")]
    np.testing.assert_allclose(udm.schedule(10).alpha_bar, expected, rtol=1e-14, atol=0)