"""One place for the suite's tolerances and statistical assertions."""

from __future__ import annotations

import contextlib

import jax
import numpy as np

# Default tolerances by dtype: one table for the whole suite.
RTOL = {np.dtype("float32"): 1e-5, np.dtype("float64"): 1e-10}
ATOL = {np.dtype("float32"): 1e-6, np.dtype("float64"): 1e-12}


def assert_tree_allclose(actual, expected, *, rtol=None, atol=None):
    """Leaf-wise allclose with dtype-dependent default tolerances."""
    leaves_a, tree_a = jax.tree.flatten(actual)
    leaves_e, tree_e = jax.tree.flatten(expected)
    assert tree_a == tree_e, f"tree structures differ: {tree_a} vs {tree_e}"
    for a, e in zip(leaves_a, leaves_e, strict=True):
        a, e = np.asarray(a), np.asarray(e)
        assert a.shape == e.shape, f"shape {a.shape} != {e.shape}"
        dt = np.result_type(a.dtype, np.float32)
        np.testing.assert_allclose(
            a, e, rtol=RTOL.get(dt, 1e-5) if rtol is None else rtol,
            atol=ATOL.get(dt, 1e-6) if atol is None else atol,
        )


def assert_z(estimate, standard_error, expected, *, z=4.0):
    """Monte Carlo check: |estimate - expected| <= z standard errors (elementwise)."""
    estimate, standard_error, expected = map(np.asarray, (estimate, standard_error, expected))
    assert np.all(standard_error >= 0)
    score = np.abs(estimate - expected) / np.maximum(standard_error, 1e-300)
    assert np.all(score <= z), f"z-scores {score} exceed {z} (estimate {estimate}, expected {expected})"


# Lowering a traced program to MLIR is the first step of every compilation (a hit in JAX's
# persistent cache comes after it); abstract evaluations (eval_shape, used by argument checks)
# trace but never lower, so they do not count.
_LOWER_EVENT = "/jax/core/compile/jaxpr_to_mlir_module_duration"


@contextlib.contextmanager
def count_compilations():
    """Counts the programs JAX lowers for compilation inside the block (its public monitoring
    events): a list whose length is the count. Eager operations count too, the first time
    each is seen."""
    lowered = []

    def listen(event, duration, **kwargs):
        if event == _LOWER_EVENT:
            lowered.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        yield lowered
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)


def assert_compiles_once(fn, calls):
    """Calls ``fn`` with each argument tuple of ``calls`` (built beforehand) and asserts that
    only the first call compiles anything: the later ones, with new values of the same shapes,
    reuse its programs."""
    calls = list(calls)
    assert len(calls) >= 2, "need a first call and at least one more"
    jax.block_until_ready(fn(*calls[0]))
    for i, args in enumerate(calls[1:], start=1):
        with count_compilations() as compiled:
            jax.block_until_ready(fn(*args))
        assert not compiled, f"call {i} compiled {len(compiled)} new program(s); expected none"
