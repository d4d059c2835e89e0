"""The directed follower graph: the CSR data structure, its loaders and its generators.

Layers, each importing only the ones above it in this list:

* :mod:`lpm.graph.core`: :class:`Graph` (CSR by follower), validation, size checks;
* :mod:`lpm.graph.io` (CSV/Parquet edge lists, GML, networkx, PyG) and
  :mod:`lpm.graph.generators` (Barabasi-Albert, Holme-Kim, Watts-Strogatz, block and
  configuration models), which build graphs with :meth:`Graph.from_edge_index`;
* this package, which attaches the loaders and generators to :class:`Graph` as
  ``Graph.barabasi_albert(...)``, ``Graph.from_csv(...)``, ``graph.to_pyg()`` ...

The attachment is done here rather than by methods of ``Graph`` that import their
implementation when called, because those methods would make ``core`` depend on the modules
that depend on it (an import cycle merely deferred). Importing any ``lpm.graph.*`` module runs
this file first, so no caller ever sees a ``Graph`` without them.
"""

from lpm.graph import generators, io
from lpm.graph.core import MAX_NODES, Graph, check_graph_size, index_dtype_for

__all__ = ["Graph", "index_dtype_for", "check_graph_size", "MAX_NODES"]

Graph.barabasi_albert = staticmethod(generators.barabasi_albert)
Graph.holme_kim = staticmethod(generators.holme_kim)
Graph.watts_strogatz = staticmethod(generators.watts_strogatz)
Graph.stochastic_block_model = staticmethod(generators.stochastic_block_model)
Graph.sbm_homophily = staticmethod(generators.sbm_homophily)
Graph.configuration_model = staticmethod(generators.configuration_model)
Graph.directed_configuration_model = staticmethod(generators.directed_configuration_model)

Graph.from_csv = staticmethod(io.from_csv)
Graph.from_parquet = staticmethod(io.from_parquet)
Graph.from_gml = staticmethod(io.from_gml)
Graph.from_networkx = staticmethod(io.from_networkx)
Graph.from_pyg = staticmethod(io.from_pyg)
Graph.to_pyg = io.to_pyg
Graph.to_networkx = io.to_networkx
