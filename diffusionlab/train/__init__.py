"""Training: one jitted, data-parallel, checkpointed step and the loop around it."""

from diffusionlab.train.checkpoint import (
    CheckpointDamagedError,
    Checkpointer,
    CheckpointMismatchError,
    CheckpointWriteError,
)
from diffusionlab.train.loop import (
    FitResult,
    NonFiniteLossError,
    NonFiniteTrainingError,
    TrainConfig,
    fit,
    make_optimizer,
)
from diffusionlab.train.sharding import (
    data_mesh,
    initialize_distributed,
    put_replicated,
    to_host,
)
from diffusionlab.train.step import (
    NON_FINITE_PARTS,
    TrainState,
    all_finite,
    batch_indices,
    init_state,
    make_train_step,
)

__all__ = [
    "NON_FINITE_PARTS", "CheckpointDamagedError", "CheckpointMismatchError", "CheckpointWriteError",
    "Checkpointer", "FitResult", "NonFiniteLossError", "NonFiniteTrainingError", "TrainConfig",
    "TrainState", "all_finite", "batch_indices", "data_mesh", "fit", "init_state",
    "initialize_distributed", "make_optimizer", "make_train_step", "put_replicated", "to_host",
]
