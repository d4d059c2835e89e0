"""Locality-preserving partitions of the follower graph: which rank owns which agent.

A partitioned step sends every rank the states of the followees its agents read but do not own (the
halo), so the partition should cut few follow edges while giving every rank about ``N / P`` agents.
Two partitioners, chosen by size (:func:`partition`):

* METIS (Karypis & Kumar 1998, multilevel k-way, through the optional ``pymetis``) for graphs whose
  undirected adjacency fits comfortably in memory: the best cuts, at about 100 bytes and a few
  microseconds per adjacency entry;
* size-constrained label propagation (Raghavan et al. 2007; Meyerhenke et al. 2014 use it to coarsen
  huge graphs): each round every agent looks at the parts of its neighbours and moves to the most
  common one when that part has room. Vectorised in torch: ``O(E)`` per round, no Python loop over
  agents, for graphs too big for METIS.

Both see the follow graph as undirected (an edge costs a halo entry whichever way it points).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from lpm.errors import ConfigError
from lpm.graph import Graph

__all__ = ["partition", "metis_partition", "label_propagation_partition", "block_partition", "PartitionStats",
           "partition_stats", "METHODS", "METIS_MAX_ADJACENCY", "metis_available"]

METHODS = ("auto", "metis", "label_propagation", "block")
#: Above this many undirected adjacency entries (2 per follow edge) ``auto`` uses label propagation:
#: METIS needs roughly 100 bytes per entry (25 GB here) and runs single-threaded.
METIS_MAX_ADJACENCY = 250_000_000


def metis_available() -> bool:
    """Whether the optional ``pymetis`` (``pip install lpm[distributed]``) is installed."""
    try:
        import pymetis  # noqa: F401
    except ImportError:
        return False
    return True


def _check_parts(graph: Graph, parts: object) -> int:
    if not isinstance(graph, Graph):
        raise ConfigError(f"Expected 'graph' to be lpm.Graph (got {type(graph).__name__})")
    if isinstance(parts, bool) or not isinstance(parts, int) or parts < 1:
        raise ConfigError(f"Expected 'parts' to be an int >= 1 (got {parts!r})")
    if parts > graph.num_nodes:
        raise ConfigError(f"Expected at most one part per agent: parts <= {graph.num_nodes} (got {parts})")
    return parts


def _undirected(graph: Graph) -> tuple[Tensor, Tensor]:
    """Symmetric CSR ``(xadj (N+1,), adjncy (2E',))`` int64 of the follow graph, without duplicates."""
    n = graph.num_nodes
    src, dst = graph.col.long(), graph.row.long()
    key = torch.unique(torch.cat([dst * n + src, src * n + dst]), sorted=True)
    node = torch.div(key, n, rounding_mode="floor")
    adjncy = key - node * n
    xadj = torch.zeros(n + 1, dtype=torch.int64)
    torch.cumsum(torch.bincount(node, minlength=n), 0, out=xadj[1:])
    return xadj, adjncy


def block_partition(graph: Graph, parts: int) -> Tensor:
    """Contiguous blocks of agent ids: agent ``i`` goes to part ``i * parts // N``. A baseline with no
    locality beyond what the ids carry (``(N,)`` int64)."""
    parts = _check_parts(graph, parts)
    return torch.arange(graph.num_nodes, dtype=torch.int64) * parts // graph.num_nodes


def metis_partition(graph: Graph, parts: int, *, seed: int = 0) -> Tensor:
    """METIS k-way partition (``pymetis.part_graph``) of the undirected follow graph.

    Returns:
        ``(N,)`` int64 part of each agent.

    Raises:
        ConfigError: ``pymetis`` is not installed (``pip install lpm[distributed]``), or bad ``parts``.
    """
    parts = _check_parts(graph, parts)
    if parts == 1:
        return torch.zeros(graph.num_nodes, dtype=torch.int64)
    try:
        import pymetis
    except ImportError:
        raise ConfigError("Expected pymetis for method='metis' (pip install 'lpm[distributed]'; got it missing); "
                          "method='label_propagation' needs nothing extra") from None
    xadj, adjncy = _undirected(graph.to("cpu"))
    options = pymetis.Options(seed=int(seed))
    adjacency = pymetis.CSRAdjacency(xadj.numpy(), adjncy.numpy())
    _, membership = pymetis.part_graph(parts, adjacency, options=options)
    return torch.as_tensor(membership, dtype=torch.int64)


def label_propagation_partition(graph: Graph, parts: int, *, rounds: int = 16, imbalance: float = 0.03,
                                seed: int = 0) -> Tensor:
    """Size-constrained label propagation, started from contiguous blocks.

    Each round, every agent counts its neighbours' parts and proposes to move to the most common one;
    each part accepts the proposals with the largest gain (neighbours there minus neighbours in the
    current part) while it stays under ``(1 + imbalance) * N / parts`` agents (and no part falls below
    half its share, so none is left empty). Half of the agents,
    drawn afresh each round, may move, so neighbours do not swap parts back and forth.

    Returns:
        ``(N,)`` int64 part of each agent; every part within the size bound.

    Raises:
        ConfigError: bad ``parts``, ``rounds`` or ``imbalance``.
    """
    parts = _check_parts(graph, parts)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
        raise ConfigError(f"Expected 'rounds' to be an int >= 0 (got {rounds!r})")
    if not (isinstance(imbalance, (int, float)) and 0 <= imbalance < 1):
        raise ConfigError(f"Expected 'imbalance' in [0, 1) (got {imbalance!r})")
    n = graph.num_nodes
    label = block_partition(graph, parts)
    if parts == 1:
        return label
    xadj, adjncy = _undirected(graph.to("cpu"))
    node = torch.repeat_interleave(torch.arange(n), xadj[1:] - xadj[:-1])
    capacity = math.floor((1 + imbalance) * n / parts) + 1
    floor = max(1, n // (2 * parts))
    gen = torch.Generator().manual_seed(int(seed))
    for _ in range(rounds):
        # neighbours per (agent, part): N x parts counts, built from one bincount over the edges
        counts = torch.bincount(node * parts + label[adjncy], minlength=n * parts).view(n, parts)
        best_count, best = counts.max(1)
        gain = best_count - counts.gather(1, label[:, None])[:, 0]
        moving = (gain > 0) & (best != label) & (torch.rand(n, generator=gen) < 0.5)
        if not bool(moving.any()):
            break
        size = torch.bincount(label, minlength=parts)
        room = (capacity - size).clamp_min(0)
        candidates = moving.nonzero()[:, 0]
        # within each target part, the largest gains first: sort by (target, -gain)
        order = torch.argsort(best[candidates] * (int(gain.max()) + 1) - gain[candidates], stable=True)
        candidates = candidates[order]
        target = best[candidates]
        first = torch.searchsorted(target, torch.arange(parts))
        rank_in_target = torch.arange(candidates.numel()) - first[target]
        accepted = candidates[rank_in_target < room[target]]
        # and no part shrinks below half its share (a part left empty would be a rank without agents)
        source = label[accepted]
        accepted = accepted[torch.argsort(source, stable=True)]
        source = label[accepted]
        first = torch.searchsorted(source, torch.arange(parts))
        rank_in_source = torch.arange(accepted.numel()) - first[source]
        accepted = accepted[rank_in_source < (size - floor)[source]]
        label[accepted] = best[accepted]
    return label


def partition(graph: Graph, parts: int, *, method: str = "auto", seed: int = 0,
              metis_max_adjacency: int = METIS_MAX_ADJACENCY) -> Tensor:
    """A locality-preserving partition of the agents into ``parts`` ranks.

    Args:
        graph: the follower graph.
        parts: number of parts (ranks).
        method: ``"metis"``, ``"label_propagation"``, ``"block"`` (contiguous ids, a baseline) or
            ``"auto"``: METIS when ``pymetis`` is installed and the undirected adjacency has at most
            ``metis_max_adjacency`` entries, else label propagation.
        seed: seed of the partitioner's tie-breaking.

    Returns:
        ``(N,)`` int64 part (rank) of each agent.

    Raises:
        ConfigError: an unknown method, bad ``parts``, or ``"metis"`` without ``pymetis``.
    """
    if method not in METHODS:
        raise ConfigError(f"Expected a partition method among {METHODS} (got {method!r})")
    if method == "auto":
        small = 2 * graph.num_edges <= metis_max_adjacency
        method = "metis" if small and metis_available() else "label_propagation"
    if method == "metis":
        return metis_partition(graph, parts, seed=seed)
    if method == "block":
        return block_partition(graph, parts)
    return label_propagation_partition(graph, parts, seed=seed)


@dataclass(frozen=True)
class PartitionStats:
    """How good a partition is for halo exchange.

    Attributes:
        parts: number of parts.
        halo_fraction: halo states received per step by all ranks together, over ``N``: the sum over
            ranks of the distinct remote followees their agents read, divided by the agents.
        cut_fraction: share of follow edges whose two ends lie on different ranks.
        imbalance: largest part over the mean part size (1.0 = perfectly balanced).
        max_halo: the largest halo of one rank (agents).
    """

    parts: int
    halo_fraction: float
    cut_fraction: float
    imbalance: float
    max_halo: int


def partition_stats(graph: Graph, owner: Tensor, parts: Optional[int] = None) -> PartitionStats:
    """Halo fraction, edge cut and balance of the partition ``owner``.

    Shapes:
        owner: ``(N,)`` integer part of each agent, in ``[0, parts)``.

    Raises:
        ConfigError: ``owner`` of the wrong shape, dtype or range.
    """
    owner = check_owner(graph, owner, parts)
    parts = int(owner.max()) + 1 if parts is None else parts
    n = graph.num_nodes
    src_part, dst_part = owner[graph.col.long().cpu()], owner[graph.row.cpu()]
    cut = src_part != dst_part
    # one halo entry per distinct (receiving rank, remote followee)
    halo = torch.unique(dst_part[cut] * n + graph.col.long().cpu()[cut])
    per_rank = torch.bincount(torch.div(halo, n, rounding_mode="floor"), minlength=parts)
    sizes = torch.bincount(owner, minlength=parts)
    return PartitionStats(parts=parts, halo_fraction=halo.numel() / n,
                          cut_fraction=float(cut.sum()) / max(graph.num_edges, 1),
                          imbalance=float(sizes.max()) * parts / n, max_halo=int(per_rank.max()))


def check_owner(graph: Graph, owner: object, parts: Optional[int] = None) -> Tensor:
    """``owner`` as a CPU int64 ``(N,)`` tensor with values in ``[0, parts)``.

    Raises:
        ConfigError: not an integer tensor of shape ``(N,)``, or a value outside ``[0, parts)``.
    """
    if not isinstance(owner, Tensor) or owner.dtype.is_floating_point or owner.dtype == torch.bool \
            or owner.shape != (graph.num_nodes,):
        found = f"{owner.dtype}, shape {tuple(owner.shape)}" if isinstance(owner, Tensor) else type(owner).__name__
        raise ConfigError(f"Expected 'owner' as a ({graph.num_nodes},) integer tensor (got {found})")
    owner = owner.to("cpu", torch.int64)
    low, high = int(owner.min()), int(owner.max())
    if low < 0 or (parts is not None and high >= parts):
        raise ConfigError(f"Expected owner values in [0, {parts if parts is not None else 'parts'}) "
                          f"(got [{low}, {high}])")
    return owner
