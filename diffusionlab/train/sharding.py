"""Data parallelism through ``jax.sharding``: one mesh axis ``"data"`` over every device.

Parameters and optimizer state are replicated; each batch is split along its leading axis.
The same code runs on one CPU, on 8 virtual CPU devices, on a GPU node, or on several
hosts after :func:`initialize_distributed`: the mesh spans ``jax.devices()``, which is
global once ``jax.distributed`` is initialised.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def data_mesh(devices=None) -> Mesh:
    """A 1-D mesh with axis ``"data"`` over ``devices`` (default: all, on every host)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding that keeps a full copy on every device of ``mesh``."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Sharding that splits the leading (batch) axis across the ``"data"`` axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def put_replicated(tree: Any, mesh: Mesh) -> Any:
    """Places identical host values on every device of ``mesh`` (every process passes the same).

    Works across hosts: each process supplies the full value and JAX keeps only the
    shards on its own devices.
    """
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
    """
    if not 0 <= process_id < num_processes:
        raise ValueError(f"process_id must lie in [0, {num_processes}), got {process_id}")
    jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    jax.distributed.initialize(
        coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
    )
