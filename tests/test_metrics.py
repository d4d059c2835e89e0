"""Metrics against hand-computed cases and brute-force references (networkx, numpy loops, scipy)."""

from __future__ import annotations

import math
from collections import Counter

import networkx as nx
import numpy as np
import pytest
import torch

from lpm import metrics
from lpm.errors import ConfigError, DataFormatError
from lpm.graph import Graph

INF = math.inf


# ====================================================================== builders
def forest(num_agents: int, cascades: list[list[dict[int, tuple[int, float]]]], device="cpu"):
    """``(parent, reshare_time)`` from ``cascades[b][c] = {agent: (parent, time)}``."""
    batch, items = len(cascades), len(cascades[0])
    parent = torch.full((batch, num_agents, items), -1, dtype=torch.long)
    time = torch.full((batch, num_agents, items), INF, dtype=torch.float64)
    for b, row in enumerate(cascades):
        for c, tree in enumerate(row):
            for agent, (p, t) in tree.items():
                parent[b, agent, c] = p
                time[b, agent, c] = t
    return parent.to(device), time.to(device)


# Star: source 5 posts at t=0; agents 0..3 reshare from it at t = 1, 1, 2, 3.
STAR = {5: (-1, 0.0), 0: (5, 1.0), 1: (5, 1.0), 2: (5, 2.0), 3: (5, 3.0)}
# Chain 4 -> 0 -> 1 -> 2 -> 3 at t = 0..4.
CHAIN = {4: (-1, 0.0), 0: (4, 1.0), 1: (0, 2.0), 2: (1, 3.0), 3: (2, 4.0)}
# Mixed tree (reshare times in brackets):
#
#                 0 [0]
#               /       \
#          1 [1]         2 [2]
#         /  |  \           \
#    3 [3] 4 [3] 5 [4]      6 [5]
#                             |
#                           7 [6]
#
# depths 0,1,1,2,2,2,2,3; level sizes 1,2,4,1; subtree sizes s(1)=4, s(2)=3, s(6)=2, leaves 1:
# Wiener index sum s (n - s) = 4*4 + 3*5 + 2*6 + 4 leaves * 1*7 = 71, virality 2*71/(8*7) = 71/28.
MIXED = {0: (-1, 0.0), 1: (0, 1.0), 2: (0, 2.0), 3: (1, 3.0), 4: (1, 3.0), 5: (1, 4.0), 6: (2, 5.0), 7: (6, 6.0)}
# Agents 8 and 9 are never members; scenario 1 holds a single-node cascade and two empty ones.
HAND = [[STAR, CHAIN, MIXED], [{9: (-1, 2.0)}, {}, {}]]
HAND_TIMES = [10.0, -1.0, 0.0, 1.0, 2.5, 3.0, 4.5]  # deliberately unsorted


def random_forest(batch: int, num_agents: int, items: int, seed: int, dtype=torch.float64):
    """Random recursive trees (plus chain-like runs) with times increasing along paths.

    Each cascade has 0, 1 or a random number of members in a random order; each later member picks
    its parent uniformly among earlier ones, or (half the time) the previous member, which makes deep
    trees; a tenth of reshares happen at the same time as their parent (ties).
    """
    rng = np.random.default_rng(seed)
    parent = np.full((batch, num_agents, items), -1, dtype=np.int64)
    time = np.full((batch, num_agents, items), np.inf)
    for b in range(batch):
        for c in range(items):
            u = rng.random()
            n = 0 if u < 0.1 else 1 if u < 0.2 else int(rng.integers(2, num_agents + 1))
            agents = rng.permutation(num_agents)[:n]
            for k, a in enumerate(agents):
                if k == 0:
                    time[b, a, c] = rng.random() * 3
                    continue
                p = agents[k - 1] if rng.random() < 0.5 else agents[rng.integers(0, k)]
                parent[b, a, c] = p
                time[b, a, c] = time[b, p, c] + (0.0 if rng.random() < 0.1 else rng.exponential(2.0))
    return torch.from_numpy(parent), torch.from_numpy(time).to(dtype)


