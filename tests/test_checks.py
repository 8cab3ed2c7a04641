"""The shared argument checks: what they accept, and errors that name the argument."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffusionlab import _checks
from diffusionlab.weakform import _args


def test_single_key_accepts_one_typed_or_raw_key():
    typed, raw = jax.random.key(0), jax.random.PRNGKey(0)
    assert _checks.single_key(typed) is typed
    assert _checks.single_key(raw) is raw


@pytest.mark.parametrize("key, error, match", [
    (jax.random.split(jax.random.key(0), 3), ValueError, "probe_key must be a single PRNG key"),
    (jnp.zeros((3, 2), jnp.uint32), ValueError, "batch of keys of shape"),
    (7, TypeError, "probe_key must be a JAX PRNG key"),
])
def test_single_key_rejects_batches_and_non_keys(key, error, match):
    with pytest.raises(error, match=match):
        _checks.single_key(key, "probe_key")


def test_check_bool():
    assert _checks.check_bool(np.bool_(True), "flag") is True
    for bad in (1, "yes", None, np.array([True])):
        with pytest.raises(TypeError, match="flag must be True or False"):
            _checks.check_bool(bad, "flag")


def test_the_weak_form_names_are_the_shared_checks():
    assert _args.single_key is _checks.single_key
    assert _args.check_bool is _checks.check_bool
