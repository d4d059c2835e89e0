"""Graph.from_edge_index invariants, loaders (CSV, Parquet, GML) and converters (networkx, PyG)."""

from __future__ import annotations

import re
import textwrap

import networkx as nx
import pandas as pd
import pytest
import torch
from torch_geometric.data import Data

from lpm.errors import ConfigError, GraphFormatError
from lpm.generators import barabasi_albert
from lpm.graph import Graph
from lpm.io import (
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


def edges_of(graph: Graph) -> set[tuple[int, int]]:
    return set(map(tuple, graph.edge_index.T.tolist()))


def weighted_edges_of(graph: Graph) -> dict[tuple[int, int], float]:
    assert graph.weight is not None
    return dict(zip(map(tuple, graph.edge_index.T.tolist()), graph.weight.tolist()))


def random_graph(seed: int, n: int = 60, e: int = 400, weighted: bool = False) -> Graph:
    gen = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n, (2, e), generator=gen)
    w = torch.rand(e, generator=gen) * 3 if weighted else None
    return Graph.from_edge_index(ei, n, w)


# ------------------------------------------------------------------ Graph.from_edge_index
class TestFromEdgeIndex:
    @pytest.mark.parametrize("seed", [0, 1, 2])
    def test_csr_layout(self, seed):
        graph = random_graph(seed, weighted=True)
        n = graph.num_nodes
        rowptr, col, row = graph.rowptr.long(), graph.col.long(), graph.row.long()
        assert graph.rowptr.dtype == torch.int32 and graph.col.dtype == torch.int32
        assert rowptr.shape == (n + 1,) and rowptr[0] == 0 and rowptr[-1] == graph.num_edges
        assert bool((rowptr[1:] >= rowptr[:-1]).all())
        for i in range(n):
            lo, hi = rowptr[i].item(), rowptr[i + 1].item()
            assert bool((row[lo:hi] == i).all())
            assert bool((col[lo + 1: hi] > col[lo: hi - 1]).all()), "followees sorted, unique"
        assert torch.equal(graph.in_degree(), torch.bincount(row, minlength=n))
        assert torch.equal(graph.out_degree(), torch.bincount(col, minlength=n))
        expected_in_weight = torch.zeros(n).index_add_(0, row, graph.weight)
        assert torch.allclose(graph.in_weight, expected_in_weight)

    def test_edge_index_view_roundtrip(self):
        graph = random_graph(3)
        ei = graph.edge_index
        assert ei.dtype == torch.int64 and ei.shape == (2, graph.num_edges)
        again = Graph.from_edge_index(ei, graph.num_nodes)
        assert torch.equal(again.rowptr, graph.rowptr) and torch.equal(again.col, graph.col)

    def test_dedupe_sums_weights_and_drops_self_loops(self):
        ei = torch.tensor([[0, 0, 1, 2, 2, 1], [1, 1, 2, 2, 0, 2]])
        w = torch.tensor([1.0, 2.5, 1.0, 9.0, 0.5, 4.0])
        graph = Graph.from_edge_index(ei, 3, w)
        assert weighted_edges_of(graph) == {(0, 1): 3.5, (1, 2): 5.0, (2, 0): 0.5}
        kept = Graph.from_edge_index(ei, 3, w, dedupe=False, remove_self_loops=False)
        assert kept.num_edges == 6 and float(kept.weight.sum()) == pytest.approx(float(w.sum()))
        unweighted = Graph.from_edge_index(ei, 3)
        assert unweighted.weight is None and unweighted.num_edges == 3
        assert unweighted.in_weight.tolist() == [1.0, 1.0, 1.0]

    def test_num_nodes_includes_isolated(self):
        graph = Graph.from_edge_index(torch.tensor([[0], [1]]), num_nodes=5)
        assert graph.num_nodes == 5 and graph.rowptr.tolist() == [0, 0, 1, 1, 1, 1]

    def test_permute_relabels(self):
        graph = random_graph(4, weighted=True)
        perm = torch.randperm(graph.num_nodes, generator=torch.Generator().manual_seed(0))
        permuted = graph.permute(perm)
        expected = {(int(perm[u]), int(perm[v])): w for (u, v), w in weighted_edges_of(graph).items()}
        assert weighted_edges_of(permuted) == pytest.approx(expected)
        assert torch.equal(permuted.in_degree()[perm], graph.in_degree())
        inverse = torch.argsort(perm)
        back = permuted.permute(inverse)
        assert torch.equal(back.rowptr, graph.rowptr) and torch.equal(back.col, graph.col)

    def test_reverse_twice_is_identity(self):
        graph = random_graph(5, weighted=True)
        rev = graph.reverse()
        assert edges_of(rev) == {(v, u) for u, v in edges_of(graph)}
        assert torch.equal(rev.in_degree(), graph.out_degree())
        twice = rev.reverse()
        assert torch.equal(twice.rowptr, graph.rowptr) and torch.equal(twice.col, graph.col)
        assert torch.equal(twice.weight, graph.weight)

    def test_to_device(self, device):
        graph = random_graph(6, weighted=True)
        moved = graph.to(device)
        assert moved.device.type == device.type and moved.col.dtype == graph.col.dtype
        back = moved.to("cpu")
        assert torch.equal(back.rowptr, graph.rowptr) and torch.equal(back.col, graph.col)
        assert torch.equal(back.row, graph.row) and torch.equal(back.weight, graph.weight)

    @pytest.mark.parametrize(
        "edge_index, num_nodes, weight, expected",
        [
            (torch.tensor([[0, -1], [1, 2]]), None, None, "Expected non-negative node ids (got minimum -1)"),
            (torch.tensor([[0, 1], [1, 5]]), 3, None, "Expected node ids in [0, 3) for num_nodes=3 (got id 5)"),
            (torch.tensor([[0, 1], [1, 2]]), 3, torch.tensor([1.0, float("nan")]), "Expected finite edge weights"),
            (torch.tensor([[0, 1], [1, 2]]), 3, torch.tensor([1.0, -2.0]), "Expected non-negative edge weights (got minimum -2.0)"),
            (torch.tensor([[0.0, 1.0], [1.0, 2.0]]), 3, None, "Expected 'edge_index' to be of integer type (got torch.float32)"),
            (torch.zeros(3, 4, dtype=torch.long), None, None, "Expected 'edge_index' of shape (2, E) (got (3, 4))"),
            (torch.zeros(2, 0, dtype=torch.long), 4, None, "Expected at least one edge between distinct nodes (got 0 of 0)"),
            (torch.tensor([[1, 2], [1, 2]]), 3, None, "Expected at least one edge between distinct nodes (got 0 of 2)"),
            (torch.zeros(2, 0, dtype=torch.long), 0, None, "Expected a graph with at least one node (got num_nodes=0)"),
            (torch.tensor([[0, 1], [1, 2]]), 3, torch.tensor([1, 2]), "Expected 'weight' to be a floating-point tensor"),
            (torch.tensor([[0, 1], [1, 2]]), 3, torch.tensor([1.0]), "Expected 'weight' of shape (2,) (got (1,))"),
            ([[0, 1], [1, 2]], 3, None, "Expected 'edge_index' to be a torch.Tensor (got list)"),
        ],
    )
    def test_rejects_bad_input(self, edge_index, num_nodes, weight, expected):
        with pytest.raises(GraphFormatError, match=re.escape(expected)):
            Graph.from_edge_index(edge_index, num_nodes, weight)