def nx_trees(parent: torch.Tensor, time: torch.Tensor, at: float = INF):
    """``{(b, c): (undirected nx tree of members with time <= at, source or None)}``."""
    parent, time = parent.cpu().numpy(), time.cpu().numpy()
    out = {}
    for b in range(parent.shape[0]):
        for c in range(parent.shape[2]):
            g = nx.Graph()
            source = None
            for i in np.nonzero(np.isfinite(time[b, :, c]) & (time[b, :, c] <= at))[0]:
                g.add_node(int(i))
                if parent[b, i, c] >= 0:
                    g.add_edge(int(i), int(parent[b, i, c]))
                else:
                    source = int(i)
            out[b, c] = (g, source)
    return out


def brute_curves(parent, time, times):
    """Size, depth, max breadth and virality at each time by networkx."""
    batch, _, items = parent.shape
    out = {k: np.zeros((batch, items, len(times))) for k in ("size", "depth", "max_breadth", "structural_virality")}
    for s, t in enumerate(times):
        for (b, c), (g, source) in nx_trees(parent, time, t).items():
            n = g.number_of_nodes()
            out["size"][b, c, s] = n
            if n == 0:
                out["depth"][b, c, s] = -1
                continue
            dist = nx.single_source_shortest_path_length(g, source)
            out["depth"][b, c, s] = max(dist.values())
            out["max_breadth"][b, c, s] = max(Counter(dist.values()).values())
            out["structural_virality"][b, c, s] = nx.average_shortest_path_length(g) if n > 1 else 0.0
    return out


# ====================================================================== cascades: hand cases
def test_depth_hand(device):
    parent, time = forest(10, HAND, device)
    depth = metrics.cascade_depth(parent, time).cpu()
    assert depth.dtype == torch.int64 and depth.shape == (2, 10, 3)
    assert depth[0, :, 0].tolist() == [1, 1, 1, 1, -1, 0, -1, -1, -1, -1]
    assert depth[0, :, 1].tolist() == [1, 2, 3, 4, 0, -1, -1, -1, -1, -1]
    assert depth[0, :, 2].tolist() == [0, 1, 1, 2, 2, 2, 2, 3, -1, -1]
    assert depth[1, :, 0].tolist() == [-1] * 9 + [0]
    assert bool((depth[1, :, 1:] == -1).all())


def test_final_shape_statistics_hand(device):
    parent, time = forest(10, HAND, device)
    virality = metrics.structural_virality(parent, time).cpu()
    assert virality.dtype == torch.float64
    # star: 4 edges with s = 1 -> W = 4 * 1 * 4 = 16, v = 2 * 16 / (5 * 4) = 1.6
    # chain: s = 1..4 -> W = 4 + 6 + 6 + 4 = 20, v = 40 / 20 = 2.0
    torch.testing.assert_close(virality, torch.tensor([[1.6, 2.0, 71 / 28], [0.0, 0.0, 0.0]], dtype=torch.float64))
    summary = metrics.cascade_summary(parent, time, [100.0])
    assert summary["size"][..., 0].tolist() == [[5, 5, 8], [1, 0, 0]]
    assert summary["depth"][..., 0].tolist() == [[1, 4, 3], [0, -1, -1]]
    assert summary["max_breadth"][..., 0].tolist() == [[4, 1, 4], [1, 0, 0]]
    torch.testing.assert_close(summary["structural_virality"][..., 0], virality)


def test_curves_hand(device):
    parent, time = forest(10, HAND, device)
    times = torch.tensor(HAND_TIMES, dtype=torch.float64, device=device)
    # times:                 10  -1   0   1  2.5  3  4.5
    size = [[[5, 0, 1, 3, 4, 5, 5], [5, 0, 1, 2, 3, 4, 5], [8, 0, 1, 2, 3, 5, 6]],
            [[1, 0, 0, 0, 1, 1, 1], [0] * 7, [0] * 7]]
    depth = [[[1, -1, 0, 1, 1, 1, 1], [4, -1, 0, 1, 2, 3, 4], [3, -1, 0, 1, 1, 2, 2]],
             [[0, -1, -1, -1, 0, 0, 0], [-1] * 7, [-1] * 7]]
    breadth = [[[4, 0, 1, 2, 3, 4, 4], [1, 0, 1, 1, 1, 1, 1], [4, 0, 1, 1, 2, 2, 3]],
               [[1, 0, 0, 0, 1, 1, 1], [0] * 7, [0] * 7]]
    assert metrics.cascade_size(time, times).tolist() == size
    assert metrics.cascade_depth_curve(parent, time, times).tolist() == depth
    assert metrics.max_breadth_curve(parent, time, times).tolist() == breadth
    summary = metrics.cascade_summary(parent, time, times)
    assert summary["size"].tolist() == size
    assert summary["depth"].tolist() == depth
    assert summary["max_breadth"].tolist() == breadth
    # mixed tree: at 1 nodes {0, 1}: one pair at distance 1; at 2.5 {0, 1, 2}: distances 1, 1, 2 -> 4/3;
    # at 3 nodes 0..4: pairwise distances sum to 18 -> 2 * 18 / 20 = 1.8; at 4.5 node 5 joins under 1:
    # W = 3 leaves * 1*5 + s(1) = 4: 4*2 + s(2) = 1: 1*5 = 28 -> 56 / 30.
    mixed = summary["structural_virality"][0, 2].cpu()
    torch.testing.assert_close(mixed, torch.tensor([71 / 28, 0, 0, 1.0, 4 / 3, 1.8, 56 / 30], dtype=torch.float64))
    for s, t in enumerate(HAND_TIMES):
        torch.testing.assert_close(metrics.structural_virality(parent, time, at=t), summary["structural_virality"][..., s])


