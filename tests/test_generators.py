"""Structural invariants of the random graph generators (lpm.generators)."""

from __future__ import annotations

import math
import re

import networkx as nx
import pytest
import torch

from lpm.errors import ConfigError
from lpm.graph import Graph
from lpm.generators import (
    barabasi_albert,
    configuration_model,
    directed_configuration_model,
    holme_kim,
    sbm_homophily,
    stochastic_block_model,
    watts_strogatz,
)


# ------------------------------------------------------------------------------------ helpers
def edge_set(graph: Graph) -> set[tuple[int, int]]:
    return set(map(tuple, graph.edge_index.T.tolist()))


def is_mutual(graph: Graph) -> bool:
    return edge_set(graph) == edge_set(graph.reverse())


def undirected_nx(graph: Graph) -> nx.Graph:
    G = nx.Graph()
    G.add_nodes_from(range(graph.num_nodes))
    G.add_edges_from(graph.edge_index.T.tolist())
    return G


def tail_exponent(degree: torch.Tensor, k_min: int) -> float:
    """Discrete power-law MLE (Clauset, Shalizi & Newman 2009, eq. 3.7 approximation)."""
    tail = degree[degree >= k_min].double()
    return 1.0 + tail.numel() / torch.log(tail / (k_min - 0.5)).sum().item()


def assert_csr_valid(graph: Graph) -> None:
    rowptr = graph.rowptr.long()
    assert rowptr[0] == 0 and rowptr[-1] == graph.num_edges
    assert bool((rowptr[1:] >= rowptr[:-1]).all())
    key = graph.row.long() * graph.num_nodes + graph.col.long()
    assert bool((key[1:] > key[:-1]).all()), "edges must be sorted and unique"
    assert bool((graph.row != graph.col).all()), "no self-loops"


# --------------------------------------------------------------------------- Barabasi-Albert
class TestBarabasiAlbert:
    N, M = 20_000, 3

    @pytest.fixture(scope="class")
    @classmethod
    def graph(cls) -> Graph:
        return barabasi_albert(cls.N, cls.M, seed=7)

    def test_csr_and_mutual(self, graph):
        assert_csr_valid(graph)
        assert graph.num_nodes == self.N
        assert is_mutual(graph)

    def test_edge_count_within_duplicate_loss(self, graph):
        undirected = graph.num_edges // 2
        upper = self.M * (self.M + 1) // 2 + (self.N - self.M - 1) * self.M
        assert undirected <= upper
        assert undirected >= 0.97 * upper  # repeated picks of a hub merge: a small loss

    def test_every_new_node_attached(self, graph):
        degree = graph.in_degree()
        assert int(degree.min()) >= 1
        # A new node has at most m own attachments; its degree counts later ones too.
        assert int(degree[-1]) <= self.M

    def test_heavy_tail(self, graph):
        degree = graph.in_degree()
        mean = degree.double().mean().item()
        assert abs(mean - 2 * self.M) < 0.2
        assert int(degree.max()) > 20 * mean
        alpha = tail_exponent(degree, k_min=10)
        assert 2.0 < alpha < 3.5, alpha

    def test_linear_preferential_attachment_degree_age_law(self, graph):
        # Linear PA: E[k_i] ~ m sqrt(N / i) -> log-log slope of mean degree vs. node age -1/2.
        # Uniform attachment would give a logarithmic profile (slope near 0 at small i).
        degree = graph.in_degree().double()
        edges = torch.logspace(math.log10(50), math.log10(self.N), 12).long()
        x, y = [], []
        for lo, hi in zip(edges[:-1].tolist(), edges[1:].tolist()):
            x.append(math.log((lo + hi) / 2))
            y.append(math.log(degree[lo:hi].mean().item()))
        x_t, y_t = torch.tensor(x), torch.tensor(y)
        slope = ((x_t - x_t.mean()) * (y_t - y_t.mean())).sum() / ((x_t - x_t.mean()) ** 2).sum()
        assert -0.6 < slope.item() < -0.4, slope.item()

    def test_seeding(self):
        a = barabasi_albert(500, 2, seed=1)
        b = barabasi_albert(500, 2, seed=1)
        c = barabasi_albert(500, 2, seed=2)
        assert torch.equal(a.rowptr, b.rowptr) and torch.equal(a.col, b.col)
        assert edge_set(a) != edge_set(c)

    def test_global_rng_untouched(self):
        state = torch.get_rng_state()
        barabasi_albert(300, 2, seed=3)
        assert torch.equal(state, torch.get_rng_state())

    def test_directed_old_to_new(self):
        n, m = 2_000, 4
        graph = barabasi_albert(n, m, seed=5, directed=True)
        assert_csr_valid(graph)
        src, dst = graph.edge_index
        assert bool((src < dst).all()), "information flows from older to newer nodes"
        followees = graph.in_degree()
        assert bool((followees[m + 1:] >= 1).all()) and bool((followees[m + 1:] <= m).all())
        # The clique: node i follows every older clique node.
        assert followees[: m + 1].tolist() == list(range(m + 1))
        assert graph.num_edges == pytest.approx(barabasi_albert(n, m, seed=5).num_edges / 2)

    def test_small_graph_is_clique(self):
        graph = barabasi_albert(4, 3, seed=0)
        assert graph.num_edges == 12  # K4, both directions

    @pytest.mark.parametrize(
        "kwargs, message",
        [
            (dict(num_nodes=10, m=0), "Expected m >= 1 (got 0)"),
            (dict(num_nodes=3, m=3), "Expected num_nodes > m = 3 (got num_nodes=3)"),
            (dict(num_nodes=10.0, m=2), "Expected num_nodes to be an int"),
            (dict(num_nodes=10, m=2, seed=1.5), "Expected seed to be an int"),
        ],
    )
    def test_validation(self, kwargs, message):
        kwargs.setdefault("seed", 0)
        with pytest.raises(ConfigError, match=re.escape(message)):
            barabasi_albert(**kwargs)


