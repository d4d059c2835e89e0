"""One rank's share of a partitioned graph: its agents, their CSR rows, and the halo maps.

Given the owner of every agent (:mod:`lpm.distributed.partition`), rank ``r`` holds

* its agents ``A_r`` (global ids, ascending), local ids ``0 .. n_r - 1``;
* its halo: the remote followees its agents read, ordered by owning rank and then global id, local ids
  ``n_r .. n_r + h_r - 1`` (so what arrives from rank ``s`` is one contiguous block);
* the CSR rows of its agents over the ``n_r + h_r`` local ids (rows of halo agents are empty), each row
  in the single-process edge order, so every sum over a row adds the same terms in the same order;
* what to send: for each other rank, the local ids it needs from this one, in that rank's halo order.

The layout is computed from the whole graph on every rank (each needs the owners of its followees
and the followees of the other ranks' agents it owns). That suits populations whose graph fits one
host; a 10^9-agent graph would be sharded offline and each rank's layout loaded (not done here).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lpm.errors import ConfigError
from lpm.graph import Graph

from .partition import check_owner

__all__ = ["RankLayout", "rank_layout"]


@dataclass(frozen=True, eq=False)
class RankLayout:
    """Rank ``rank``'s agents, local graph and halo maps (all on the CPU; see :meth:`to`).

    Shapes:
        agents: ``(n,)`` int64 global ids of the owned agents, ascending.
        halo: ``(h,)`` int64 global ids of the halo agents, by owning rank then id.
        local: a :class:`~lpm.graph.Graph` of ``n + h`` nodes; rows ``n ..`` are empty.
        send_index: ``(S,)`` int64 local ids sent, grouped by destination rank.
        send_counts, recv_counts: ``(P,)`` per-rank counts (Python ints in lists): what goes to and
            comes from each rank; ``sum(recv_counts) == h``.
    """

    rank: int
    parts: int
    num_agents: int
    agents: Tensor
    halo: Tensor
    local: Graph
    send_index: Tensor
    send_counts: list[int]
    recv_counts: list[int]

    @property
    def num_local(self) -> int:
        return int(self.agents.numel())

    def to(self, device: torch.device | str) -> "RankLayout":
        return RankLayout(self.rank, self.parts, self.num_agents, self.agents.to(device), self.halo.to(device),
                          self.local.to(device), self.send_index.to(device), self.send_counts, self.recv_counts)


def rank_layout(graph: Graph, owner: Tensor, rank: int, parts: int) -> RankLayout:
    """The layout of rank ``rank`` of ``parts`` under the partition ``owner``.

    Args:
        graph: the whole follower graph.
        owner: ``(N,)`` rank of each agent.
        rank: this rank, in ``[0, parts)``.
        parts: number of ranks.

    Raises:
        ConfigError: a bad ``owner``, ``rank`` or ``parts``; a rank that owns no agent.
    """
    if isinstance(parts, bool) or not isinstance(parts, int) or parts < 1:
        raise ConfigError(f"Expected 'parts' to be an int >= 1 (got {parts!r})")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < parts:
        raise ConfigError(f"Expected 'rank' in [0, {parts}) (got {rank!r})")
    owner = check_owner(graph, owner, parts)
    graph = graph.to("cpu")
    n_all = graph.num_nodes
    rowptr, col = graph.rowptr.long(), graph.col.long()
    agents = (owner == rank).nonzero()[:, 0]
    if agents.numel() == 0:
        raise ConfigError(f"Expected every rank to own agents (got none for rank {rank} of {parts})")
    start, degree = rowptr[agents], rowptr[agents + 1] - rowptr[agents]
    row_of_edge = torch.repeat_interleave(torch.arange(agents.numel()), degree)
    first = torch.cumsum(degree, 0) - degree
    edge = start[row_of_edge] + torch.arange(row_of_edge.numel()) - first[row_of_edge]  # global edge ids, in order
    followee = col[edge]
    remote = owner[followee] != rank
    halo = _by_owner(torch.unique(followee[remote]), owner, n_all)
    local_id = torch.full((n_all,), -1, dtype=torch.int64)
    local_id[agents] = torch.arange(agents.numel())
    local_id[halo] = agents.numel() + torch.arange(halo.numel())
    n_ext = agents.numel() + halo.numel()
    local_rowptr = torch.zeros(n_ext + 1, dtype=torch.int64)
    local_rowptr[1:agents.numel() + 1] = torch.cumsum(degree, 0)
    local_rowptr[agents.numel() + 1:] = local_rowptr[agents.numel()]
    dtype = graph.col.dtype
    local = Graph(num_nodes=n_ext, rowptr=local_rowptr.to(graph.rowptr.dtype), col=local_id[followee].to(dtype),
                  weight=None if graph.weight is None else graph.weight[edge])
    # what the other ranks read from this one: distinct (reader rank, followee) pairs over cut edges
    src_owner, dst_owner = owner[col], owner[graph.row]
    mine = (src_owner == rank) & (dst_owner != rank)
    pairs = torch.unique(dst_owner[mine] * n_all + col[mine])  # by reader rank, then global id
    reader = torch.div(pairs, n_all, rounding_mode="floor")
    send_index = local_id[pairs - reader * n_all]
    send_counts = torch.bincount(reader, minlength=parts).tolist()
    recv_counts = torch.bincount(owner[halo], minlength=parts).tolist()
    return RankLayout(rank=rank, parts=parts, num_agents=n_all, agents=agents, halo=halo, local=local,
                      send_index=send_index, send_counts=send_counts, recv_counts=recv_counts)


def _by_owner(ids: Tensor, owner: Tensor, n_all: int) -> Tensor:
    """``ids`` sorted by owning rank, then by id."""
    return ids[torch.argsort(owner[ids] * n_all + ids)]