# ====================================================================== cascades: random vs networkx
@pytest.mark.parametrize("shape,seed", [((3, 40, 7), 0), ((1, 25, 12), 1), ((4, 60, 2), 2)])
def test_depth_random_vs_networkx(device, shape, seed):
    parent, time = random_forest(*shape, seed=seed)
    depth = metrics.cascade_depth(parent.to(device), time.to(device)).cpu()
    expected = torch.full(shape, -1, dtype=torch.long)
    for (b, c), (g, source) in nx_trees(parent, time).items():
        if source is not None:
            for node, d in nx.single_source_shortest_path_length(g, source).items():
                expected[b, node, c] = d
    assert torch.equal(depth, expected)


@pytest.mark.parametrize("shape,seed", [((3, 40, 7), 3), ((2, 30, 5), 4)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_curves_random_vs_networkx(device, shape, seed, dtype):
    parent, time = random_forest(*shape, seed=seed, dtype=dtype)
    times = [6.0, 0.5, 2.0, 4.0, 4.0, 15.0, 100.0, -3.0]
    expected = brute_curves(parent, time, times)
    summary = metrics.cascade_summary(parent.to(device), time.to(device), torch.tensor(times, device=device))
    for key in ("size", "depth", "max_breadth"):
        assert summary[key].cpu().tolist() == expected[key].astype(int).tolist(), key
    np.testing.assert_allclose(summary["structural_virality"].cpu().double().numpy(),
                               expected["structural_virality"], rtol=1e-5)
    assert summary["structural_virality"].dtype == dtype
    assert torch.equal(metrics.cascade_size(time.to(device), times), summary["size"])
    assert torch.equal(metrics.cascade_depth_curve(parent.to(device), time.to(device), times), summary["depth"])
    assert torch.equal(metrics.max_breadth_curve(parent.to(device), time.to(device), times), summary["max_breadth"])
    final = metrics.structural_virality(parent.to(device), time.to(device)).cpu().double().numpy()
    np.testing.assert_allclose(final, brute_curves(parent, time, [INF])["structural_virality"][..., 0], rtol=1e-5)


def test_breadth_chunks_levels(monkeypatch):
    """A deep chain forces the breadth curve through several level chunks."""
    parent, time = random_forest(2, 80, 3, seed=5)
    times = [1.0, 3.0, 10.0, 1000.0]
    expected = metrics.max_breadth_curve(parent, time, times)
    monkeypatch.setattr(metrics.trees, "_CHUNK_ELEMENTS", 7)
    assert torch.equal(metrics.max_breadth_curve(parent, time, times), expected)
    assert expected.tolist() == brute_curves(parent, time, times)["max_breadth"].astype(int).tolist()


def test_batch_equals_single_runs():
    parent, time = random_forest(3, 30, 4, seed=6)
    times = [1.0, 5.0, 50.0]
    full = metrics.cascade_summary(parent, time, times)
    for b in range(3):
        one = metrics.cascade_summary(parent[b:b + 1], time[b:b + 1], times)
        for key in full:
            assert torch.equal(one[key], full[key][b:b + 1]), key


def test_permuting_agents():
    """Relabelling agents permutes depths and leaves every per-cascade statistic unchanged."""
    parent, time = random_forest(2, 30, 4, seed=7)
    perm = torch.randperm(30, generator=torch.Generator().manual_seed(0))
    p2 = torch.full_like(parent, -1)
    p2[:, perm] = torch.where(parent >= 0, perm[parent.clamp(min=0)], parent)
    t2 = torch.empty_like(time)
    t2[:, perm] = time
    depth, depth2 = metrics.cascade_depth(parent, time), metrics.cascade_depth(p2, t2)
    assert torch.equal(depth2[:, perm], depth)
    times = [0.5, 3.0, 40.0]
    one, two = metrics.cascade_summary(parent, time, times), metrics.cascade_summary(p2, t2, times)
    for key in one:
        torch.testing.assert_close(one[key], two[key])


@pytest.mark.parametrize("shape", [(1, 0, 3), (2, 4, 0), (0, 3, 2), (2, 3, 2)])
def test_empty_forests(shape):
    parent = torch.full(shape, -1)
    time = torch.full(shape, INF)
    assert bool((metrics.cascade_depth(parent, time) == -1).all())
    assert metrics.structural_virality(parent, time).shape == (shape[0], shape[2])
    summary = metrics.cascade_summary(parent, time, [1.0, 2.0])
    for key, value in summary.items():
        assert value.shape == (shape[0], shape[2], 2), key
    assert bool((summary["depth"] == -1).all()) and int(summary["size"].abs().sum()) == 0


# ====================================================================== cascades: bad input
def _bad_trees():
    parent, time = forest(10, HAND)
    cases = []
    p = parent.clone(); p[0, 0, 0] = 10
    cases.append(("id out of range", p, time))
    p = parent.clone(); p[0, 0, 0] = -2
    cases.append(("id below -1", p, time))
    p = parent.clone(); p[0, 8, 0] = 5
    cases.append(("non-member with a parent", p, time))
    p = parent.clone(); p[0, 0, 0] = 9  # agent 9 never reshared item 0
    cases.append(("parent not a member", p, time))
    t = time.clone(); t[0, 5, 0] = 1.5  # source posts after its child 0 (t=1)
    cases.append(("parent later than child", parent, t))
    p = parent.clone(); p[0, 0, 0] = -1
    cases.append(("two sources", p, time))
    # agents 1 and 2 point at each other at equal times: no source reaches them
    p, t = parent.clone(), time.clone()
    p[0, 1, 0], p[0, 2, 0], t[0, 1, 0], t[0, 2, 0] = 2, 1, 1.0, 1.0
    cases.append(("two-cycle beside the source", p, t))
    p = parent.clone(); p[0, 0, 0] = 0; t = time.clone(); t[0, 0, 0] = 1.0
    cases.append(("self loop", p, t))
    t = time.clone(); t[0, 8, 0] = float("nan")
    cases.append(("nan time", parent, t))
    t = time.clone(); t[0, 8, 0] = -INF
    cases.append(("-inf time", parent, t))
    cases.append(("float parent", parent.double(), time))
    cases.append(("int time", parent, time.long()))
    cases.append(("2-D", parent[0], time[0]))
    cases.append(("shape mismatch", parent[:, :5], time))
    cases.append(("list parent", parent.tolist(), time))
    return cases


@pytest.mark.parametrize("case", _bad_trees(), ids=lambda c: c[0])
@pytest.mark.parametrize("fn", ["depth", "virality", "summary", "depth_curve", "breadth_curve"])
def test_bad_trees_raise(case, fn):
    name, parent, time = case
    if name == "two sources" and fn in ("depth", "depth_curve", "breadth_curve"):
        pytest.skip("several sources (a forest) are valid for depth, size and breadth; see test_forests")
    call = {
        "depth": lambda: metrics.cascade_depth(parent, time),
        "virality": lambda: metrics.structural_virality(parent, time),
        "summary": lambda: metrics.cascade_summary(parent, time, [1.0]),
        "depth_curve": lambda: metrics.cascade_depth_curve(parent, time, [1.0]),
        "breadth_curve": lambda: metrics.max_breadth_curve(parent, time, [1.0]),
    }[fn]
    with pytest.raises(ConfigError, match="Expected"):
        call()


@pytest.mark.parametrize("times", [[], [[1.0]], [float("nan")], [INF], "abc", torch.tensor([True])])
def test_bad_times_raise(times):
    parent, time = forest(10, HAND)
    with pytest.raises(ConfigError, match="Expected"):
        metrics.cascade_size(time, times)
    with pytest.raises(ConfigError, match="Expected"):
        metrics.cascade_summary(parent, time, times)


@pytest.mark.parametrize("at", [INF, float("nan"), "1", True])
def test_bad_at_raises(at):
    parent, time = forest(10, HAND)
    with pytest.raises(ConfigError, match="Expected"):
        metrics.structural_virality(parent, time, at=at)


# ====================================================================== opinions
def test_polarization_two_camps_and_uniform(device):
    camps = torch.tensor([-1.0, 1.0], dtype=torch.float64, device=device).repeat(500)[None, :, None]
    torch.testing.assert_close(metrics.polarization_variance(camps), torch.ones(1, dtype=torch.float64, device=device))
    assert float(metrics.bimodality_coefficient(camps)) > 5 / 9
    # exact: (n - 1)(n + 1) / ((n - 2)(n - 3)) * m4/m2^2 = 1 with g1 = 0, so b = (n-2)(n-3)/(n^2-1)
    n = 1000
    assert float(metrics.bimodality_coefficient(camps)) == pytest.approx((n - 2) * (n - 3) / (n * n - 1))
    gen = torch.Generator().manual_seed(0)
    uniform = (torch.rand(2, 200000, 3, generator=gen, dtype=torch.float64) * 2 - 1).to(device)
    assert torch.allclose(metrics.bimodality_coefficient(uniform).cpu(), torch.full((2,), 5 / 9, dtype=torch.float64),
                          atol=0.03)
    normal = torch.randn(1, 200000, 1, generator=gen, dtype=torch.float64).to(device)
    assert float(metrics.bimodality_coefficient(normal)) == pytest.approx(1 / 3, abs=0.02)
    torch.testing.assert_close(metrics.polarization_variance(uniform).cpu(), torch.full((2,), 1 / 3, dtype=torch.float64),
                               atol=0.01, rtol=0)


def test_opinion_metrics_vs_scipy(device):
    from scipy import stats

    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 37, 4, generator=gen, dtype=torch.float64).pow(3)
    var = metrics.polarization_variance(x.to(device)).cpu()
    np.testing.assert_allclose(var.numpy(), x.numpy().var(1).mean(-1))
    b = metrics.bimodality_coefficient(x.to(device)).cpu().numpy()
    n = 37
    g = stats.skew(x.numpy(), axis=1, bias=False)
    k = stats.kurtosis(x.numpy(), axis=1, bias=False)  # excess, bias-adjusted
    expected = ((g**2 + 1) / (k + 3 * (n - 1) ** 2 / ((n - 2) * (n - 3)))).mean(-1)
    np.testing.assert_allclose(b, expected, rtol=1e-10)


def test_between_group_distance(device):
    # topic 0: group 7 mean 1, group 2 mean -0.5, group 4 mean 0 -> |1.5| + |1| + |0.5| = 3 over 3 pairs = 1
    # topic 1: all zero -> 0; mean over topics 0.5
    x = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]], dtype=torch.float64)
    group = torch.tensor([7, 7, 2, 2, 4])
    x[0, 3, 0] = 0.0  # group 2: -1 and 0 -> -0.5
    out = metrics.between_group_distance(x.to(device), group.to(device))
    torch.testing.assert_close(out.cpu(), torch.tensor([0.5], dtype=torch.float64))
    # random vs brute force
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 50, 3, generator=gen, dtype=torch.float64)
    group = torch.randint(0, 5, (50,), generator=gen)
    out = metrics.between_group_distance(x.to(device), group.to(device)).cpu()
    labels = group.unique().tolist()
    means = torch.stack([x[:, group == g].mean(1) for g in labels], 1)  # (B, G, T)
    pairs = [(i, j) for i in range(len(labels)) for j in range(i + 1, len(labels))]
    expected = torch.stack([(means[:, i] - means[:, j]).abs() for i, j in pairs], 1).mean((1, 2))
    torch.testing.assert_close(out, expected)


