"""Checkpoints through orbax's ``CheckpointManager``: save every N steps, resume from the newest.

Saves are synchronous (the call returns once the files are committed), so a process killed
at any moment leaves the previous checkpoint intact: orbax writes each step to a temporary
folder and renames it only when complete, and it deletes old steps only after a new one is
committed. The same holds when a save fails (a full disk): the error is a
:class:`CheckpointWriteError`, and every checkpoint written before it can still be restored.

A restore is checked before orbax reads any array. The checkpoint's stored tree (its
metadata) must hold the leaves of the template with the template's shapes, else a
:class:`CheckpointMismatchError` names the first leaf that differs, instead of a long
trace from deep inside orbax. A step whose files are truncated or missing raises a
:class:`CheckpointDamagedError`; restoring "the newest" checkpoint passes over damaged
steps to the newest intact one, with a warning that names both.
"""

from __future__ import annotations

import errno as errno_codes
import numbers
import os
import pathlib
import warnings
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from diffusionlab import _checks
from diffusionlab.train.sharding import to_host
from diffusionlab.train.step import all_finite

# orbax's name for the single item of a step folder (``<step>/default``).
_ITEM = "default"


class CheckpointMismatchError(ValueError):
    """The checkpoints in a folder belong to another model, or to a run with another config."""


class CheckpointDamagedError(OSError):
    """A checkpoint's files are unreadable (truncated, missing) or hold non-finite values."""


class CheckpointWriteError(OSError):
    """A checkpoint or a run record could not be written (the disk is full, say).

    ``errno`` is the underlying error's code (``errno.ENOSPC`` for a full disk) when known.
    The checkpoints written before the failed one are intact.
    """


def _check_step(step: Any, name: str = "step") -> int:
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise TypeError(f"{name} must be a non-negative integer, got {step!r} "
                        f"({type(step).__name__})")
    if step < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {step}")
    return int(step)


