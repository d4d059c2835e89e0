"""The aggregation dispatch against dense computations, with gradients, on awkward graphs."""

from __future__ import annotations

import pytest
import torch

from lpm import kernels
from lpm.graph import Graph
from lpm.testing import dense_adjacency, small_graph


def dense_pull(graph: Graph, x: torch.Tensor, pair=None, source_weight=None):
    """pull_i = sum_j A_ij s_j w_ij (x_j - x_i), weight_i = sum_j |A_ij s_j w_ij| with dense (B, N, N, d) arrays."""
    adj = dense_adjacency(graph, x.dtype).to(x.device)  # (N, N), [follower, followee]
    diff = x[:, None, :, :] - x[:, :, None, :]  # (B, i, j, d) = x_j - x_i
    w = adj[None, :, :, None].expand(x.size(0), -1, -1, 1)
    if source_weight is not None:
        w = w * source_weight[:, None, :, None]
    if pair is not None:
        eps = pair.eps
        if isinstance(eps, torch.Tensor) and eps.dim() >= 2:
            eps = eps[..., :, None, :]  # receiver i along dim -3
        d = diff.abs()
        if isinstance(pair, kernels.SmoothBoundedConfidence):
            pw = torch.sigmoid((eps - d) / pair.tau)
        else:
            pw = torch.sigmoid((eps - d) / pair.tau) - pair.repulsion * torch.sigmoid((d - pair.rho) / pair.tau)
        w = w * pw * (adj[None, :, :, None] > 0)
    pull = (w * diff).sum(2)
    weight = w.abs().sum(2)
    return pull, weight


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("with_source", [False, True])
@pytest.mark.parametrize("pair_kind", [None, "bc", "bc_per_agent", "attract_repel"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_neighbor_pull_matches_dense(device, weighted, with_source, pair_kind, dtype):
    graph = small_graph(25, 3.0, seed=1, weighted=weighted, dtype=dtype).to(device)
    gen = torch.Generator().manual_seed(2)
    x = (torch.rand(3, 25, 2, generator=gen, dtype=dtype) * 2 - 1).to(device)
    source = torch.rand(3, 25, generator=gen, dtype=dtype).to(device) if with_source else None
    pair = {
        None: None,
        "bc": kernels.SmoothBoundedConfidence(eps=0.5, tau=0.1),
        "bc_per_agent": kernels.SmoothBoundedConfidence(eps=(torch.rand(3, 25, 1, generator=gen, dtype=dtype) + 0.2).to(device), tau=0.1),
        "attract_repel": kernels.AttractRepel(eps=0.3, rho=0.9, tau=0.1, repulsion=0.7),
    }[pair_kind]
    pull, weight = kernels.neighbor_pull(graph, x, pair, source)
    ref_pull, ref_weight = dense_pull(graph, x, pair, source)
    # float32 sums of ~10 terms of size <= 2: 1e-5 absolute is ~50 ulps of headroom.
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(pull, ref_pull, **tol)
    width = weight.size(-1)
    torch.testing.assert_close(weight, ref_weight[..., :width] if width == 1 else ref_weight, **tol)


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


@pytest.mark.parametrize("pair_kind", [None, "bc", "attract_repel"])
def test_neighbor_pull_gradcheck(pair_kind):
    graph = small_graph(8, 2.0, seed=4, weighted=True)
    x = (torch.rand(2, 8, 2, dtype=torch.float64) * 2 - 1).requires_grad_()
    source = torch.rand(2, 8, dtype=torch.float64, requires_grad=True)
    eps = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)

    def fn(x, source, eps):
        pair = None
        if pair_kind == "bc":
            pair = kernels.SmoothBoundedConfidence(eps=eps, tau=0.2)
        elif pair_kind == "attract_repel":
            pair = kernels.AttractRepel(eps=eps, rho=1.0, tau=0.2, repulsion=0.5)
        return kernels.neighbor_pull(graph, x, pair, source)

    assert torch.autograd.gradcheck(fn, (x, source, eps))


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
            dense = kernels.neighbor_sum(graph, x, edge_scale)
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
    scenario = torch.randint(0, 4, (500,), generator=gen)
    edge = torch.randint(0, graph.num_edges, (500,), generator=gen)
    assert torch.equal(gates.take(scenario, edge), expected[scenario, edge])
    x = torch.rand(4, 300, 2, generator=gen) * (torch.rand(4, 300, 2, generator=gen) < 0.05)
    dense = kernels.neighbor_sum(graph, x, expected)
    assert torch.equal(kernels.neighbor_sum(graph, x, gates), dense)
    assert torch.equal(kernels.neighbor_sum_sparse(graph, x, gates), dense)
    # a dense multiplier composed with factored gates (either order) is their elementwise product
    other = torch.rand(4, graph.num_edges, generator=gen)
    for first, second in ((gates, other), (other, gates)):
        mixed = Effects()
        mixed.scale("edge_scale", first)
        mixed.scale("edge_scale", second)
        torch.testing.assert_close(mixed.edge_scale, expected * other, rtol=1e-6, atol=0)
