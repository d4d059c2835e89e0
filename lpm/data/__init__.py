"""Real data formats in one place: reshare cascades, disaster sentiment series, reply stance, and
(re-exported from :mod:`lpm.graph.io`) follower and hyperlink graphs.

Cascade loaders return a :class:`CascadeTable`, the flat table that simulations also produce
(:meth:`CascadeTable.from_state`), so data and simulations are measured by the same code.
"""

from lpm.data.cascades import CascadeTable
from lpm.data.disaster import DisasterSeries, RowReport, load_disaster, load_disaster_events
from lpm.data.rumdetect import LoadReport, load_rumdetect, write_rumdetect
from lpm.data.rumoureval import STANCES, VERACITIES, StancePosts, load_rumoureval
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
    "CascadeTable",
    "load_rumdetect",
    "write_rumdetect",
    "LoadReport",
    "load_disaster",
    "load_disaster_events",
    "DisasterSeries",
    "RowReport",
    "load_rumoureval",
    "StancePosts",
    "STANCES",
    "VERACITIES",
    "read_edge_table",
    "from_csv",
    "from_parquet",
    "read_gml",
    "from_gml",
    "from_networkx",
    "to_networkx",
    "from_pyg",
    "to_pyg",
]