# ------------------------------------------------------------------------- CSV and Parquet
def write_csv(path, text: str):
    path.write_text(textwrap.dedent(text).lstrip())
    return path


class TestEdgeTables:
    def test_csv_integer_ids(self, tmp_path):
        path = write_csv(tmp_path / "e.csv", """
            source,target,extra
            0,1,a
            1,2,b
            2,0,c
            0,1,d
            3,3,e
        """)
        graph, ids = read_edge_table(path)
        assert ids is None and graph.num_nodes == 4
        assert edges_of(graph) == {(0, 1), (1, 2), (2, 0)}
        assert graph.weight is None
        assert from_csv(path, num_nodes=10).num_nodes == 10
        assert edges_of(Graph.from_csv(path)) == edges_of(graph)

    def test_flow_flips(self, tmp_path):
        path = write_csv(tmp_path / "e.csv", "follower,followee\n5,1\n5,2\n1,2\n")
        graph = from_csv(path, source="followee", target="follower")
        flipped = from_csv(path, source="follower", target="followee", flow="target_to_source")
        assert edges_of(graph) == edges_of(flipped) == {(1, 5), (2, 5), (2, 1)}
        assert graph.in_degree()[5] == 2  # agent 5 follows two accounts
        with pytest.raises(ConfigError, match="Expected flow in"):
            from_csv(path, source="follower", target="followee", flow="both")

    def test_weights_summed_on_duplicates(self, tmp_path):
        path = write_csv(tmp_path / "w.csv", "source;target;w\n0;1;0.5\n0;1;1.5\n1;0;2\n")
        graph = from_csv(path, weight="w", sep=";")
        assert weighted_edges_of(graph) == {(0, 1): 2.0, (1, 0): 2.0}
        assert graph.weight.dtype == torch.float32

    def test_string_ids_relabelled(self, tmp_path):
        path = write_csv(tmp_path / "s.csv", "source,target\nbob,alice\ncarol,bob\nalice,carol\ndave,alice\n")
        graph, ids = read_edge_table(path)
        assert ids.tolist() == ["alice", "bob", "carol", "dave"]
        named = {(ids[u], ids[v]) for u, v in edges_of(graph)}
        assert named == {("bob", "alice"), ("carol", "bob"), ("alice", "carol"), ("dave", "alice")}

    def test_relabel_integers(self, tmp_path):
        path = write_csv(tmp_path / "i.csv", "source,target\n100,7\n7,5000\n")
        graph, ids = read_edge_table(path, relabel=True)
        assert ids.tolist() == [7, 100, 5000] and graph.num_nodes == 3
        assert edges_of(graph) == {(1, 0), (0, 2)}
        with pytest.raises(ConfigError, match="Expected num_nodes=None when ids are relabelled"):
            read_edge_table(path, relabel=True, num_nodes=10)

    def test_mixed_text_and_numeric_ids(self, tmp_path):
        path = write_csv(tmp_path / "m.csv", "source,target\n1,x\n2,1\n")
        graph, ids = read_edge_table(path)
        assert ids.tolist() == ["1", "2", "x"]
        assert {(ids[u], ids[v]) for u, v in edges_of(graph)} == {("1", "x"), ("2", "1")}

    def test_parquet_roundtrip(self, tmp_path):
        graph = random_graph(7, weighted=True)
        ei = graph.edge_index.numpy()
        frame = pd.DataFrame({"u": ei[0], "v": ei[1], "weight": graph.weight.numpy()})
        path = tmp_path / "g.parquet"
        frame.to_parquet(path)
        loaded = from_parquet(path, source="u", target="v", weight="weight", num_nodes=graph.num_nodes)
        assert torch.equal(loaded.rowptr, graph.rowptr) and torch.equal(loaded.col, graph.col)
        assert torch.allclose(loaded.weight, graph.weight)
        assert edges_of(Graph.from_parquet(path, source="u", target="v")) == edges_of(graph)
        # Text ids in Parquet are relabelled too.
        pd.DataFrame({"source": ["a", "b"], "target": ["b", "c"]}).to_parquet(tmp_path / "s.parquet")
        g2, ids = read_edge_table(tmp_path / "s.parquet")
        assert ids.tolist() == ["a", "b", "c"] and edges_of(g2) == {(0, 1), (1, 2)}

    @pytest.mark.parametrize(
        "text, kwargs, expected",
        [
            ("source,target\n0,1\n-1,2\n", {}, "Expected non-negative node ids (got minimum -1)"),
            ("source,target\n0,1\n1,9\n", {"num_nodes": 5}, "Expected node ids in [0, 5) for num_nodes=5 (got id 9)"),
            ("source,target,w\n0,1,1.0\n1,2,\n", {"weight": "w"}, "Expected finite edge weights"),
            ("source,target,w\n0,1,1.0\n1,2,-3\n", {"weight": "w"}, "Expected non-negative edge weights"),
            ("source,target,w\n0,1,1.0\n1,2,heavy\n", {"weight": "w"}, "Expected a numeric weight column 'w' (got dtype"),
            ("from,to\n0,1\n", {}, "Expected column(s) ['source', 'target'] in"),
            ("src,target\n0,1\n", {}, "Expected column(s) ['source'] in"),
            ("source,target\n0,1\n", {"weight": "w"}, "Expected column(s) ['w'] in"),
            ("source,target\n", {}, "Expected a graph with at least one node (got num_nodes=0)"),
            ("source,target\n2,2\n", {}, "Expected at least one edge between distinct nodes (got 0 of 1)"),
            ("source,target\n0,1\n,2\n", {}, "Expected a node id in every row of column 'source'"),
            ("", {}, "Expected a CSV header line in"),
        ],
    )
    def test_csv_rejects_bad_input(self, tmp_path, text, kwargs, expected):
        path = tmp_path / "bad.csv"
        path.write_text(text)
        with pytest.raises(GraphFormatError, match=re.escape(expected)) as info:
            from_csv(path, **kwargs)
        assert str(path) in str(info.value)

    @pytest.mark.parametrize("loader", [from_csv, from_parquet, from_gml])
    def test_missing_file(self, tmp_path, loader):
        path = tmp_path / "nope" / "missing.file"
        with pytest.raises(GraphFormatError, match="Expected a readable") as info:
            loader(path)
        assert str(path) in str(info.value)
        assert isinstance(info.value.__cause__, OSError)

    def test_parquet_rejects_bad_input(self, tmp_path):
        path = tmp_path / "bad.parquet"
        pd.DataFrame({"source": [0, 1], "dst": [1, 2]}).to_parquet(path)
        with pytest.raises(GraphFormatError, match=re.escape("Expected column(s) ['target']")):
            from_parquet(path)
        junk = tmp_path / "junk.parquet"
        junk.write_text("not parquet at all")
        with pytest.raises(GraphFormatError, match="Expected a Parquet file at"):
            from_parquet(junk)
        pd.DataFrame({"source": [0, 1], "target": [1, 2], "w": ["a", "b"]}).to_parquet(path)
        with pytest.raises(GraphFormatError, match="Expected a numeric weight column 'w'"):
            from_parquet(path, weight="w")


