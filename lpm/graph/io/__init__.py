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

from lpm.graph.io.convert import from_networkx, from_pyg, to_networkx, to_pyg
from lpm.graph.io.gml import from_gml, read_gml
from lpm.graph.io.tables import from_csv, from_parquet, read_edge_table

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
