"""Makes JAX strict and gives the suite 8 virtual CPU devices.

XLA reads the device count once, at backend start, so it is set before jax is imported.
"""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

# Implicit rank promotion hides shape bugs: make it an error in the suite.
jax.config.update("jax_numpy_rank_promotion", "raise")
