"""Makes JAX strict, gives the suite 8 virtual CPU devices, fast-compiling XLA flags and one
compiled-program cache; ``train.fit`` uses one of the devices unless told otherwise.

XLA reads the device count once, at backend start, so it is set before jax is imported. The
compiled-program cache is shared by the xdist workers and the experiment processes that the
end-to-end test starts (they inherit the environment); it is a fresh folder per session
unless ``JAX_COMPILATION_CACHE_DIR`` is already set, so nothing depends on an earlier run.
"""

import atexit
import os
import re
import shutil
import tempfile

import pytest

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
if "xla_backend_optimization_level" not in os.environ["XLA_FLAGS"]:
    # The suite's arrays are tiny: its time is mostly XLA compiling thousands of programs,
    # which LLVM at -O0 does in 25-40% less time (test_odes + test_odes_generate +
    # test_lm: 197 s -> 144 s; test_fuzz: 45 s -> 28 s). Results agree up to rounding, which
    # every tolerance covers. Set the flag yourself to test another level.
    os.environ["XLA_FLAGS"] += " --xla_backend_optimization_level=0"
if "xla_cpu_use_fusion_emitters" not in os.environ["XLA_FLAGS"]:
    # XLA:CPU's older elemental emitters compile a small program in about 30% less time than
    # its MLIR fusion emitters (200 one-op programs: 20.6 -> 14.0 ms each; test_odes +
    # test_weakform: 70 s -> 46 s). The flag exists in the locked jaxlib; XLA aborts at start
    # on a flag it does not know, so a jaxlib without it shows here at once.
    os.environ["XLA_FLAGS"] += " --xla_cpu_use_fusion_emitters=false"
# For the processes the suite starts (experiments, notebook kernels): the same flags on one
# CPU device, as on a user's machine (8 virtual devices would shard every step 8 ways).
ONE_DEVICE_XLA_FLAGS = re.sub(r"--xla_force_host_platform_device_count=\d+", "",
                              os.environ["XLA_FLAGS"]).strip()
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    # The xdist controller creates the folder; its workers inherit the variable.
    _folder = tempfile.mkdtemp(prefix="diffusionlab-xla-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _folder
    atexit.register(shutil.rmtree, _folder, ignore_errors=True)
# Subprocesses that do not call enable_compilation_cache (notebook kernels) cache everything too.
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import jax  # noqa: E402

from diffusionlab.cache import enable_compilation_cache  # noqa: E402
from diffusionlab.train import loop as train_loop  # noqa: E402

enable_compilation_cache(os.environ["JAX_COMPILATION_CACHE_DIR"])

# Implicit rank promotion hides shape bugs: make it an error in the suite.
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(autouse=True)
def _fit_on_one_device(request, monkeypatch):
    """``train.fit`` without ``devices`` trains on one device here, as on a one-device machine:
    split 8 ways over two cores, a 200-step fit takes 3x as long (5.0 s against 1.7 s). Tests
    of the sharded default are marked ``all_devices``; the others pass ``devices``."""
    if request.node.get_closest_marker("all_devices") is None:
        monkeypatch.setattr(train_loop, "_default_devices", lambda: jax.devices()[:1])


def pytest_collection_modifyitems(config, items):
    """Runs the longest test (the whole ``--all --quick`` run, 4 to 5 minutes) first, so that
    one xdist worker works on it while the other takes the rest of the suite."""
    items.sort(key=lambda item: item.name != "test_all_quick_end_to_end")