def test_opinion_metrics_gradcheck():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 9, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    group = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 1])
    graph = Graph.from_edge_index(torch.randint(0, 9, (2, 30), generator=gen), 9)
    assert torch.autograd.gradcheck(metrics.polarization_variance, (x,))
    assert torch.autograd.gradcheck(metrics.bimodality_coefficient, (x,))
    assert torch.autograd.gradcheck(lambda v: metrics.between_group_distance(v, group), (x,))
    assert torch.autograd.gradcheck(lambda v: metrics.echo_chamber_index(v, graph), (x,))


# ====================================================================== echo chambers, graphs
def test_echo_chamber_homophilous_vs_shuffled(device):
    graph, block = Graph.sbm_homophily(5000, 2, 10.0, 0.95, seed=0)
    gen = torch.Generator().manual_seed(0)
    sign = (2 * block - 1).to(torch.float64)
    x = (sign[:, None] * (0.3 + 0.7 * torch.rand(5000, 2, generator=gen, dtype=torch.float64)))[None]
    graph, x = graph.to(device), x.to(device)
    assert float(metrics.echo_chamber_index(x, graph)) > 0.8
    shuffled = x[:, torch.randperm(5000, generator=gen).to(device)]
    assert abs(float(metrics.echo_chamber_index(shuffled, graph))) < 0.1