# ---------------------------------------------------------------------------------- GML
GML_HEADER_UNDIRECTED = """
graph [
  undirected 1
  multigraph 1
  node [ id 10 label "a" ]
  node [ id 20 label "b" ]
  node [ id 30 label "c" ]
  node [ id 40 label "d" ]
  edge [ source 30 target 10 ]
  edge [ source 10 target 30 ]
  edge [ source 20 target 10 ]
  edge [ source 20 target 10 ]
  edge [ source 40 target 20 ]
  edge [ source 40 target 40 ]
]
"""


class TestGML:
    def test_direction_kept_despite_undirected_header(self, tmp_path):
        path = tmp_path / "g.gml"
        path.write_text(GML_HEADER_UNDIRECTED)
        graph, labels = read_gml(path)
        assert labels.tolist() == ["a", "b", "c", "d"]
        assert edges_of(graph) == {(2, 0), (0, 2), (1, 0), (3, 1)}
        raw = from_gml(path, dedupe=False, remove_self_loops=False)
        assert raw.num_edges == 6
        flipped = from_gml(path, flow="target_to_source")
        assert edges_of(flipped) == {(v, u) for u, v in edges_of(graph)}
        mutual = from_gml(path, directed=False)
        assert edges_of(mutual) == edges_of(graph) | {(v, u) for u, v in edges_of(graph)}
        # directed=None obeys the header: no 'directed 1', so undirected (mutual follows).
        assert edges_of(from_gml(path, directed=None)) == edges_of(mutual)
        assert edges_of(Graph.from_gml(path)) == edges_of(graph)

    def test_directed_header_and_weights(self, tmp_path):
        path = tmp_path / "d.gml"
        path.write_text(
            'graph [ directed 1 node [ id 0 label "x" ] node [ id 1 label "y" ] '
            "edge [ source 1 target 0 value 2.5 ] ]"
        )
        graph = from_gml(path, directed=None, weight="value")
        assert weighted_edges_of(graph) == {(1, 0): 2.5}
        path.write_text(
            "graph [ directed 1 multigraph 1 node [ id 0 ] node [ id 1 ] "
            "edge [ source 1 target 0 ] edge [ source 1 target 0 ] ]"
        )
        assert edges_of(from_gml(path, directed=None)) == {(1, 0)}
        assert from_gml(path, directed=None, dedupe=False).num_edges == 2
        path.write_text("graph [\n directed 0\n node [ id 0 ]\n node [ id 1 ]\n edge [ source 1 target 0 ]\n]")
        assert edges_of(from_gml(path, directed=None)) == {(1, 0), (0, 1)}
        assert edges_of(from_gml(path)) == {(1, 0)}

    @pytest.mark.parametrize(
        "nodes",
        ['node [ id 5 label "same" ] node [ id 6 label "same" ]', "node [ id 5 ] node [ id 6 ]"],
        ids=["duplicated-labels", "missing-labels"],
    )
    def test_label_fallback_to_ids(self, tmp_path, nodes):
        path = tmp_path / "l.gml"
        path.write_text(f"graph [ {nodes} edge [ source 6 target 5 ] ]")
        graph, labels = read_gml(path)
        assert labels.tolist() == [5, 6]
        assert edges_of(graph) == {(1, 0)}

    def test_bad_gml(self, tmp_path):
        path = tmp_path / "bad.gml"
        path.write_text("graph [ node [ id 0 ] edge [ source 0 target 7 ] ]")
        with pytest.raises(GraphFormatError, match="Expected a valid GML graph") as info:
            from_gml(path)
        assert str(path) in str(info.value)
        path.write_text("this is not gml")
        with pytest.raises(GraphFormatError, match="Expected a 'graph \\[' block"):
            from_gml(path)

    @pytest.mark.data
    def test_polblogs(self, shared_data):
        path = shared_data / "polblogs" / "polblogs.gml"
        if not path.is_file():
            pytest.skip(f"{path} not present")
        raw, labels = read_gml(path, dedupe=False, remove_self_loops=False)
        assert raw.num_nodes == 1490 and len(labels) == 1490
        assert raw.num_edges == 19_090
        assert labels[0] == "100monkeystyping.com"
        graph = from_gml(path)
        assert 18_900 <= graph.num_edges < 19_090
        # Direction is the file's, not networkx's node order: about half the links point to a
        # lower id (an undirected reading would orient every edge one way).
        src, dst = graph.edge_index
        assert 0.3 < (src > dst).double().mean().item() < 0.7
        # Reciprocated links are present in both directions.
        assert len(edges_of(graph) & edges_of(graph.reverse())) > 1000


