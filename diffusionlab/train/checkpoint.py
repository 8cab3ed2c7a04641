"""Checkpoints through orbax's ``CheckpointManager``: save every N steps, resume from the latest.

Saves are synchronous (the call returns once the files are committed), so a process killed
at any moment leaves the previous checkpoint intact; orbax writes each step to a temporary
folder and renames it only when complete.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    """Saves and restores a pytree (typically a ``TrainState``) under ``directory``.

    Args:
      directory: the checkpoint folder (created if missing).
      max_to_keep: how many recent checkpoints to keep.
    """

    def __init__(self, directory: str | pathlib.Path, *, max_to_keep: int = 3):
        self.directory = pathlib.Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, enable_async_checkpointing=False, create=True
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        """The step of the newest complete checkpoint, or None."""
        return self._manager.latest_step()

    def save(self, step: int, tree: Any) -> None:
        """Writes ``tree`` as the checkpoint of ``step`` (blocks until committed)."""
        self._manager.save(int(step), args=ocp.args.StandardSave(tree), force=True)
        self._manager.wait_until_finished()

    def restore(self, template: Any, step: int | None = None) -> Any:
        """Restores the checkpoint of ``step`` (default: latest) shaped and sharded like ``template``."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))

    def close(self) -> None:
        self._manager.close()