@pytest.mark.parametrize("weighted", [False, True])
def test_echo_chamber_vs_numpy(device, weighted):
    gen = torch.Generator().manual_seed(4)
    edges = torch.randint(0, 30, (2, 70), generator=gen)
    weight = torch.rand(70, generator=gen, dtype=torch.float64) + 0.1 if weighted else None
    graph = Graph.from_edge_index(edges, 30, weight)
    x = torch.randn(2, 30, 3, generator=gen, dtype=torch.float64)
    out = metrics.echo_chamber_index(x.to(device), graph.to(device)).cpu().numpy()
    src, dst = graph.edge_index.numpy()
    w = graph.weight.numpy() if weighted else np.ones(src.size)
    xs = x.numpy()
    expected = np.zeros(2)
    for b in range(2):
        rs = []
        for t in range(3):
            own, nb = [], []
            for i in range(30):
                mine = dst == i
                if mine.any():
                    own.append(xs[b, i, t])
                    nb.append((w[mine] * xs[b, src[mine], t]).sum() / w[mine].sum())
            rs.append(np.corrcoef(own, nb)[0, 1])
        expected[b] = np.mean(rs)
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_friendship_paradox_hand():
    # edges followee -> follower: 0->1, 0->2, 0->3, 1->2, 2->3
    # followers: 0: 3, 1: 1, 2: 1, 3: 0 (mean 5/4); agent 1 follows {0}: 3; 2 follows {0, 1}: 2;
    # 3 follows {0, 2}: 2 -> mean 7/3; ratio (7/3) / (5/4) = 28/15
    graph = Graph.from_edge_index(torch.tensor([[0, 0, 0, 1, 2], [1, 2, 3, 2, 3]]), 4)
    assert metrics.friendship_paradox(graph) == pytest.approx(28 / 15)


