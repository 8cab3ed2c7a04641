"""Data parallelism through ``jax.sharding``: one mesh axis ``"data"`` over every device.

Parameters and optimizer state are replicated; each batch is split along its leading axis.
The same code runs on one CPU, on 8 virtual CPU devices, on a GPU node, or on several
hosts after :func:`initialize_distributed`: the mesh spans ``jax.devices()``, which is
global once ``jax.distributed`` is initialised.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from diffusionlab import _checks

DATA_AXIS = "data"


def check_devices(devices: Any) -> list | None:
    """``devices`` as a list of ``jax.Device``, or None (every device) when it is None.

    Raises:
      TypeError: ``devices`` is not an iterable of ``jax.Device`` objects.
      ValueError: ``devices`` is empty or names one device twice.
    """
    if devices is None:
        return None
    if isinstance(devices, (str, bytes, jax.Device)) or not isinstance(devices, Iterable):
        raise TypeError(f"devices must be None (every device) or a list of jax.Device objects "
                        f"(from jax.devices()); got {type(devices).__name__}")
    devices = list(devices)
    if not devices:
        raise ValueError("devices must be None (every device) or a non-empty list of devices")
    if not all(isinstance(device, jax.Device) for device in devices):
        raise TypeError("devices must be jax.Device objects (from jax.devices())")
    if len(set(devices)) != len(devices):
        raise ValueError(f"devices must be distinct; got {devices}")
    return devices


def data_mesh(devices=None) -> Mesh:
    """A 1-D mesh with axis ``"data"`` over ``devices`` (default: all, on every host).

    Raises:
      TypeError, ValueError: ``devices`` is neither None nor a non-empty list of distinct
        ``jax.Device`` objects.
    """
    devices = check_devices(devices)
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding that keeps a full copy on every device of ``mesh``."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Sharding that splits the leading (batch) axis across the ``"data"`` axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_tree(tree: Any, name: str) -> None:
    """Raises TypeError naming ``name`` (and the leaf) for a leaf that is not a numeric array."""
    for path, leaf in jax.tree.leaves_with_path(tree):
        dtype = getattr(leaf, "dtype", None)
        if dtype is None and isinstance(leaf, (int, float, complex)):
            continue
        if dtype is None or not (jnp.issubdtype(dtype, jnp.number) or jnp.issubdtype(dtype, jnp.bool_)
                                 or jnp.issubdtype(dtype, jax.dtypes.prng_key)):
            raise TypeError(f"{name}{jax.tree_util.keystr(path)} must be a numeric array; "
                            f"got {type(leaf).__name__}"
                            + (f" of dtype {dtype}" if dtype is not None else ""))


def put_replicated(tree: Any, mesh: Mesh) -> Any:
    """Places identical host values on every device of ``mesh`` (every process passes the same).

    Works across hosts: each process supplies the full value and JAX keeps only the
    shards on its own devices.

    Raises:
      TypeError: ``tree`` has a leaf that is not a numeric array, or ``mesh`` is not a
        ``jax.sharding.Mesh`` (see :func:`data_mesh`).
    """
    check_tree(tree, "tree")
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh (from data_mesh()); "
                        f"got {type(mesh).__name__}")
    sharding = replicated(mesh)

    def put(leaf):
        leaf = np.asarray(leaf) if not isinstance(leaf, jax.Array) else leaf
        if jax.process_count() == 1:
            return jax.device_put(leaf, sharding)
        host = np.asarray(jax.device_get(leaf)) if isinstance(leaf, jax.Array) else leaf
        return jax.make_array_from_process_local_data(sharding, host, host.shape)

    return jax.tree.map(put, tree)


def to_host(tree: Any) -> Any:
    """Copies a (replicated) pytree of global arrays back to NumPy on this process."""

    def get(leaf):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            return np.asarray(leaf.addressable_data(0))
        return np.asarray(jax.device_get(leaf))

    return jax.tree.map(get, tree)


def initialize_distributed(
    coordinator_address: str, *, num_processes: int, process_id: int, cpu_collectives: str = "gloo"
) -> None:
    """Joins a multi-process JAX run (one call per process, before any other JAX work).

    Args:
      coordinator_address: ``"host:port"`` of process 0.
      num_processes: how many processes take part.
      process_id: this process's index in ``[0, num_processes)``.
      cpu_collectives: the CPU collective backend (``"gloo"``), used when devices are CPUs.

    Raises:
      TypeError: ``coordinator_address`` or ``cpu_collectives`` is not a string, or
        ``num_processes`` or ``process_id`` is not an integer.
      ValueError: ``num_processes < 1`` or ``process_id`` outside ``[0, num_processes)``.
    """
    for name, value in (("coordinator_address", coordinator_address),
                        ("cpu_collectives", cpu_collectives)):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a string; got {type(value).__name__}")
    num_processes = _checks.check_int(num_processes, "num_processes", low=1)
    process_id = _checks.check_int(process_id, "process_id", low=0, high=num_processes - 1)
    jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    jax.distributed.initialize(
        coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
    )