def leaf_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` of every leaf of ``tree``, named as orbax names them (``params.w``)."""
    return {".".join(ocp.tree.str_keypath(path)): tuple(np.shape(leaf) if not hasattr(leaf, "shape")
                                                      else leaf.shape)
            for path, leaf in jax.tree.leaves_with_path(tree)}


def first_mismatch(stored: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]]
                   ) -> str | None:
    """Describes the first leaf whose presence or shape differs, or None when all agree.

    Args:
      stored: ``{name: shape}`` of what is on disk (see :func:`leaf_shapes`).
      expected: ``{name: shape}`` of what is being restored, in its own leaf order.
    """
    for name, shape in expected.items():
        if name not in stored:
            # Name what the checkpoint holds in the same place, e.g. under "params.".
            top = name.split(".")[0]
            instead = [f"{other} {tuple(other_shape)}" for other, other_shape in stored.items()
                       if other.split(".")[0] == top and other not in expected][:4]
            hint = f"; the checkpoint holds {', '.join(instead)} there" if instead else ""
            return f"{name} (shape {shape}) is expected but absent from the checkpoint{hint}"
        if tuple(stored[name]) != tuple(shape):
            return (f"{name} has shape {tuple(stored[name])} in the checkpoint but shape "
                    f"{tuple(shape)} is expected")
    for name, shape in stored.items():
        if name not in expected:
            return f"{name} (shape {tuple(shape)}) is in the checkpoint but not expected"
    return None


def _reason(err: BaseException, limit: int = 240) -> str:
    """The first line of an error, shortened: tensorstore's messages run to kilobytes."""
    text = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return text if len(text) <= limit else text[:limit] + "…"


def _out_of_space(err: BaseException) -> bool:
    # tensorstore reports a full disk as a ValueError whose text carries the OS message.
    return (getattr(err, "errno", None) in (errno_codes.ENOSPC, errno_codes.EDQUOT)
            or "No space left on device" in str(err) or "Disk quota exceeded" in str(err))


class Checkpointer:
    """Saves and restores a pytree (typically a ``TrainState``) under ``directory``.

    Args:
      directory: the checkpoint folder (created if missing).
      max_to_keep: how many recent checkpoints to keep (an integer in ``[1, 2**31 - 1]``).

    Raises:
      TypeError: ``directory`` is not a path, or ``max_to_keep`` not an integer.
      ValueError: ``max_to_keep`` outside ``[1, 2**31 - 1]``, or ``directory`` exists and
        is not a folder.
    """

    def __init__(self, directory: str | os.PathLike, *, max_to_keep: int = 3):
        if not isinstance(directory, (str, os.PathLike)):
            raise TypeError(f"directory must be a str or a path, got {type(directory).__name__}")
        max_to_keep = _checks.check_int(max_to_keep, "max_to_keep", low=1)
        self.directory = pathlib.Path(directory).absolute()
        if self.directory.exists() and not self.directory.is_dir():
            raise ValueError(f"directory {self.directory} exists and is not a folder")
        # Registering the handler up front lets a fresh manager read a step's metadata
        # (to check its structure) before anything has been saved or restored.
        handler = ocp.StandardCheckpointHandler()
        registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
        registry.add(_ITEM, ocp.args.StandardSave, handler)
        registry.add(_ITEM, ocp.args.StandardRestore, handler)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=int(max_to_keep), enable_async_checkpointing=False, create=True,
            # Temporary folders of saves that never finished (killed, disk full) are
            # removed, which frees their space for the next save.
            cleanup_tmp_directories=True,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options,
                                              handler_registry=registry)

    def steps(self) -> list[int]:
        """The steps of every committed checkpoint, oldest first (damaged ones included)."""
        return sorted(int(step) for step in self._manager.all_steps())

    def latest_step(self) -> int | None:
        """The step of the newest committed checkpoint (perhaps damaged), or None."""
        steps = self.steps()
        return steps[-1] if steps else None

    def save(self, step: int, tree: Any) -> None:
        """Writes ``tree`` as the checkpoint of ``step`` (blocks until committed).

        Raises:
          TypeError, ValueError: ``step`` is not a non-negative integer.
          CheckpointWriteError: the files could not be written (a full disk, no
            permission); the checkpoints saved before are intact.
        """
        step = _check_step(step)
        try:
            self._manager.save(step, args=ocp.args.StandardSave(tree), force=True)
            self._manager.wait_until_finished()
        except Exception as err:
            if not (isinstance(err, OSError) or _out_of_space(err)):
                raise
            code = errno_codes.ENOSPC if _out_of_space(err) else getattr(err, "errno", None)
            kept = [s for s in self.steps() if s != step]
            intact = (f"the checkpoints of steps {kept} are intact" if kept
                      else "no earlier checkpoint exists")
            raise CheckpointWriteError(
                code, f"could not write checkpoint step {step} to {self.directory} "
                      f"({_reason(err)}); {intact}") from err

    def delete(self, step: int) -> None:
        """Deletes the checkpoint of ``step``.

        Raises:
          FileNotFoundError: there is no checkpoint of ``step``.
        """
        step = _check_step(step)
        if step not in self.steps():
            raise FileNotFoundError(f"no checkpoint of step {step} in {self.directory}; "
                                    f"steps: {self.steps()}")
        self._manager.delete(step)

    def stored_shapes(self, step: int) -> dict[str, tuple[int, ...]]:
        """``{name: shape}`` of the leaves stored at ``step``, read from its metadata.

        Raises:
          FileNotFoundError: there is no checkpoint of ``step``.
          CheckpointDamagedError: the metadata is missing or unreadable.
        """
        step = _check_step(step)
        if step not in self.steps():
            raise FileNotFoundError(f"no checkpoint of step {step} in {self.directory}; "
                                    f"steps: {self.steps()}")
        try:
            metadata = self._manager.item_metadata(step)
        except Exception as err:  # any failure to read the files means damage here
            raise CheckpointDamagedError(f"checkpoint step {step} in {self.directory} is "
                                         f"damaged: its metadata is unreadable ({_reason(err)})"
                                         ) from None
        tree = getattr(metadata, "tree", None)
        if tree is None:
            raise CheckpointDamagedError(f"checkpoint step {step} in {self.directory} is "
                                         "damaged: its metadata is missing")
        return leaf_shapes(tree)

    def restore(self, template: Any, step: int | None = None, *, require_finite: bool = False
                ) -> Any:
        """Restores a checkpoint shaped and sharded like ``template``.

        With ``step=None`` this is the newest intact checkpoint: damaged steps are passed
        over with a warning naming them and the step used.

        Args:
          template: a pytree of arrays with the structure, shapes and shardings to restore.
          step: which checkpoint (default: the newest intact one).
          require_finite: count a checkpoint holding NaNs or infinities as damaged.

        Returns:
          The restored pytree.

        Raises:
          FileNotFoundError: no checkpoint (of ``step``) in the folder.
          CheckpointMismatchError: the stored leaves or shapes differ from ``template``'s;
            the message names the first leaf that differs and both shapes.
          CheckpointDamagedError: the checkpoint of ``step`` (or, with ``step=None``, every
            checkpoint) is damaged.
        """
        if not isinstance(require_finite, (bool, np.bool_)):
            raise TypeError(f"require_finite must be a bool, got {require_finite!r}")
        if not jax.tree.leaves(template):
            raise ValueError("template must be a pytree holding at least one array")
        if step is not None:
            return self._restore_step(template, _check_step(step), require_finite)
        steps = self.steps()
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        damaged: list[CheckpointDamagedError] = []
        for candidate in reversed(steps):
            try:
                tree = self._restore_step(template, candidate, require_finite)
            except CheckpointDamagedError as err:
                damaged.append(err)
                continue
            if damaged:
                warnings.warn("; ".join(str(err) for err in damaged)
                              + f"; restored the newest intact checkpoint, step {candidate}",
                              stacklevel=2)
            return tree
        raise CheckpointDamagedError(f"every checkpoint in {self.directory} is damaged: "
                                     + "; ".join(str(err) for err in damaged))

    def _restore_step(self, template: Any, step: int, require_finite: bool) -> Any:
        mismatch = first_mismatch(self.stored_shapes(step), leaf_shapes(template))
        if mismatch is not None:
            raise CheckpointMismatchError(
                f"checkpoint step {step} in {self.directory} does not fit what is being "
                f"restored (another model's checkpoint?): {mismatch}")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        try:
            tree = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
        except Exception as err:  # the structure matched, so a failed read is damage
            raise CheckpointDamagedError(f"checkpoint step {step} in {self.directory} is "
                                         f"damaged ({_reason(err)})") from None
        if require_finite and not bool(to_host(all_finite(tree))):
            raise CheckpointDamagedError(f"checkpoint step {step} in {self.directory} holds "
                                         "NaN or infinite values")
        return tree

    def close(self) -> None:
        self._manager.close()