# ---------------------------------------------------------------------------- networkx
class TestNetworkx:
    def test_roundtrip(self):
        graph = random_graph(8, weighted=True)
        G = to_networkx(graph)
        assert isinstance(G, nx.DiGraph) and G.number_of_nodes() == graph.num_nodes
        back = from_networkx(G, weight="weight")
        assert torch.equal(back.rowptr, graph.rowptr) and torch.equal(back.col, graph.col)
        assert torch.allclose(back.weight, graph.weight)
        unweighted = barabasi_albert(300, 2, seed=1, directed=True)
        assert edges_of(Graph.from_networkx(unweighted.to_networkx())) == edges_of(unweighted)
        assert unweighted.to_networkx().number_of_edges() == unweighted.num_edges

    def test_undirected_labels_and_multigraph(self):
        G = nx.MultiGraph()
        G.add_nodes_from(["z", "y", "x", "lonely"])
        G.add_edge("z", "x", w=1.0)
        G.add_edge("z", "x", w=2.0)
        G.add_edge("y", "x", w=0.5)
        graph = from_networkx(G, weight="w")
        assert graph.num_nodes == 4
        assert weighted_edges_of(graph) == {(0, 2): 3.0, (2, 0): 3.0, (1, 2): 0.5, (2, 1): 0.5}

    def test_rejects_bad_input(self):
        G = nx.DiGraph([(0, 1), (1, 2)])
        G.edges[0, 1]["w"] = 1.0
        with pytest.raises(GraphFormatError, match="Expected edge attribute 'w' on every edge"):
            from_networkx(G, weight="w")
        G.edges[1, 2]["w"] = "big"
        with pytest.raises(GraphFormatError, match="Expected a numeric edge attribute 'w'"):
            from_networkx(G, weight="w")
        G.edges[1, 2]["w"] = -1.0
        with pytest.raises(GraphFormatError, match="Expected non-negative edge weights"):
            from_networkx(G, weight="w")
        with pytest.raises(GraphFormatError, match="Expected a graph with at least one node"):
            from_networkx(nx.DiGraph())
        with pytest.raises(GraphFormatError, match="Expected at least one edge"):
            from_networkx(nx.empty_graph(5))
        with pytest.raises(GraphFormatError, match="Expected a networkx graph"):
            from_networkx([(0, 1)])


