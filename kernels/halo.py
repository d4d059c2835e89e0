"""What the dispatch needs to know of a partitioned graph (one rank's share of a population).

A rank of a partitioned population (:mod:`lpm.distributed`) holds its agents and a local graph whose
columns also address halo agents: the remote followees its agents read, whose states arrive from
their owners every time an op reads them. The dispatch functions of :mod:`lpm.kernels.dispatch`
recognise a :class:`HaloGraph`, extend the agent tensors with the halo (:meth:`HaloGraph.extend`),
run the usual op on :attr:`HaloGraph.local`, and keep the owned rows (:meth:`HaloGraph.own`), so the
dynamics modules run unchanged on a rank. The exchange itself (collectives, their gradients) lives
in :mod:`lpm.distributed.halo`; the kernels layer only sees this interface.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from torch import Tensor

if TYPE_CHECKING:
    from lpm.graph import Graph

__all__ = ["HaloGraph"]


class HaloGraph:
    """One rank's share of a partitioned follower graph (subclassed by
    :class:`lpm.distributed.PartitionedGraph`).

    Shapes:
        local: a graph of ``n + h`` nodes (``n`` owned agents first, then ``h`` halo agents, whose rows
            are empty).
    """

    local: "Graph"

    @property
    def num_nodes(self) -> int:
        """``n``, the agents this rank owns (what its state holds)."""
        raise NotImplementedError

    def extend(self, x: Optional[Tensor]) -> Optional[Tensor]:
        """``x`` followed by the halo agents' values, received from their owners (``None`` stays ``None``).

        Shapes:
            x: ``(B, n, ...)``; returns ``(B, n + h, ...)``.
        """
        raise NotImplementedError

    def own(self, y: Tensor) -> Tensor:
        """The owned agents' rows of ``y``: ``(B, n + h, ...) -> (B, n, ...)``."""
        return y[:, : self.num_nodes]

    def reduce(self, y: Tensor) -> Tensor:
        """Per-agent sums computed on the extended index space, with the halo rows sent to their owners
        and added there: ``(B, n + h, ...) -> (B, n, ...)`` (the adjoint of :meth:`extend`)."""
        raise NotImplementedError