def test_friendship_paradox_vs_networkx_and_regular():
    graph = Graph.barabasi_albert(5000, 3, seed=0)
    ratio = metrics.friendship_paradox(graph)
    assert ratio > 1.5
    g = graph.to_networkx()  # edges followee -> follower: out-degree = followers
    per_agent = [np.mean([g.out_degree(j) for j in g.predecessors(i)]) for i in g.nodes if g.in_degree(i) > 0]
    mean_followers = np.mean([d for _, d in g.out_degree()])
    assert ratio == pytest.approx(np.mean(per_agent) / mean_followers)
    n, k = 200, 5  # circulant: i follows i+1..i+k, so everyone has k followees and k followers
    src = torch.arange(n).repeat_interleave(k)
    dst = (src + torch.arange(1, k + 1).repeat(n)) % n
    assert metrics.friendship_paradox(Graph.from_edge_index(torch.stack([src, dst]), n)) == pytest.approx(1.0)


def test_echo_and_paradox_bad_input():
    graph = Graph.from_edge_index(torch.tensor([[0, 1], [1, 2]]), 3)
    x = torch.zeros(1, 3, 1)
    with pytest.raises(ConfigError, match="Expected"):
        metrics.echo_chamber_index(torch.zeros(1, 4, 1), graph)
    with pytest.raises(ConfigError, match="Expected"):
        metrics.echo_chamber_index(x, "graph")
    with pytest.raises(ConfigError, match="Expected"):
        metrics.echo_chamber_index(torch.zeros(1, 3, 1), Graph.from_edge_index(torch.tensor([[0], [1]]), 3))
    with pytest.raises(ConfigError, match="Expected"):
        metrics.friendship_paradox(None)


