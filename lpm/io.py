"""Graph loaders and converters.

Input is validated once, here at the boundary: a malformed file or object raises
:class:`lpm.errors.GraphFormatError` whose message says what was expected, what was found and, for
files, the path; a missing or unreadable file raises ``GraphFormatError`` chained from the
``OSError``. Every graph is built by :meth:`Graph.from_edge_index`, which drops self-loops and
merges repeated edges (summing weights) unless told otherwise.

Edge tables:
    :func:`read_edge_table` reads a CSV or Parquet edge list and returns ``(graph, node_ids)``,
    where ``node_ids`` is ``None`` when the file's integer ids were used as they are, or the
    ``(N,)`` numpy array of original ids when they were relabelled (``node_ids[i]`` is the
    original id of agent ``i``; ids are the sorted unique values of both id columns). Ids are
    relabelled when ``relabel=True`` or when an id column is not of integer type.
    :func:`from_csv` and :func:`from_parquet` are shorthands that return only the graph.

Direction (``flow``):
    ``"source_to_target"`` (default): each row ``(source, target)`` means *target follows source*,
    the edge ``source -> target`` of :mod:`lpm.graph`. ``"target_to_source"``: rows are
    ``(follower, followee)`` and are flipped.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np
import torch

from lpm.errors import ConfigError, GraphFormatError, ResourceError
from lpm.graph import Graph

if TYPE_CHECKING:  # pragma: no cover
    import networkx as nx
    from torch_geometric.data import Data

__all__ = [
    "read_edge_table",
    "from_csv",
    "from_parquet",
    "read_gml",
    "from_gml",
    "from_networkx",
    "from_pyg",
    "to_pyg",
    "to_networkx",
]

PathLike = Union[str, "os.PathLike[str]"]
_FLOWS = ("source_to_target", "target_to_source")


# ---------------------------------------------------------------------------------- helpers
def _check_flow(flow: object) -> None:
    if flow not in _FLOWS:
        raise ConfigError(f"Expected flow in {_FLOWS} (got {flow!r})")


def _build(
    src: torch.Tensor,
    dst: torch.Tensor,
    num_nodes: Optional[int],
    weight: Optional[torch.Tensor],
    flow: str,
    where: str,
    remove_self_loops: bool,
    dedupe: bool,
) -> Graph:
    """``Graph.from_edge_index`` with the flow applied and errors prefixed by ``where``."""
    if flow == "target_to_source":
        src, dst = dst, src
    try:
        return Graph.from_edge_index(
            torch.stack([src, dst]), num_nodes, weight, remove_self_loops=remove_self_loops, dedupe=dedupe
        )
    except GraphFormatError as err:
        raise GraphFormatError(f"{where}: {err}") from err
    except ResourceError as err:
        raise ResourceError(f"{where}: {err}") from err


def _read_table(path: PathLike, kind: str, columns: list[str], sep: str) -> "Any":
    """Read ``columns`` of a CSV or Parquet file into a pandas DataFrame, or raise GraphFormatError."""
    import pandas as pd

    try:
        handle = open(path, "rb")
    except OSError as err:
        raise GraphFormatError(f"Expected a readable {kind} file at {os.fspath(path)!r} (got {err})") from err
    with handle:
        if kind == "CSV":
            try:
                header = pd.read_csv(handle, sep=sep, nrows=0)
            except pd.errors.EmptyDataError as err:
                raise GraphFormatError(f"Expected a CSV header line in {os.fspath(path)!r} (got an empty file)") from err
            except Exception as err:  # parser errors of any kind are format errors at this boundary
                raise GraphFormatError(f"Expected a readable CSV file at {os.fspath(path)!r} (got {err})") from err
            found = [str(c) for c in header.columns]
        else:
            import pyarrow.parquet as pq

            try:
                parquet = pq.ParquetFile(handle)
            except Exception as err:
                raise GraphFormatError(f"Expected a Parquet file at {os.fspath(path)!r} (got {err})") from err
            found = list(parquet.schema_arrow.names)
        missing = [c for c in columns if c not in found]
        if missing:
            raise GraphFormatError(
                f"Expected column(s) {missing} in {os.fspath(path)!r} (got columns {found})"
            )
        if kind == "CSV":
            return _read_csv_rows(handle, path, sep, found, columns)
        try:
            return parquet.read(columns=columns).to_pandas()
        except Exception as err:
            raise GraphFormatError(f"Expected a readable {kind} file at {os.fspath(path)!r} (got {err})") from err


_RAGGED = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def _read_csv_rows(handle, path: PathLike, sep: str, header: list[str], columns: list[str]) -> "Any":
    """The rows of a CSV edge list under ``header``, every row checked to have the header's fields.

    pandas' ``usecols`` (and its implicit index for rows one field longer than the header) would
    silently truncate or shift a ragged row, so all fields are parsed and counted.
    """
    import pandas as pd

    handle.seek(0)
    where = os.fspath(path)
    try:
        frame = pd.read_csv(handle, sep=sep, header=None, skiprows=1)
    except pd.errors.EmptyDataError:
        return pd.DataFrame({c: pd.Series([], dtype="int64") for c in columns})
    except pd.errors.ParserError as err:
        ragged = _RAGGED.search(str(err))
        if ragged is not None:
            raise GraphFormatError(f"{where}: Expected {len(header)} fields per line like the header "
                                   f"(got {ragged.group(3)} on line {ragged.group(2)})") from None
        raise GraphFormatError(f"Expected a readable CSV file at {where!r} (got {str(err).strip()})") from err
    except Exception as err:  # parser errors of any kind are format errors at this boundary
        raise GraphFormatError(f"Expected a readable CSV file at {where!r} (got {str(err).strip()})") from err
    if frame.shape[1] != len(header):
        raise GraphFormatError(f"{where}: Expected {len(header)} fields per line like the header "
                               f"(got {frame.shape[1]} on line 2)")
    frame.columns = header
    return frame[columns]


def _id_column(values: np.ndarray, name: str, where: str) -> np.ndarray:
    """Reject missing ids; return the column as is (int or object)."""
    import pandas as pd

    if pd.isna(values).any():
        row = int(np.flatnonzero(pd.isna(values))[0])
        raise GraphFormatError(f"{where}: Expected a node id in every row of column {name!r} (got a missing value in row {row})")
    return values


def _ids_to_tensors(
    src: np.ndarray, dst: np.ndarray, relabel: bool, where: str
) -> tuple[torch.Tensor, torch.Tensor, Optional[np.ndarray]]:
    """Integer ids as int64 tensors, or relabelled to ``0..N-1`` (sorted unique ids)."""
    integer = np.issubdtype(src.dtype, np.integer) and np.issubdtype(dst.dtype, np.integer)
    if integer and not relabel:
        return torch.from_numpy(src.astype(np.int64)), torch.from_numpy(dst.astype(np.int64)), None
    if (src.dtype == object) != (dst.dtype == object):
        # One text and one numeric column: compare all ids as strings.
        src, dst = src.astype(str), dst.astype(str)
    both = np.concatenate([src, dst])
    try:
        node_ids, inverse = np.unique(both, return_inverse=True)
    except TypeError as err:
        raise GraphFormatError(f"{where}: Expected sortable node ids (got {err})") from err
    inverse = torch.from_numpy(inverse.reshape(-1).astype(np.int64))
    return inverse[: len(src)], inverse[len(src):], node_ids


# ------------------------------------------------------------------------------- edge tables
def read_edge_table(
    path: PathLike,
    *,
    source: str = "source",
    target: str = "target",
    weight: Optional[str] = None,
    relabel: bool = False,
    flow: str = "source_to_target",
    sep: str = ",",
    num_nodes: Optional[int] = None,
    format: Optional[str] = None,
    remove_self_loops: bool = True,
    dedupe: bool = True,
) -> tuple[Graph, Optional[np.ndarray]]:
    """Read an edge list from a CSV or Parquet file.

    Args:
        path: the file.
        source, target: names of the id columns (see the module docstring for ``flow``).
        weight: name of a numeric, finite, non-negative weight column, or ``None`` (unweighted).
        relabel: map ids to ``0..N-1`` even when they are integers (always done otherwise).
        flow: ``"source_to_target"`` or ``"target_to_source"``.
        sep: CSV field separator (ignored for Parquet).
        num_nodes: number of agents when ids are used as they are (to include isolated agents
            with ids above the largest one in the file); ``None`` means ``max id + 1``. Not allowed
            with relabelling.
        format: ``"csv"`` or ``"parquet"``; ``None`` infers it from the suffix (``.parquet``/``.pq``
            is Parquet, anything else CSV).
        remove_self_loops, dedupe: passed to :meth:`Graph.from_edge_index`.

    Returns:
        ``(graph, node_ids)``: ``node_ids`` is ``None`` when ids were used as they are, else the
        ``(N,)`` array of original ids, ``node_ids[i]`` being agent ``i``'s.

    Raises:
        GraphFormatError: missing/unreadable file, missing column, missing ids, non-numeric
            weights, or anything :meth:`Graph.from_edge_index` rejects (negative ids, NaN or
            negative weights, no edges), with the path in the message.
        ConfigError: a bad ``flow`` or ``format``, or ``num_nodes`` given with relabelling.
    """
    _check_flow(flow)
    if format is None:
        format = "parquet" if str(path).lower().endswith((".parquet", ".pq")) else "csv"
    if format not in ("csv", "parquet"):
        raise ConfigError(f"Expected format in ('csv', 'parquet') (got {format!r})")
    kind = "CSV" if format == "csv" else "Parquet"
    where = os.fspath(path)
    columns = [source, target] + ([weight] if weight is not None else [])
    frame = _read_table(path, kind, list(dict.fromkeys(columns)), sep)

    src = _id_column(frame[source].to_numpy(), source, where)
    dst = _id_column(frame[target].to_numpy(), target, where)
    src_t, dst_t, node_ids = _ids_to_tensors(src, dst, relabel, where)
    if node_ids is not None:
        if num_nodes is not None:
            raise ConfigError(f"Expected num_nodes=None when ids are relabelled (got num_nodes={num_nodes})")
        num_nodes = len(node_ids)

    weight_t = None
    if weight is not None:
        import pandas as pd

        column = frame[weight]
        if (
            not pd.api.types.is_numeric_dtype(column)
            or pd.api.types.is_bool_dtype(column)
            or pd.api.types.is_complex_dtype(column)
        ):
            raise GraphFormatError(f"{where}: Expected a numeric weight column {weight!r} (got dtype {column.dtype})")
        # Missing values become NaN, which Graph.from_edge_index rejects.
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        weight_t = torch.from_numpy(values.astype(np.float32))  # astype copies: writable
    graph = _build(src_t, dst_t, num_nodes, weight_t, flow, where, remove_self_loops, dedupe)
    return graph, node_ids


def from_csv(
    path: PathLike,
    *,
    source: str = "source",
    target: str = "target",
    weight: Optional[str] = None,
    relabel: bool = False,
    flow: str = "source_to_target",
    sep: str = ",",
    num_nodes: Optional[int] = None,
    remove_self_loops: bool = True,
    dedupe: bool = True,
) -> Graph:
    """The graph of a CSV edge list; see :func:`read_edge_table` (use it to get relabelled ids)."""
    graph, _ = read_edge_table(
        path, source=source, target=target, weight=weight, relabel=relabel, flow=flow, sep=sep,
        num_nodes=num_nodes, format="csv", remove_self_loops=remove_self_loops, dedupe=dedupe,
    )
    return graph


def from_parquet(
    path: PathLike,
    *,
    source: str = "source",
    target: str = "target",
    weight: Optional[str] = None,
    relabel: bool = False,
    flow: str = "source_to_target",
    num_nodes: Optional[int] = None,
    remove_self_loops: bool = True,
    dedupe: bool = True,
) -> Graph:
    """The graph of a Parquet edge list; see :func:`read_edge_table`."""
    graph, _ = read_edge_table(
        path, source=source, target=target, weight=weight, relabel=relabel, flow=flow,
        num_nodes=num_nodes, format="parquet", remove_self_loops=remove_self_loops, dedupe=dedupe,
    )
    return graph


# --------------------------------------------------------------------------------------- GML
_GRAPH_OPEN = re.compile(r"\bgraph\s*\[")
_HEADER_KEY = re.compile(r"(?<![\w\"])(directed|multigraph)\s+(-?\d+)\b")
_FIRST_ITEM = re.compile(r"\b(node|edge)\s*\[")


def read_gml(
    path: PathLike,
    *,
    flow: str = "source_to_target",
    directed: Optional[bool] = True,
    weight: Optional[str] = None,
    remove_self_loops: bool = True,
    dedupe: bool = True,
) -> tuple[Graph, np.ndarray]:
    """Read a GML file, keeping each edge's ``source``/``target`` order.

    networkx builds an undirected ``(Multi)Graph`` whenever the header lacks ``directed 1`` (it
    ignores unknown keys such as the ``undirected 1`` of the polblogs file), and iterating such a
    graph returns edges in node order, not file order, so the direction written in the file is
    lost. This reader therefore rewrites the header to a directed multigraph before handing the
    text to :func:`networkx.parse_gml`, so every ``edge [ source s target t ]`` block (repeats
    included) becomes ``s -> t``.

    Args:
        path: the GML file.
        flow: ``"source_to_target"`` (``target`` follows ``source``) or ``"target_to_source"``.
        directed: ``True`` (default) treats edges as directed ``source -> target`` whatever the
            header says; ``False`` adds both directions; ``None`` obeys the header's ``directed``
            key (absent means undirected in GML).
        weight: name of a numeric edge attribute to use as weight, or ``None``.
        remove_self_loops, dedupe: passed to :meth:`Graph.from_edge_index`.

    Returns:
        ``(graph, labels)``: agent ``i`` is the ``i``-th node block of the file; ``labels[i]`` is
        its ``label`` when every node has a unique label, else its GML ``id``.

    Raises:
        GraphFormatError: missing/unreadable file, GML syntax errors, edges to undefined nodes.
    """
    import networkx as nx

    _check_flow(flow)
    where = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as err:
        raise GraphFormatError(f"Expected a readable GML file at {where!r} (got {err})") from err
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="replace")

    opened = _GRAPH_OPEN.search(text)
    if opened is None:
        raise GraphFormatError(f"Expected a 'graph [' block in GML file {where!r} (got none)")
    first_item = _FIRST_ITEM.search(text, opened.end())
    header_end = first_item.start() if first_item is not None else len(text)
    header = text[opened.end():header_end]
    declared = {key: value for key, value in _HEADER_KEY.findall(header)}
    file_directed = int(declared.get("directed", "0")) != 0
    header = _HEADER_KEY.sub("", header)
    text = text[: opened.end()] + "\n  directed 1\n  multigraph 1\n" + header + text[header_end:]

    try:
        try:
            graph_nx = nx.parse_gml(text, label="label")
        except nx.NetworkXError as err:
            if "label" not in str(err):
                raise
            graph_nx = nx.parse_gml(text, label="id")  # missing or duplicated labels: use ids
    except Exception as err:  # syntax errors surface as several exception types
        raise GraphFormatError(f"{where}: Expected a valid GML graph (got: {err})") from err
    use_directed = file_directed if directed is None else directed
    graph = _from_networkx(graph_nx, weight, where, flow, not use_directed, remove_self_loops, dedupe)
    return graph, np.asarray(list(graph_nx.nodes), dtype=object)


def from_gml(
    path: PathLike,
    *,
    flow: str = "source_to_target",
    directed: Optional[bool] = True,
    weight: Optional[str] = None,
    remove_self_loops: bool = True,
    dedupe: bool = True,
) -> Graph:
    """The graph of a GML file; see :func:`read_gml` (use it to get the node labels)."""
    graph, _ = read_gml(
        path, flow=flow, directed=directed, weight=weight, remove_self_loops=remove_self_loops, dedupe=dedupe
    )
    return graph


# --------------------------------------------------------------------------------- networkx
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