# ------------------------------------------------------- parallel resolution vs. sequential
def sequential_reference(num_nodes: int, m: int, p_triad: float, seed: int) -> set[tuple[int, int]]:
    """The same random draws as lpm.generators, resolved one edge at a time in plain Python."""
    gen = torch.Generator().manual_seed(seed)
    n0, e0 = m + 1, m * (m + 1) // 2
    num_new = num_nodes - n0
    node_idx = torch.arange(num_new).repeat_interleave(m)
    u = torch.rand(node_idx.shape, dtype=torch.float64, generator=gen)
    high = 2 * (e0 + node_idx * m)
    slot = torch.minimum((u * high.double()).long(), high - 1).tolist()
    triad = [False] * (num_new * m)
    pick = None
    if p_triad > 0:
        j = torch.arange(m).repeat(num_new)
        triad = ((j > 0) & (torch.rand(j.shape, dtype=torch.float64, generator=gen) < p_triad)).tolist()
        pick = torch.randint(0, m, (e0 + num_new * m,), generator=gen, dtype=torch.int64).tolist()
    clique = torch.triu_indices(n0, n0, 1).tolist()
    target, creator = clique[0], clique[1]  # clique edge: older -> newer
    for i in range(num_new * m):
        e = e0 + i
        creator.append(n0 + i // m)
        if triad[i]:
            w, k = target[e - 1], pick[e]
            target.append((w + 1 + k) % n0 if w < n0 else target[e0 + (w - n0) * m + k])
        else:
            s_ = slot[i]
            target.append(creator[s_ // 2] if s_ % 2 == 0 else target[s_ // 2])
    return {(t, c) for t, c in zip(target, creator)}


@pytest.mark.parametrize("p_triad", [0.0, 0.6, 1.0])
def test_parallel_resolution_matches_sequential(p_triad):
    graph = holme_kim(400, 3, p_triad, seed=13, directed=True)
    assert edge_set(graph) == sequential_reference(400, 3, p_triad, seed=13)


def test_resolution_independent_of_blocking(monkeypatch):
    from lpm.graph.generators import preferential

    default = holme_kim(3_000, 4, 0.8, seed=2)
    monkeypatch.setattr(preferential, "_PA_BLOCK_MIN", 7)
    monkeypatch.setattr(preferential, "_PA_BLOCK_GROWTH", 0.05)
    assert edge_set(holme_kim(3_000, 4, 0.8, seed=2)) == edge_set(default)


# -------------------------------------------------------------------------------- Holme-Kim
class TestHolmeKim:
    def test_p_zero_is_barabasi_albert(self):
        a = holme_kim(3_000, 3, 0.0, seed=11)
        b = barabasi_albert(3_000, 3, seed=11)
        assert edge_set(a) == edge_set(b)

    def test_clustering_grows_with_p_triad(self):
        clustering = [nx.average_clustering(undirected_nx(holme_kim(2_000, 3, p, seed=4))) for p in (0.0, 0.5, 0.9)]
        assert clustering[0] < 0.05
        assert clustering[0] + 0.1 < clustering[1] < clustering[2] - 0.1, clustering

    def test_still_scale_free(self):
        graph = holme_kim(20_000, 3, 0.5, seed=2)
        assert_csr_valid(graph)
        assert is_mutual(graph)
        degree = graph.in_degree()
        assert int(degree.min()) >= 1
        assert int(degree.max()) > 20 * degree.double().mean().item()
        assert 2.0 < tail_exponent(degree, k_min=10) < 3.5

    def test_full_triad_closes_triangles(self):
        # With p_triad = 1 every edge of a new node after its first goes to a node adjacent to
        # one of its earlier targets: each new node's followees form a connected set.
        n, m = 1_500, 4
        graph = holme_kim(n, m, 1.0, seed=9, directed=True)
        assert bool((graph.edge_index[0] < graph.edge_index[1]).all())
        G = undirected_nx(graph)
        rowptr, col = graph.rowptr.long(), graph.col.long()
        for t in range(m + 1, n, 37):
            followees = col[rowptr[t]: rowptr[t + 1]].tolist()
            assert nx.is_connected(G.subgraph(followees)), (t, followees)

    def test_seeding_and_validation(self):
        a = holme_kim(800, 3, 0.7, seed=1)
        assert edge_set(a) == edge_set(holme_kim(800, 3, 0.7, seed=1))
        assert edge_set(a) != edge_set(holme_kim(800, 3, 0.7, seed=2))
        with pytest.raises(ConfigError, match=r"Expected p_triad in \[0, 1\] \(got 1.5\)"):
            holme_kim(100, 2, 1.5, seed=0)
        with pytest.raises(ConfigError, match="Expected p_triad in"):
            holme_kim(100, 2, float("nan"), seed=0)


# --------------------------------------------------------------------------- Watts-Strogatz
class TestWattsStrogatz:
    def test_p_zero_is_ring_lattice(self):
        n, k = 500, 4
        graph = watts_strogatz(n, k, 0.0, seed=0)
        assert_csr_valid(graph)
        assert bool((graph.in_degree() == k).all()) and bool((graph.out_degree() == k).all())
        expected = {(i, (i + d) % n) for i in range(n) for d in (-2, -1, 1, 2)}
        assert edge_set(graph) == expected
        clustering = nx.average_clustering(undirected_nx(graph))
        assert clustering == pytest.approx(3 * (k - 2) / (4 * (k - 1)))

    def test_p_one_destroys_clustering(self):
        n, k = 5_000, 6
        graph = watts_strogatz(n, k, 1.0, seed=3)
        assert_csr_valid(graph)
        assert is_mutual(graph)
        assert n * k / 2 * 0.99 <= graph.num_edges / 2 <= n * k / 2
        assert nx.average_clustering(undirected_nx(graph)) < 0.01

    def test_rewired_share(self):
        n, k, p = 10_000, 4, 0.2
        graph = watts_strogatz(n, k, p, seed=8, directed=True)
        src, dst = graph.edge_index
        lattice = torch.remainder(src - dst, n) <= k // 2
        # A rewired edge lands back on the lattice with probability ~ k / (2 n): negligible.
        share = 1.0 - lattice.double().mean().item()
        assert share == pytest.approx(p, abs=0.01)
        assert bool((graph.in_degree() <= k // 2).all())

    @pytest.mark.parametrize(
        "args, message",
        [((10, 3, 0.1), "Expected an even k (got 3)"), ((4, 4, 0.1), "Expected num_nodes > k = 4"),
         ((10, 0, 0.1), "Expected k >= 2 (got 0)"), ((10, 2, -0.1), "Expected p_rewire in [0, 1] (got -0.1)")],
    )
    def test_validation(self, args, message):
        with pytest.raises(ConfigError, match=re.escape(message)):
            watts_strogatz(*args, seed=0)


# ---------------------------------------------------------------------- stochastic block model
class TestStochasticBlockModel:
    @pytest.mark.parametrize("directed", [True, False])
    @pytest.mark.parametrize("homophily", [0.25, 0.8])
    def test_homophily_share(self, directed, homophily):
        n, blocks, degree = 20_000, 4, 10.0
        graph, block = sbm_homophily(n, blocks, degree, homophily, seed=3, directed=directed)
        assert_csr_valid(graph)
        assert block.shape == (n,) and block.dtype == torch.int64
        assert torch.bincount(block).tolist() == [n // blocks] * blocks
        src, dst = graph.edge_index
        within = (block[src] == block[dst]).double().mean().item()
        assert within == pytest.approx(homophily, abs=0.02)
        assert graph.in_degree().double().mean().item() == pytest.approx(degree, rel=0.03)
        if not directed:
            assert is_mutual(graph)

    def test_exact_block_structure(self):
        # p = 1 inside block 0 (complete), p = 0 elsewhere except 1 -> 0 edges at rate 0.5.
        sizes = [30, 40]
        probs = [[1.0, 0.0], [0.5, 0.0]]
        graph = stochastic_block_model(sizes, probs, seed=1)
        src, dst = graph.edge_index
        in0 = lambda x: x < 30  # noqa: E731
        inside = in0(src) & in0(dst)
        assert int(inside.sum()) == 30 * 29
        assert bool((in0(dst)).all()), "nothing is followed from block 1"
        cross = int((~in0(src)).sum())
        assert abs(cross - 0.5 * 40 * 30) < 5 * math.sqrt(40 * 30 * 0.25)

    def test_sparse_path_edge_count(self):
        # 3000 x 3000 pairs per block pair > 2**20: exercises the sampling without a permutation.
        sizes = [3_000, 3_000]
        probs = torch.tensor([[0.002, 0.0005], [0.0005, 0.002]])
        counts = []
        for seed in range(5):
            graph = stochastic_block_model(sizes, probs, seed=seed, directed=False)
            assert_csr_valid(graph)
            counts.append(graph.num_edges / 2)
        expected = 2 * 0.002 * 3000 * 2999 / 2 + 0.0005 * 3000 * 3000
        sd = math.sqrt(expected)
        assert abs(sum(counts) / 5 - expected) < 4 * sd / math.sqrt(5)

    def test_validation(self):
        with pytest.raises(ConfigError, match=r"Expected edge_probs of shape \(2, 2\)"):
            stochastic_block_model([5, 5], [[0.1, 0.1]], seed=0)
        with pytest.raises(ConfigError, match=r"Expected edge_probs in \[0, 1\]"):
            stochastic_block_model([5, 5], [[0.1, 1.1], [0.1, 0.1]], seed=0)
        with pytest.raises(ConfigError, match="symmetric"):
            stochastic_block_model([5, 5], [[0.1, 0.2], [0.1, 0.1]], seed=0, directed=False)
        with pytest.raises(ConfigError, match=r"Expected block_sizes\[1\] >= 1 \(got 0\)"):
            stochastic_block_model([5, 0], [[0.1, 0.2], [0.1, 0.1]], seed=0)
        with pytest.raises(ConfigError, match="Expected mean_degree small enough"):
            sbm_homophily(20, 2, 15.0, 0.9, seed=0)
        with pytest.raises(ConfigError, match=r"Expected homophily in \[0, 1\]"):
            sbm_homophily(200, 2, 5.0, 1.2, seed=0)


# ----------------------------------------------------------------------- configuration model
class TestConfigurationModel:
    def test_degrees_reproduced_up_to_erasure(self):
        gen = torch.Generator().manual_seed(0)
        degrees = (torch.rand(10_000, generator=gen).pow(-1 / 1.5)).floor().long().clamp(max=200)  # heavy tail
        if int(degrees.sum()) % 2:
            degrees[0] += 1
        graph = configuration_model(degrees, seed=1)
        assert_csr_valid(graph)
        assert is_mutual(graph)
        realised = graph.in_degree()
        assert bool((realised <= degrees).all())
        loss = (degrees - realised).double().sum().item() / degrees.sum().item()
        assert loss < 0.03, loss
        assert (realised == degrees).double().mean().item() > 0.95

    def test_regular_sequence_nearly_exact(self):
        graph = configuration_model([3] * 2000, seed=4)
        realised = graph.in_degree()
        assert int(realised.max()) == 3 and (realised == 3).double().mean().item() > 0.99

    def test_directed_sums_and_bounds(self):
        gen = torch.Generator().manual_seed(2)
        out_deg = torch.randint(0, 12, (5_000,), generator=gen)
        in_deg = out_deg[torch.randperm(5_000, generator=gen)]
        graph = directed_configuration_model(in_deg, out_deg, seed=3)
        assert_csr_valid(graph)
        assert bool((graph.in_degree() <= in_deg).all()) and bool((graph.out_degree() <= out_deg).all())
        lost = int(out_deg.sum()) - graph.num_edges
        assert 0 <= lost < 0.01 * int(out_deg.sum())
        # Erasure removes whole edges: both sums fall by the same amount.
        assert int(graph.in_degree().sum()) == int(graph.out_degree().sum()) == graph.num_edges

    def test_seeding_and_validation(self):
        a = configuration_model([2] * 100, seed=1)
        assert edge_set(a) == edge_set(configuration_model([2] * 100, seed=1))
        with pytest.raises(ConfigError, match=r"Expected degrees with an even, positive sum \(got sum 3\)"):
            configuration_model([1, 1, 1], seed=0)
        with pytest.raises(ConfigError, match=r"Expected degrees >= 0 \(got minimum -1\)"):
            configuration_model([2, -1, 1], seed=0)
        with pytest.raises(ConfigError, match=r"Expected sum\(in_degrees\) == sum\(out_degrees\) \(got 3 and 2\)"):
            directed_configuration_model([1, 1, 1], [1, 1, 0], seed=0)
        with pytest.raises(ConfigError, match="same length"):
            directed_configuration_model([1, 1], [1, 1, 0], seed=0)
        with pytest.raises(ConfigError, match="integer type"):
            configuration_model([1.0, 1.0], seed=0)


# ------------------------------------------------------------------------- Graph delegates
def test_graph_classmethods_delegate(device):
    assert edge_set(Graph.barabasi_albert(200, 2, seed=1)) == edge_set(barabasi_albert(200, 2, seed=1))
    assert edge_set(Graph.holme_kim(200, 2, 0.5, seed=1)) == edge_set(holme_kim(200, 2, 0.5, seed=1))
    assert edge_set(Graph.watts_strogatz(200, 4, 0.1, seed=1)) == edge_set(watts_strogatz(200, 4, 0.1, seed=1))
    g, block = Graph.sbm_homophily(200, 2, 4.0, 0.9, seed=1, device=device)
    assert g.device.type == device.type and block.device.type == device.type
    sbm = Graph.stochastic_block_model([50, 50], [[0.1, 0.01], [0.01, 0.1]], seed=1, device=device)
    assert sbm.device.type == device.type
    assert Graph.configuration_model([2] * 50, seed=1).num_nodes == 50
    assert Graph.directed_configuration_model([1] * 50, [1] * 50, seed=1).num_nodes == 50
    moved = Graph.barabasi_albert(100, 2, seed=0, device=device)
    assert moved.device.type == device.type and moved.row.device.type == device.type
