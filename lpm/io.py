"""Graph loaders and converters; they live in :mod:`lpm.graph.io` (this path is kept for existing
imports)."""

from lpm.graph.io import (
    from_csv,
    from_gml,
    from_networkx,
    from_parquet,
    from_pyg,
    read_edge_table,
    read_gml,
    to_networkx,
    to_pyg,
)

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
