"""What a program costs by XLA's own count of its floating-point operations.

Wall time measures one machine at one moment; the operation count of a traced program is the
algorithm's cost, the same on every run and every machine. A claim about how a cost grows
(linear in the number of contexts, say) is decided on the count, and the measured time is
reported beside it.

The count is XLA's cost analysis of the program as traced, before optimisation: nothing is
fused or removed as dead yet, and a loop's body counts once, not once per trip. For a
``lax.scan`` loop the count is therefore that of one step, plus whatever runs outside it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax

__all__ = ["operation_count"]


def operation_count(fn: Callable, *args) -> float:
    """XLA's count of the floating-point operations of ``jax.jit(fn)(*args)``, as traced.

    Nothing is compiled or run (the program is only lowered). Pass every array as an
    argument: the count is the same either way, but closed-over arrays become constants of
    the program. A loop body counts once (see the module docstring).

    Args:
      fn: a JAX-traceable function of ``args``.
      *args: pytrees of arrays (or ``jax.ShapeDtypeStruct``), as ``fn`` takes them.

    Returns:
      The count, a float; NaN where the backend gives none.

    Raises:
      TypeError: ``fn`` is not callable.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    analysis = jax.jit(fn).lower(*args).cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older jaxlibs: one dict per program
        analysis = analysis[0] if analysis else None
    flops = (analysis or {}).get("flops")
    return float(flops) if flops is not None and math.isfinite(float(flops)) else math.nan
