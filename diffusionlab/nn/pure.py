"""Turn an NNX module into a pure function of its parameters (``nnx.split``/``nnx.merge``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flax import nnx


def pure(module: nnx.Module) -> tuple[Callable[..., Any], nnx.State]:
    """Splits ``module`` into ``(apply, params)`` with ``apply(params, *args) == module(*args)``.

    ``params`` is a plain pytree (an ``nnx.State``), so ``apply`` can be jitted,
    differentiated, sharded and checkpointed like any JAX function; the module's structure
    (the ``GraphDef``) is closed over as static data.
    """
    if not isinstance(module, nnx.Module):
        raise TypeError(f"module must be a flax nnx.Module; got {type(module).__name__}")
    graphdef, params = nnx.split(module)

    def apply(params: nnx.State, *args: Any, **kwargs: Any) -> Any:
        return nnx.merge(graphdef, params)(*args, **kwargs)

    return apply, params
