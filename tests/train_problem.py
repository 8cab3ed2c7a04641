"""A tiny regression problem shared by the training tests and their subprocess workers.

Run as a script it trains in one of two modes:
  ``slow WORKDIR``: checkpoints every 10 steps and sleeps a little each step, to be killed;
  ``multihost PORT PROCESS_ID OUT``: one of two ``jax.distributed`` processes.
"""

from __future__ import annotations

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from diffusionlab.train import TrainConfig

CONFIG = TrainConfig(steps=60, batch_size=32, learning_rate=3e-2, ema_decay=0.9, log_every=10,
                     checkpoint_every=0)
# The run's key, jax.random.key(SEED), draws the data order and the input noise (made where it
# is used: a key at import would start JAX before a worker joins its distributed run).
SEED = 3


def problem(slow: bool = False):
    """Returns ``(loss_fn, params, data)``: noisy linear regression, 256 examples in R^4."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4)).astype(np.float32)
    w_true = rng.normal(size=(4, 2)).astype(np.float32)
    y = (x @ w_true + 0.1 * rng.normal(size=(256, 2))).astype(np.float32)
    params = {"w": jnp.zeros((4, 2)), "b": jnp.zeros((2,))}

    def loss_fn(p, batch, key):
        xb, yb = batch
        if slow:
            jax.debug.callback(lambda: time.sleep(0.03))
        # Input noise drawn from the step key: resumed runs must reproduce it exactly.
        xb = xb + 0.01 * jax.random.normal(key, xb.shape)
        return jnp.sum((xb @ p["w"] + p["b"][None, :] - yb) ** 2, axis=-1)

    return loss_fn, params, (x, y)


@jax.custom_vjp
def nan_gradient_where(flag, x):
    """The identity on ``x`` (B, D) whose gradient is NaN in rows where ``flag`` (B,) > 0."""
    return x


def _forward(flag, x):
    return x, flag


def _backward(flag, g):
    return jnp.zeros_like(flag), jnp.where(flag[:, None] > 0, jnp.nan, g)


nan_gradient_where.defvjp(_forward, _backward)


def main(argv: list[str]) -> None:
    import dataclasses

    from diffusionlab.train import fit, initialize_distributed, to_host

    mode = argv[0]
    if mode == "slow":
        loss_fn, params, data = problem(slow=True)
        fit(loss_fn, params, data, config=dataclasses.replace(CONFIG, checkpoint_every=10),
            key=jax.random.key(SEED), workdir=argv[1], progress=False)
    elif mode == "multihost":
        port, process_id, out = int(argv[1]), int(argv[2]), argv[3]
        initialize_distributed(f"127.0.0.1:{port}", num_processes=2, process_id=process_id)
        loss_fn, params, data = problem()
        result = fit(loss_fn, params, data, config=CONFIG, key=jax.random.key(SEED),
                     progress=False)
        np.savez(out, loss=np.asarray(result.history["loss"]), **to_host(result.params),
                 devices=len(jax.devices()), local=len(jax.local_devices()))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
