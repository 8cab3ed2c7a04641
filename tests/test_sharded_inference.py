"""Inference on a batch split over an 8-device mesh equals the single-device result and stays
split: each check runs the same call once on one device and once with its batch placed by
``NamedSharding(mesh, P("data"))``, then compares the values and the output's placement.

``nbce.nbce_generate`` is not covered: its inputs are Python token lists, padded into one
batch of contexts on the host, and its output is one shared answer, so there is no batch axis
for a caller to shard.

The second part checks :func:`diffusionlab.odes.sharded_velocity`, which splits the data set
(not the queries) over the devices, against the unsharded exact fields in float64.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from diffusionlab import odes, udm
from diffusionlab import weakform as wf
from diffusionlab.odes import flows, gravity, isotropic

pytestmark = pytest.mark.skipif(jax.device_count() < 8,
                                reason="needs 8 devices (tests/conftest.py sets 8 CPU devices)")

DEVICES = 8
PER_DEVICE = 2
B = DEVICES * PER_DEVICE
KEY = jax.random.key(0)
FLOAT_TOL = dict(rtol=1e-5, atol=1e-6)  # float32, same arithmetic per row; reductions reorder


def _mesh():
    return Mesh(np.asarray(jax.devices()[:DEVICES]), ("data",))


def _split(x, mesh):
    return jax.device_put(x, NamedSharding(mesh, PartitionSpec("data")))


def _one(x):
    return jax.device_put(x, jax.devices()[0])


def _assert_batch_split(out, mesh):
    """``out`` is laid out as ``P("data")``: 8 shards, each ``B / 8`` rows of the full width."""
    assert out.sharding.is_equivalent_to(NamedSharding(mesh, PartitionSpec("data")), out.ndim), \
        out.sharding
    shards = out.addressable_shards
    assert len(shards) == DEVICES
    assert {shard.device for shard in shards} == set(mesh.devices.flat)
    for shard in shards:
        assert shard.data.shape == (out.shape[0] // DEVICES,) + out.shape[1:]


# --------------------------------------------------------------------------- udm.sample


def _halve(x, t):
    return 0.5 * x


def _table_logits(table, x, t):
    # Logits looked up from a table (no matrix product), shifted by the time.
    return table[x] + 0.1 * t[:, None, None].astype(table.dtype)


def test_udm_sample_hot_keeps_the_batch_split():
    mesh = _mesh()
    process = udm.HotDiffusion(T=6, event_shape=(3,))
    x_T = jax.random.normal(KEY, (B, 3))
    one = udm.sample(process, _halve, _one(x_T), key=jax.random.key(1))
    out = udm.sample(process, _halve, _split(x_T, mesh), key=jax.random.key(1))
    np.testing.assert_allclose(np.asarray(out), np.asarray(one), **FLOAT_TOL)
    assert np.std(np.asarray(one)) > 0.1  # the sample is not trivial
    _assert_batch_split(out, mesh)


def test_udm_sample_discrete_keeps_the_batch_split():
    mesh = _mesh()
    process = udm.EditDiffusion(length=6, vocab=4)
    table = jax.random.normal(jax.random.key(3), (4, 4))
    predictor = jax.tree_util.Partial(_table_logits, table)
    x_T = process.prior(jnp.zeros((B, 6), jnp.int32), key=jax.random.key(2))
    one = udm.sample(process, predictor, _one(x_T), key=jax.random.key(4))
    out = udm.sample(process, predictor, _split(x_T, mesh), key=jax.random.key(4))
    # Token draws from the same key: equal token for token (gathers, no matrix product).
    np.testing.assert_array_equal(np.asarray(out), np.asarray(one))
    assert np.any(np.asarray(one) != np.asarray(x_T))
    _assert_batch_split(out, mesh)


# ------------------------------------------------------------------- odes.generate, likelihood


DATA = jax.random.normal(jax.random.key(5), (5, 2))


def _contract(x, t):
    return -x / (1.0 + t)


def test_generate_keeps_the_batch_split():
    mesh = _mesh()
    # (The exact fields themselves are checked below; a cheap field keeps compilation short.)
    x_T = jax.random.normal(jax.random.key(6), (B, 2))
    kwargs = dict(t_end=0.2, solver="heun", steps=2, save_trajectory=1)
    one = odes.generate(_contract, _one(x_T), 2.0, **kwargs)
    out = odes.generate(_contract, _split(x_T, mesh), 2.0, **kwargs)
    np.testing.assert_allclose(np.asarray(out.samples), np.asarray(one.samples), **FLOAT_TOL)
    assert int(out.nfe) == int(one.nfe)
    _assert_batch_split(out.samples, mesh)
    # The snapshots (2, B, d): split along the batch axis, the snapshot axis whole.
    assert out.xs.sharding.is_equivalent_to(
        NamedSharding(mesh, PartitionSpec(None, "data")), out.xs.ndim)
    np.testing.assert_allclose(np.asarray(out.xs), np.asarray(one.xs), **FLOAT_TOL)


def test_log_likelihood_keeps_the_batch_split():
    mesh = _mesh()
    x = jax.random.normal(jax.random.key(7), (B, 2))
    kwargs = dict(log_prior=flows.standard_normal_log_density, solver="heun", steps=2)
    one = odes.log_likelihood(_contract, _one(x), 1.0, **kwargs)
    out = odes.log_likelihood(_contract, _split(x, mesh), 1.0, **kwargs)
    np.testing.assert_allclose(np.asarray(out.log_prob), np.asarray(one.log_prob), **FLOAT_TOL)
    np.testing.assert_allclose(np.asarray(out.x_T), np.asarray(one.x_T), **FLOAT_TOL)
    _assert_batch_split(out.log_prob, mesh)
    _assert_batch_split(out.x_T, mesh)


# ------------------------------------------------------------------------- exact fields


@pytest.mark.parametrize("field", ["gravity", "gaussian"])
def test_exact_fields_keep_the_batch_split(field):
    mesh = _mesh()
    x = jax.random.normal(jax.random.key(8), (B, 2))
    t = jnp.linspace(0.1, 1.0, B)

    def velocity(x, t):
        if field == "gravity":
            return gravity.velocity(x, t, DATA)
        return isotropic.marginal_velocity(isotropic.GaussianCDF(), x, t, DATA)

    one = velocity(_one(x), _one(t))
    out = velocity(_split(x, mesh), _split(t, mesh))
    np.testing.assert_allclose(np.asarray(out), np.asarray(one), **FLOAT_TOL)
    _assert_batch_split(out, mesh)


# --------------------------------------------------------------------------- weak form


WF_SAMPLES = 64


def _ou_sampler(sharding):
    # x_t = a x_0 + b ε, x_0 ~ N(0, 4 I), a = e^{-t/2}, b = sqrt(1 - a²): the OU marginals.
    def sampler(t, key):
        a = jnp.exp(-0.5 * t)
        k0, k1 = jax.random.split(key)
        x = (a * 2.0 * jax.random.normal(k0, (WF_SAMPLES, 2))
             + jnp.sqrt(1 - a * a) * jax.random.normal(k1, (WF_SAMPLES, 2)))
        return x if sharding is None else jax.lax.with_sharding_constraint(x, sharding)
    return sampler


def _ou_velocity(x, t):  # the probability flow: f - g²/2 ∇log p_t, f = -x/2, g² = 1
    a2 = jnp.exp(-t)
    return -0.5 * x + 0.5 * x / (4.0 * a2 + 1.0 - a2)


def test_verify_continuity_with_a_split_sample_gives_the_same_report():
    # The report is a host-side summary (moments per test function and time), so there is no
    # batch output to keep split; the check is that a sampler returning a split batch gives
    # the moments of the single-device run. Sums over samples reorder, and the central
    # difference in t divides that float32 rounding by 2h = 2e-3: measured 4e-5 of the scale.
    mesh = _mesh()
    kwargs = dict(times=jnp.array([0.5]), key=jax.random.key(9), num_samples=WF_SAMPLES)
    one = wf.verify_continuity(_ou_velocity, sampler=_ou_sampler(None), **kwargs)
    out = wf.verify_continuity(
        _ou_velocity, sampler=_ou_sampler(NamedSharding(mesh, PartitionSpec("data"))), **kwargs)
    assert one.passed and out.passed
    scale = np.max(np.abs(one.lhs))
    for name in ("lhs", "rhs", "residual"):
        np.testing.assert_allclose(getattr(out, name), getattr(one, name), rtol=0,
                                   atol=2e-4 * scale, err_msg=name)
    np.testing.assert_allclose(out.standard_error, one.standard_error, rtol=1e-3)
    assert abs(out.max_abs_z - one.max_abs_z) < 1e-3


# ------------------------------------------------------- the data set split: sharded_velocity


@pytest.mark.parametrize("field", ["gravity", isotropic.GaussianCDF(), isotropic.TanhCDF()],
                         ids=["gravity", "gaussian", "tanh"])
@pytest.mark.parametrize("n", [13, 3], ids=["uneven", "fewer-than-devices"])
def test_sharded_velocity_equals_the_unsharded_field(field, n):
    with jax.enable_x64(True):
        mesh = _mesh()
        data = jax.random.normal(jax.random.key(10), (n, 3), jnp.float64)
        x = jax.random.normal(jax.random.key(11), (6, 3), jnp.float64)
        x = x.at[0].set(data[1])  # one query on a source: its limit weight
        t = jnp.array([0.05, 0.1, 0.3, 0.7, 1.5, 4.0])
        if field == "gravity":
            expected = gravity.velocity(x, t, data)
        else:
            expected = isotropic.marginal_velocity(field, x, t, data)
        out = odes.sharded_velocity(field, data, x, t, mesh=mesh, block=2)
        assert out.dtype == jnp.float64
        assert np.all(np.isfinite(np.asarray(out)))
        np.testing.assert_allclose(np.asarray(out), np.asarray(expected), rtol=1e-9, atol=1e-12)
        assert out.sharding.is_fully_replicated


def test_sharded_velocity_of_a_split_data_set_is_the_global_field():
    # Sources on one device only would give another field: the combination must see them all.
    with jax.enable_x64(True):
        mesh = _mesh()
        data = jnp.concatenate([jnp.zeros((8, 1)), jnp.full((8, 1), 10.0)])  # 2 per device
        x = jnp.array([[4.0], [6.0]])
        out = odes.sharded_velocity("gravity", _split(data, mesh), x, 1.0, mesh=mesh)
        np.testing.assert_allclose(np.asarray(out), np.asarray(gravity.velocity(x, 1.0, data)),
                                   rtol=1e-9, atol=1e-12)
        # Mirror images about x = 5 (the sources are symmetric): opposite velocities.
        np.testing.assert_allclose(float(out[0, 0]), -float(out[1, 0]), rtol=1e-9)


@pytest.mark.parametrize("call, error, match", [
    (lambda m: odes.sharded_velocity("coulomb", DATA, DATA, 1.0, mesh=m), ValueError, "field"),
    (lambda m: odes.sharded_velocity(3, DATA, DATA, 1.0, mesh=m), TypeError, "field"),
    (lambda m: odes.sharded_velocity("gravity", DATA, DATA, 1.0, mesh=None), TypeError, "mesh"),
    (lambda m: odes.sharded_velocity("gravity", DATA, DATA, 1.0, mesh=m, axis_name="model"),
     ValueError, "axis_name"),
    (lambda m: odes.sharded_velocity("gravity", DATA, DATA[:, :1], 1.0, mesh=m), ValueError,
     "dimension"),
    (lambda m: odes.sharded_velocity("gravity", DATA, DATA, -1.0, mesh=m), ValueError, "t"),
])
def test_sharded_velocity_rejects_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call(_mesh())
