"""GML files (through networkx, with the file's own ``directed`` header honoured)."""

from __future__ import annotations

import os
import re
from typing import Optional

import numpy as np

from lpm.errors import GraphFormatError
from lpm.graph.core import Graph
from lpm.graph.io._build import PathLike, _check_flow
from lpm.graph.io.convert import _from_networkx

__all__ = ["read_gml", "from_gml"]


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

