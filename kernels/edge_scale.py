"""What the edge aggregations accept as a per-scenario edge multiplier besides a dense tensor."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor

__all__ = ["EdgeScale"]


@runtime_checkable
class EdgeScale(Protocol):
    """A ``(B, E)`` edge multiplier kept in another form (e.g. factored, as
    :class:`lpm.interventions.EdgeGates` keeps edge blocking), readable densely or at index pairs.

    The dense aggregations read :meth:`dense`; the sparse push reads :meth:`take` at the (scenario,
    edge) pairs it touches, and both must give the same numbers bit for bit.
    """

    def dense(self) -> Tensor:
        """``(B, E)`` multipliers."""
        ...

    def take(self, scenario: Tensor, edge: Tensor) -> Tensor:
        """``(K,)`` multipliers at the pairs ``(scenario[k], edge[k])``, both ``(K,)`` int64."""
        ...