# --------------------------------------------------------------------------------- PyG
class TestPyG:
    def test_roundtrip(self, device):
        graph = random_graph(9, weighted=True).to(device)
        data = graph.to_pyg()
        assert isinstance(data, Data) and data.num_nodes == graph.num_nodes
        assert data.edge_index.dtype == torch.int64 and torch.equal(data.edge_index, graph.edge_index)
        assert torch.equal(data.edge_weight, graph.weight)
        assert data.edge_index.device.type == device.type
        back = Graph.from_pyg(data)
        assert torch.equal(back.rowptr, graph.rowptr) and torch.equal(back.col, graph.col)
        assert torch.equal(back.weight, graph.weight)
        plain = to_pyg(random_graph(10))
        assert "edge_weight" not in plain.keys()
        assert from_pyg(plain).weight is None

    def test_isolated_nodes_kept(self):
        data = Data(edge_index=torch.tensor([[0, 1], [1, 0]]), num_nodes=7)
        assert from_pyg(data).num_nodes == 7

    def test_rejects_bad_input(self):
        with pytest.raises(GraphFormatError, match="Expected a 1-D 'edge_weight' \\(got \\(2, 1\\)\\)"):
            from_pyg(Data(edge_index=torch.tensor([[0, 1], [1, 0]]), edge_weight=torch.ones(2, 1), num_nodes=2))
        with pytest.raises(GraphFormatError, match="with an 'edge_index'"):
            from_pyg(Data(x=torch.ones(3, 1)))
        with pytest.raises(GraphFormatError, match="Expected node ids in \\[0, 2\\)"):
            from_pyg(Data(edge_index=torch.tensor([[0, 1], [1, 3]]), num_nodes=2))
        with pytest.raises(GraphFormatError, match="of integer type"):
            from_pyg(Data(edge_index=torch.tensor([[0.0, 1.0], [1.0, 0.0]]), num_nodes=2))
