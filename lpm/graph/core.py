"""The directed follower graph, stored as CSR by follower: the data structure and its views.

An edge ``j -> i`` means *i follows j*: information flows from the followee ``j`` to the follower
``i``. This is PyG's ``flow="source_to_target"`` convention, so ``edge_index[0]`` holds followees
(sources) and ``edge_index[1]`` followers (targets). Edges are stored sorted by follower, so that
the followees of agent ``i`` are ``col[rowptr[i]:rowptr[i+1]]`` and every aggregation over an
agent's feed reads one contiguous slice.

Generators and loaders (:mod:`lpm.graph.generators`, :mod:`lpm.graph.io`) build on this module;
:mod:`lpm.graph` attaches them to :class:`Graph` (``Graph.barabasi_albert``, ``Graph.from_csv`` ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor

from lpm.errors import GraphFormatError

__all__ = ["Graph", "index_dtype_for", "check_graph_size"]

_INT32_MAX = 2**31 - 1
#: Edges are sorted by the key ``follower * N + followee``, which must fit in int64.
MAX_NODES = 3_037_000_499  # floor(sqrt(2**63 - 1))
# Peak bytes of Graph.from_edge_index per node (bincount, rowptr, arange, counts, in_weight) and per
# edge (key, unique/sort buffers, src/dst, row, col), rounded up.
_BYTES_PER_NODE = 48
_BYTES_PER_EDGE = 72
# torch_geometric's index2ptr/ptr2index, coalesce and scatter cover the index work below, but
# importing torch_geometric costs 1.6-1.9x `import torch` (it loads torch._dynamo and its datasets),
# seconds at every start for gains of tens of ms per build; per op (1e6-1e7 edges, CPU): ptr2index
# and scatter run the same torch calls as here, coalesce is 1.25-2x slower than one torch.unique,
# index2ptr saves ~50 ms of a ~2 s build. So the graph stays plain torch; PyG is for conversion.


def check_graph_size(num_nodes: int, num_edges: int, what: str = "a graph", detail: str = "") -> None:
    """Fail fast, before allocating, on a graph too large to build.

    Raises:
        ResourceError: the graph would need more memory than is available (:mod:`lpm.resources`).
        GraphFormatError: more than :data:`MAX_NODES` nodes (the sort key would overflow int64).
    """
    from lpm.resources import check_memory

    check_memory(f"{what} of {num_nodes:,} nodes{detail} and {num_edges:,} edges",
                 _BYTES_PER_NODE * num_nodes + _BYTES_PER_EDGE * num_edges)
    if num_nodes > MAX_NODES:
        raise GraphFormatError(f"Expected at most {MAX_NODES:,} nodes (got {what} of {num_nodes:,} nodes{detail})")


def index_dtype_for(count: int) -> torch.dtype:
    """The narrowest index dtype (int32 or int64) that can address ``count`` items."""
    return torch.int32 if count <= _INT32_MAX else torch.int64


@dataclass(frozen=True, eq=False)
class Graph:
    """A directed follower graph in CSR-by-follower layout.

    Build one with :meth:`from_edge_index` (validating) or a generator/loader; the raw constructor
    trusts its arguments (it only checks shapes and dtypes, never values, so it stays cheap).

    Shapes:
        rowptr: ``(N + 1,)`` offsets into ``col`` per follower, int32 when ``E < 2**31``.
        col: ``(E,)`` followee (source) of each edge, sorted by follower then followee.
        row: ``(E,)`` int64 follower (target) of each edge, ``row[rowptr[i]:rowptr[i+1]] == i``.
            Derived; used by the plain-torch reference, whose scatter needs int64 indices.
        weight: ``(E,)`` optional non-negative float edge weights (``None`` means all ones).
        in_weight: ``(N,)`` float, total weight of each agent's followees (its in-degree when
            unweighted). Derived.
    """

    num_nodes: int
    rowptr: Tensor
    col: Tensor
    weight: Optional[Tensor] = None
    row: Tensor = field(init=False, repr=False)
    in_weight: Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.rowptr.dim() != 1 or self.rowptr.numel() != self.num_nodes + 1:
            raise GraphFormatError(
                f"Expected 'rowptr' of shape ({self.num_nodes + 1},) (got {tuple(self.rowptr.shape)})"
            )
        if self.col.dim() != 1:
            raise GraphFormatError(f"Expected 'col' to be 1-D (got shape {tuple(self.col.shape)})")
        if self.weight is not None and self.weight.shape != self.col.shape:
            raise GraphFormatError(
                f"Expected 'weight' of shape {tuple(self.col.shape)} (got {tuple(self.weight.shape)})"
            )
        counts = self.rowptr[1:] - self.rowptr[:-1]
        # output_size: no device sync to size the result (the feed builds a graph every step)
        row = torch.repeat_interleave(torch.arange(self.num_nodes, device=self.col.device), counts.long(),
                                      output_size=self.col.numel())
        object.__setattr__(self, "row", row)
        if self.weight is None:
            in_weight = counts.to(torch.float32)
        else:
            in_weight = torch.zeros(self.num_nodes, dtype=self.weight.dtype, device=self.weight.device)
            in_weight.index_add_(0, row, self.weight)
        object.__setattr__(self, "in_weight", in_weight)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_edge_index(
        cls,
        edge_index: Tensor,
        num_nodes: Optional[int] = None,
        weight: Optional[Tensor] = None,
        *,
        remove_self_loops: bool = True,
        dedupe: bool = True,
    ) -> "Graph":
        """Build a graph from a COO edge list, validating it.

        Args:
            edge_index: ``(2, E)`` integer tensor; row 0 followees (sources), row 1 followers.
            num_nodes: number of agents ``N``; defaults to ``edge_index.max() + 1``.
            weight: ``(E,)`` finite, non-negative edge weights, or ``None``.
            remove_self_loops: drop edges ``i -> i`` (an agent does not see its own posts as a
                followee's).
            dedupe: merge repeated ``(source, target)`` pairs; their weights are summed.

        Returns:
            The graph in CSR-by-follower layout, on the device of ``edge_index``.

        Raises:
            GraphFormatError: wrong dtype or shape, negative or out-of-range ids, NaN/Inf or
                negative weights, no nodes, no edges left, or more than :data:`MAX_NODES` nodes.
            ResourceError: a graph too large for the available memory (e.g. one huge node id),
                raised before anything of size ``N`` is allocated.
        """
        if not isinstance(edge_index, Tensor):
            raise GraphFormatError(f"Expected 'edge_index' to be a torch.Tensor (got {type(edge_index).__name__})")
        if edge_index.dtype.is_floating_point or edge_index.dtype in (torch.bool, torch.complex64, torch.complex128):
            raise GraphFormatError(f"Expected 'edge_index' to be of integer type (got {edge_index.dtype})")
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise GraphFormatError(f"Expected 'edge_index' of shape (2, E) (got {tuple(edge_index.shape)})")
        edge_index = edge_index.long()
        num_edges = edge_index.size(1)
        if num_edges > 0 and int(edge_index.min()) < 0:
            raise GraphFormatError(f"Expected non-negative node ids (got minimum {int(edge_index.min())})")
        max_id = int(edge_index.max()) if num_edges > 0 else -1
        if num_nodes is None:
            num_nodes = max_id + 1
        num_nodes = int(num_nodes)
        if num_nodes <= 0:
            raise GraphFormatError(f"Expected a graph with at least one node (got num_nodes={num_nodes})")
        if max_id >= num_nodes:
            raise GraphFormatError(
                f"Expected node ids in [0, {num_nodes}) for num_nodes={num_nodes} (got id {max_id})"
            )
        check_graph_size(num_nodes, num_edges, "a graph", f" (largest node id {max_id})" if max_id >= 0 else "")
        if weight is not None:
            if not isinstance(weight, Tensor) or not weight.dtype.is_floating_point:
                found = weight.dtype if isinstance(weight, Tensor) else type(weight).__name__
                raise GraphFormatError(f"Expected 'weight' to be a floating-point tensor (got {found})")
            if weight.shape != (num_edges,):
                raise GraphFormatError(f"Expected 'weight' of shape ({num_edges},) (got {tuple(weight.shape)})")
            if not bool(torch.isfinite(weight).all()):
                raise GraphFormatError("Expected finite edge weights (got NaN or Inf)")
            if num_edges > 0 and float(weight.min()) < 0:
                raise GraphFormatError(f"Expected non-negative edge weights (got minimum {float(weight.min())})")
        src, dst = edge_index[0], edge_index[1]
        if remove_self_loops:
            keep = src != dst
            src, dst = src[keep], dst[keep]
            weight = weight[keep] if weight is not None else None
        if src.numel() == 0:
            raise GraphFormatError(f"Expected at least one edge between distinct nodes (got 0 of {num_edges})")
        # Sort by (follower, followee) with one key; N^2 < 2^63 for any N we can hold in memory.
        key = dst * num_nodes + src
        if dedupe and weight is None:
            key = torch.unique(key, sorted=True)  # no inverse needed: ~1/3 faster on 10M keys
        elif dedupe:
            key, inverse = torch.unique(key, sorted=True, return_inverse=True)
            merged = torch.zeros(key.numel(), dtype=weight.dtype, device=weight.device)
            weight = merged.index_add_(0, inverse, weight)
        else:
            key, order = torch.sort(key, stable=True)
            weight = weight[order] if weight is not None else None
        dst_sorted = torch.div(key, num_nodes, rounding_mode="floor")
        src_sorted = key - dst_sorted * num_nodes
        return cls._from_sorted(src_sorted, dst_sorted, num_nodes, weight)

    @classmethod
    def _from_sorted(cls, src: Tensor, dst: Tensor, num_nodes: int, weight: Optional[Tensor]) -> "Graph":
        """CSR from edges already sorted by follower (no validation)."""
        counts = torch.bincount(dst, minlength=num_nodes)
        rowptr = torch.zeros(num_nodes + 1, dtype=torch.int64, device=src.device)
        torch.cumsum(counts, 0, out=rowptr[1:])
        index_dtype = index_dtype_for(max(num_nodes, src.numel()))
        return cls(
            num_nodes=num_nodes,
            rowptr=rowptr.to(index_dtype),
            col=src.to(index_dtype),
            weight=weight.float() if weight is not None and weight.dtype != torch.float64 else weight,
        )

    # ------------------------------------------------------------------ views
    @property
    def num_edges(self) -> int:
        return int(self.col.numel())

    @property
    def device(self) -> torch.device:
        return self.col.device

    @property
    def edge_index(self) -> Tensor:
        """``(2, E)`` int64 COO view: row 0 followees (sources), row 1 followers (targets)."""
        return torch.stack([self.col.long(), self.row.long()])

    def in_degree(self) -> Tensor:
        """``(N,)`` int64 number of followees of each agent."""
        return (self.rowptr[1:] - self.rowptr[:-1]).long()

    def followers(self) -> tuple[Tensor, Tensor]:
        """The graph by followee: ``(starts, edges)`` with ``starts (N + 1,)`` int64 offsets and
        ``edges (E,)`` int64 edge ids sorted by followee (then follower), so the edges out of ``j``
        (to its followers ``row[edges[starts[j]:starts[j+1]]]``) are contiguous. Built once per graph."""
        cached = self.__dict__.get("_followers")
        if cached is None:
            edges = torch.argsort(self.col.long(), stable=True)
            starts = torch.zeros(self.num_nodes + 1, dtype=torch.int64, device=self.col.device)
            starts[1:] = torch.cumsum(self.out_degree(), 0)
            cached = (starts, edges)
            object.__setattr__(self, "_followers", cached)
        return cached

    def out_degree(self) -> Tensor:
        """``(N,)`` int64 number of followers of each agent."""
        return torch.bincount(self.col.long(), minlength=self.num_nodes)

    def to(self, device: torch.device | str) -> "Graph":
        """A copy of the graph on ``device`` (index dtypes kept)."""
        device = torch.device(device)
        moved = Graph(
            num_nodes=self.num_nodes,
            rowptr=self.rowptr.to(device),
            col=self.col.to(device),
            weight=self.weight.to(device) if self.weight is not None else None,
        )
        # the same in-weights, not a new sum: on CUDA that sum's atomic adds run in no fixed order, so
        # a moved graph would differ from its original in the last bit (seen on an H200)
        object.__setattr__(moved, "in_weight", self.in_weight.to(device))
        return moved

    def reverse(self) -> "Graph":
        """The graph with every edge reversed (followers become followees)."""
        return Graph.from_edge_index(self.edge_index.flip(0), self.num_nodes, self.weight, dedupe=False)

    def permute(self, perm: Tensor) -> "Graph":
        """Relabel agents: agent ``i`` of this graph becomes agent ``perm[i]``.

        Shapes:
            perm: ``(N,)`` a permutation of ``0..N-1``.
        """
        perm = perm.to(self.device).long()
        ei = perm[self.edge_index]
        return Graph.from_edge_index(ei, self.num_nodes, self.weight, dedupe=False)

    def __repr__(self) -> str:
        weighted = ", weighted" if self.weight is not None else ""
        return f"Graph(num_nodes={self.num_nodes}, num_edges={self.num_edges}{weighted}, device={self.device})"
