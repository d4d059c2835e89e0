"""The dispatch functions on awkward graphs: hubs, isolated agents, the sparse/dense choice, edge gates.

Each op's implementations against dense oracles, with gradients: test_kernel_ops.py."""

from __future__ import annotations

import pytest
import torch

from lpm import kernels
from lpm.graph import Graph
from lpm.testing import dense_adjacency, small_graph


def test_neighbor_pull_isolated_agents_get_zero(device):
    graph = small_graph(20, 2.0, seed=3, isolated=4).to(device)
    x = torch.rand(2, 20, 1, dtype=torch.float64, device=device)
    pull, weight = kernels.neighbor_pull(graph, x, kernels.SmoothBoundedConfidence(0.3, 0.05))
    assert torch.all(pull[:, -4:] == 0) and torch.all(weight[:, -4:] == 0)


def test_neighbor_pull_one_huge_hub(device):
    """Every agent follows agent 0 only: pull_i = x_0 - x_i exactly."""
    n = 5000
    src = torch.zeros(n - 1, dtype=torch.long)
    dst = torch.arange(1, n)
    graph = Graph.from_edge_index(torch.stack([src, dst]), n).to(device)
    x = torch.rand(1, n, 3, dtype=torch.float64, device=device)
    pull, weight = kernels.neighbor_pull(graph, x)
    expected = x[:, :1] - x
    expected[:, 0] = 0
    torch.testing.assert_close(pull, expected)
    assert weight[0, 0, 0] == 0 and torch.all(weight[0, 1:, 0] == 1)


def test_sample_followee_uniform_over_followees():
    """Each followee is chosen with probability 1/in-degree; agents without followees pick themselves."""
    graph = small_graph(12, 3.0, seed=5, isolated=2)
    draws = 40000
    u = torch.rand(draws, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    chosen = kernels.sample_followee(graph, u)  # (draws, N)
    adj = dense_adjacency(graph) > 0
    for i in range(12):
        followees = torch.nonzero(adj[i]).flatten()
        if followees.numel() == 0:
            assert torch.all(chosen[:, i] == i)
            continue
        counts = torch.bincount(chosen[:, i], minlength=12).double() / draws
        assert set(torch.nonzero(counts).flatten().tolist()) == set(followees.tolist())
        # binomial standard error at p >= 1/10 and 40k draws is < 0.0025: 0.015 is > 5 sigma
        torch.testing.assert_close(counts[followees], torch.full((followees.numel(),), 1.0 / followees.numel(), dtype=torch.float64), atol=0.015, rtol=0)


@pytest.mark.parametrize("weighted", [False, True])
def test_sparse_push_equals_dense_neighbor_sum_bit_for_bit(weighted):
    """Pushing the nonzero entries along their out-edges gives exactly the dense sum (same terms,
    added in the same followee order), with edge weights, per-scenario edge scales, isolated agents
    and a hub; the cascade picks either path by density, so they must agree to the last bit."""
    graph = small_graph(300, 6.0, seed=5, weighted=weighted, dtype=torch.float32)
    gen = torch.Generator().manual_seed(1)
    for density in (0.0, 0.02, 0.3, 1.0):
        x = torch.rand(4, 300, 3, generator=gen) * (torch.rand(4, 300, 3, generator=gen) < density)
        scale = torch.rand(4, graph.num_edges, generator=gen)
        for edge_scale in (None, scale):
            dense = kernels.neighbor_sum_dense(graph, x, edge_scale)
            assert torch.equal(kernels.neighbor_sum_sparse(graph, x, edge_scale), dense), (density, edge_scale is None)
    assert kernels.neighbor_sum_sparse(graph, x, scale).abs().sum() > 0


def test_factored_edge_gates_give_the_dense_multiplier_bit_for_bit():
    """Edge blocking keeps its (B, E) multiplier factored; read densely or at the pushed pairs it
    must be the tensor the blockings multiply out to, exactly, alone and composed."""
    from lpm.interventions import EdgeGates, Effects

    graph = small_graph(300, 6.0, seed=7, weighted=True, dtype=torch.float32)
    gen = torch.Generator().manual_seed(2)
    levels = [torch.rand(4, 1, generator=gen) * (torch.rand(4, 1, generator=gen) < 0.6) for _ in range(2)]
    blocked = [(torch.rand(graph.num_edges, generator=gen) < 0.2).float() for _ in range(2)]
    expected = (1 - levels[0] * blocked[0][None]) * (1 - levels[1] * blocked[1][None])
    effects = Effects()
    for level, mask in zip(levels, blocked):
        effects.scale("edge_scale", EdgeGates((level,), (mask,)))
    gates = effects.edge_scale
    assert isinstance(gates, EdgeGates) and torch.equal(gates.dense(), expected)
    assert isinstance(gates, kernels.EdgeScale)  # what the aggregations accept besides a tensor
    scenario = torch.randint(0, 4, (500,), generator=gen)
    edge = torch.randint(0, graph.num_edges, (500,), generator=gen)
    assert torch.equal(gates.take(scenario, edge), expected[scenario, edge])
    x = torch.rand(4, 300, 2, generator=gen) * (torch.rand(4, 300, 2, generator=gen) < 0.05)
    dense = kernels.neighbor_sum_dense(graph, x, expected)
    assert torch.equal(kernels.neighbor_sum_dense(graph, x, gates), dense)
    assert torch.equal(kernels.neighbor_sum(graph, x, gates), dense)
    assert torch.equal(kernels.neighbor_sum_sparse(graph, x, gates), dense)
    # a dense multiplier composed with factored gates (either order) is their elementwise product
    other = torch.rand(4, graph.num_edges, generator=gen)
    for first, second in ((gates, other), (other, gates)):
        mixed = Effects()
        mixed.scale("edge_scale", first)
        mixed.scale("edge_scale", second)
        torch.testing.assert_close(mixed.edge_scale, expected * other, rtol=1e-6, atol=0)
