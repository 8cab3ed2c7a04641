"""Turn an NNX module into a pure function of its parameters (``nnx.split``/``nnx.merge``)."""

from __future__ import annotations

import dataclasses
from typing import Any

from flax import nnx


@dataclasses.dataclass(frozen=True)
class Apply:
    """``apply(params, *args) == module(*args)`` for the module whose structure is ``graphdef``.

    Equal (and hashed) by the structure, not by identity: two networks of the same architecture
    have equal ``Apply`` s, so a jitted function that takes one as static data (directly, or
    inside a predictor passed through ``equinox.filter_jit``) compiles once for both.
    """

    graphdef: nnx.GraphDef

    def __call__(self, params: nnx.State, *args: Any, **kwargs: Any) -> Any:
        return nnx.merge(self.graphdef, params)(*args, **kwargs)


def pure(module: nnx.Module) -> tuple[Apply, nnx.State]:
    """Splits ``module`` into ``(apply, params)`` with ``apply(params, *args) == module(*args)``.

    ``params`` is a plain pytree (an ``nnx.State``), so ``apply`` can be jitted,
    differentiated, sharded and checkpointed like any JAX function; the module's structure
    (the ``GraphDef``) is static data of the hashable :class:`Apply`.

    Raises:
      TypeError: if ``module`` is not a flax ``nnx.Module``.
    """
    if not isinstance(module, nnx.Module):
        raise TypeError(f"module must be a flax nnx.Module; got {type(module).__name__}")
    graphdef, params = nnx.split(module)
    return Apply(graphdef), params
