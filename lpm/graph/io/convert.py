"""Conversions to and from networkx graphs and PyG ``Data``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np
import torch

from lpm.errors import GraphFormatError
from lpm.graph.core import Graph
from lpm.graph.io._build import _build

if TYPE_CHECKING:  # pragma: no cover
    import networkx as nx
    from torch_geometric.data import Data

__all__ = ["from_networkx", "to_networkx", "from_pyg", "to_pyg"]


def _from_networkx(
    G: "nx.Graph",
    weight: Optional[str],
    where: str,
    flow: str,
    mutual: bool,
    remove_self_loops: bool,
    dedupe: bool,
) -> Graph:
    index = {node: i for i, node in enumerate(G.nodes)}
    num_nodes = len(index)
    if num_nodes == 0:
        raise GraphFormatError(f"{where}: Expected a graph with at least one node (got 0 nodes)")
    if weight is None:
        pairs = [(index[u], index[v]) for u, v in G.edges()]
        weights = None
    else:
        pairs, values = [], []
        for u, v, value in G.edges(data=weight):
            if value is None:
                raise GraphFormatError(f"{where}: Expected edge attribute {weight!r} on every edge (edge {u!r}->{v!r} has none)")
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise GraphFormatError(
                    f"{where}: Expected a numeric edge attribute {weight!r} (edge {u!r}->{v!r} has {value!r})"
                )
            pairs.append((index[u], index[v]))
            values.append(float(value))
        weights = torch.tensor(values, dtype=torch.float64).to(torch.float32)
    edge_index = torch.tensor(pairs, dtype=torch.int64).reshape(-1, 2).T
    src, dst = edge_index[0], edge_index[1]
    if mutual:
        src, dst = torch.cat([src, dst]), torch.cat([dst, src])
        weights = torch.cat([weights, weights]) if weights is not None else None
    return _build(src, dst, num_nodes, weights, flow, where, remove_self_loops, dedupe)


def from_networkx(G: "nx.Graph", *, weight: Optional[str] = None) -> Graph:
    """Convert a networkx graph.

    Node ``i`` of the result is the ``i``-th node of ``G.nodes`` (labels can be anything). A
    directed ``G`` keeps its edges ``u -> v`` (``v`` follows ``u``); an undirected ``G`` gives
    mutual follows. Parallel edges of multigraphs merge, their weights summed.

    Args:
        G: a ``Graph``, ``DiGraph``, ``MultiGraph`` or ``MultiDiGraph``.
        weight: name of a numeric edge attribute present on every edge, or ``None``.

    Raises:
        GraphFormatError: no nodes or no edges, missing or non-numeric weights, NaN or negative
            weights.
    """
    import networkx as nx

    if not isinstance(G, nx.Graph):
        raise GraphFormatError(f"Expected a networkx graph (got {type(G).__name__})")
    return _from_networkx(G, weight, "networkx graph", "source_to_target", not G.is_directed(), True, True)


def to_networkx(graph: Graph) -> "nx.DiGraph":
    """A ``networkx.DiGraph`` on nodes ``0..N-1`` (isolated agents included) with the edges
    ``u -> v`` of ``graph`` and, when weighted, a ``weight`` attribute per edge."""
    import networkx as nx

    G = nx.DiGraph()
    G.add_nodes_from(range(graph.num_nodes))
    edges = graph.edge_index.cpu().T.tolist()
    if graph.weight is None:
        G.add_edges_from(edges)
    else:
        weights = graph.weight.detach().cpu().tolist()
        G.add_weighted_edges_from((u, v, w) for (u, v), w in zip(edges, weights))
    return G


# ------------------------------------------------------------------------------ PyG
def from_pyg(data: "Data") -> Graph:
    """Convert a ``torch_geometric.data.Data`` (``edge_index`` row 0 sources, row 1 targets).

    Reads ``edge_index``, ``num_nodes`` and, when present, a 1-D ``edge_weight`` (a 2-D
    ``edge_attr`` is ignored). Self-loops are dropped and repeated edges merged.

    Raises:
        GraphFormatError: no ``edge_index``, a non-1-D ``edge_weight``, or anything
            :meth:`Graph.from_edge_index` rejects.
    """
    edge_index = getattr(data, "edge_index", None)
    if edge_index is None:
        raise GraphFormatError(f"Expected a PyG Data object with an 'edge_index' (got {type(data).__name__} without one)")
    weight = getattr(data, "edge_weight", None)
    if weight is not None and (not isinstance(weight, torch.Tensor) or weight.dim() != 1):
        shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise GraphFormatError(f"Expected a 1-D 'edge_weight' (got {shape})")
    num_nodes = data.num_nodes
    try:
        return Graph.from_edge_index(edge_index, num_nodes, weight)
    except GraphFormatError as err:
        raise GraphFormatError(f"PyG data: {err}") from err


def to_pyg(graph: Graph) -> "Data":
    """A ``torch_geometric.data.Data`` with ``edge_index`` (int64, sources in row 0),
    ``num_nodes`` and, when the graph is weighted, ``edge_weight``; on the graph's device."""
    from torch_geometric.data import Data

    data = Data(edge_index=graph.edge_index, num_nodes=graph.num_nodes)
    if graph.weight is not None:
        data.edge_weight = graph.weight
    return data