@pytest.mark.parametrize("fn", ["var", "bimodality", "between", "echo", "sentiment"])
@pytest.mark.parametrize(
    "bad",
    [[[[0.0]] * 4], torch.zeros(4, 2), torch.zeros(1, 4, 1, dtype=torch.long), torch.zeros(1, 4, 0)],
    ids=["list", "2-D", "int", "no-topics"],
)
def test_opinion_bad_input(fn, bad):
    graph = Graph.from_edge_index(torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]]), 4)
    call = {
        "var": lambda: metrics.polarization_variance(bad),
        "bimodality": lambda: metrics.bimodality_coefficient(bad),
        "between": lambda: metrics.between_group_distance(bad, torch.tensor([0, 1, 1, 0])),
        "echo": lambda: metrics.echo_chamber_index(bad, graph),
        "sentiment": lambda: metrics.sentiment_shares(bad),
    }[fn]
    with pytest.raises(ConfigError, match="Expected"):
        call()


def test_bimodality_needs_four_agents():
    with pytest.raises(ConfigError, match="Expected"):
        metrics.bimodality_coefficient(torch.zeros(1, 3, 1))


def test_between_group_bad_groups():
    x = torch.zeros(1, 4, 2)
    for group in (torch.zeros(4, dtype=torch.long), torch.zeros(4), torch.tensor([0, 1, 0]), [0, 1, 0, 1]):
        with pytest.raises(ConfigError, match="Expected"):
            metrics.between_group_distance(x, group)


# ====================================================================== sentiment
def test_sentiment_shares(device):
    valence = torch.tensor([[-0.5, -0.1, -0.05, 0.0, 0.1, 0.3, 0.2, -0.2], [0.0] * 8], dtype=torch.float64)
    emotion = torch.stack([valence, torch.ones_like(valence)], -1).to(device)
    shares = metrics.sentiment_shares(emotion)
    # scenario 0: below -0.1: -0.5, -0.2 -> 2/8; above 0.1: 0.3, 0.2 -> 2/8; neutral (incl. ±0.1) 4/8
    torch.testing.assert_close(shares["negative"].cpu(), torch.tensor([0.25, 0.0], dtype=torch.float64))
    torch.testing.assert_close(shares["positive"].cpu(), torch.tensor([0.25, 0.0], dtype=torch.float64))
    torch.testing.assert_close(shares["neutral"].cpu(), torch.tensor([0.5, 1.0], dtype=torch.float64))
    gen = torch.Generator().manual_seed(5)
    e = torch.randn(3, 100, 2, generator=gen).to(device)
    s = metrics.sentiment_shares(e, margin=0.3)
    torch.testing.assert_close(s["negative"] + s["neutral"] + s["positive"], torch.ones(3, device=device))
    torch.testing.assert_close(s["negative"].cpu(), (e[..., 0].cpu() < -0.3).float().mean(1))
    for margin in (-0.1, float("nan"), "0.1"):
        with pytest.raises(ConfigError, match="Expected"):
            metrics.sentiment_shares(e, margin=margin)


def test_forests_with_several_sources():
    """An item posted by two accounts at once: depth, size and breadth are per forest; virality needs a tree."""
    inf = float("inf")
    # sources 0 and 1; 2 <- 0, 3 <- 1, 4 <- 3
    parent = torch.tensor([-1, -1, 0, 1, 3, -1]).view(1, 6, 1)
    time = torch.tensor([0.0, 0.0, 1.0, 1.0, 2.0, inf], dtype=torch.float64).view(1, 6, 1)
    assert metrics.cascade_depth(parent, time).view(-1).tolist() == [0, 0, 1, 1, 2, -1]
    assert metrics.max_breadth_curve(parent, time, [0.0, 1.0, 2.0]).view(-1).tolist() == [2, 2, 2]
    assert metrics.cascade_depth_curve(parent, time, [0.0, 1.0, 2.0]).view(-1).tolist() == [0, 1, 2]
    assert metrics.cascade_size(time, [0.0, 2.0]).view(-1).tolist() == [2, 5]
    with pytest.raises(ConfigError, match="exactly one source"):
        metrics.structural_virality(parent, time)
