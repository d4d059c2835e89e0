"""Every registered implementation of every op, against the reference and an independent oracle.

Each test is parametrised over :func:`lpm.kernels.implementations` (the reference plus whatever is
registered: a fused kernel registered later is tested here without a new test). The oracles work
from the dense adjacency matrix or loop over the edges in Python, on tiny random graphs with the
awkward cases (agents following nobody, a hub): forward, the gradient of a random projection, and
``torch.autograd.gradcheck`` in float64 where the op is differentiable.
"""

from __future__ import annotations

import math

import pytest
import torch

from lpm import kernels
from lpm.graph import Graph
from lpm.testing import dense_adjacency, small_graph

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
DTYPES = (torch.float32, torch.float64)


def cases(op: str, dtypes=DTYPES):
    """``(impl, device, dtype)`` for every implementation of ``op``, on the devices and dtypes it serves."""
    out = []
    for impl in kernels.implementations(op):
        for device in [impl.device] if impl.device else DEVICES:
            for dtype in [impl.dtype] if impl.dtype else dtypes:
                skip = pytest.mark.skipif(device == "cuda" and not torch.cuda.is_available(), reason="needs CUDA")
                out.append(pytest.param(impl, torch.device(device), dtype, id=f"{impl.name}-{device}-{dtype}",
                                        marks=skip))
    return out


def tol(dtype: torch.dtype) -> dict:
    # float32 sums of ~10 terms of size <= 2: 1e-5 absolute is ~50 ulps of headroom
    return dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-12, rtol=1e-10)


def graphs(dtype: torch.dtype, device: torch.device) -> list[Graph]:
    """Tiny graphs: unweighted and weighted, isolated agents and a hub, one without any edge."""
    empty = Graph(num_nodes=5, rowptr=torch.zeros(6, dtype=torch.int64), col=torch.zeros(0, dtype=torch.int64))
    return [small_graph(12, 3.0, seed=1, dtype=dtype).to(device),
            small_graph(15, 2.0, seed=2, weighted=True, isolated=4, dtype=dtype).to(device),
            empty.to(device)]


def edges_of(graph: Graph) -> list[tuple[int, int]]:
    """``(followee j, follower i)`` of each edge in edge order, from the dense adjacency (rows in
    order, followees ascending), which is the CSR order the edge-indexed ops use."""
    adj = dense_adjacency(graph)
    return [(int(j), i) for i in range(graph.num_nodes) for j in torch.nonzero(adj[i]).flatten()]


def rand(*shape, dtype, device, gen, low=0.0, high=1.0):
    return (torch.rand(*shape, generator=gen, dtype=torch.float64) * (high - low) + low).to(dtype).to(device)


def check_grads(fn, oracle, inputs: list[torch.Tensor], dtype: torch.dtype, gen: torch.Generator) -> None:
    """The gradient of a random projection of ``fn`` equals the oracle's, in every input; and
    ``gradcheck`` passes in float64."""
    inputs = [t.detach().requires_grad_() for t in inputs]
    out = fn(*inputs)
    projection = rand(*out.shape, dtype=dtype, device=out.device, gen=gen, low=-1)

    def grad(value):
        if not value.requires_grad:  # e.g. a graph without edges: the output is constant
            return [torch.zeros_like(t) for t in inputs]
        return torch.autograd.grad((value * projection).sum(), inputs, allow_unused=True, materialize_grads=True)

    for got, want in zip(grad(out), grad(oracle(*inputs).to(dtype))):
        torch.testing.assert_close(got, want, **tol(dtype))
    if dtype == torch.float64:
        # On CUDA the reference scatters with atomic adds, so two backward passes sum in different
        # orders: sums of tens of O(1) terms differ by ~1e-14, far below 1e-12 (bit-equal on the CPU).
        nondet_tol = 1e-12 if out.device.type == "cuda" else 0.0
        assert torch.autograd.gradcheck(fn, tuple(inputs), nondet_tol=nondet_tol)


# ---------------------------------------------------------------- neighbor_pull

def dense_pull(graph: Graph, x: torch.Tensor, pair=None, source_weight=None):
    """``pull_i = sum_j A_ij s_j w_ij (x_j - x_i)``, ``weight_i = sum_j |A_ij s_j w_ij|`` with dense
    ``(B, N, N, d)`` arrays."""
    adj = dense_adjacency(graph, x.dtype).to(x.device)  # (N, N), [follower, followee]
    diff = x[:, None, :, :] - x[:, :, None, :]  # (B, i, j, d) = x_j - x_i
    w = adj[None, :, :, None].expand(x.size(0), -1, -1, 1)
    if source_weight is not None:
        w = w * source_weight[:, None, :, None]
    if pair is not None:
        w = w * pair_weight(pair, diff.abs()) * (adj[None, :, :, None] > 0)
    pull = (w * diff).sum(2)
    weight = w.abs().sum(2)
    return pull, weight


def pair_weight(pair, d: torch.Tensor) -> torch.Tensor:
    """The pair kernels' formulas on ``(B, i, j, d)`` distances, receiver ``i`` along dim 1."""
    def receiver(value):
        return value[..., :, None, :] if isinstance(value, torch.Tensor) and value.dim() >= 2 else value

    if isinstance(pair, kernels.SmoothBoundedConfidence):
        return torch.sigmoid((receiver(pair.eps) - d) / pair.tau)
    if isinstance(pair, kernels.AttractRepel):
        return torch.sigmoid((receiver(pair.eps) - d) / pair.tau) - pair.repulsion * torch.sigmoid((d - pair.rho) / pair.tau)
    if isinstance(pair, kernels.Personalization):
        return torch.exp(-pair.gamma * d)
    return pair_weight(pair.first, d) * pair_weight(pair.second, d)


def make_pair(kind, eps):
    return {
        None: None,
        "bc": kernels.SmoothBoundedConfidence(eps=eps, tau=0.2),
        "attract_repel": kernels.AttractRepel(eps=eps, rho=0.9, tau=0.2, repulsion=0.7),
        "personalization": kernels.Personalization(gamma=eps * 3),
        "product": kernels.Product(kernels.SmoothBoundedConfidence(eps=eps, tau=0.2), kernels.Personalization(gamma=2.0)),
    }[kind]


PAIR_TYPES = {None: None, "bc": kernels.SmoothBoundedConfidence, "attract_repel": kernels.AttractRepel,
              "personalization": kernels.Personalization, "product": kernels.Product}


@pytest.mark.parametrize("impl, device, dtype", cases("neighbor_pull"))
@pytest.mark.parametrize("pair_kind, per_agent_eps", [(kind, False) for kind in PAIR_TYPES] +
                         [("bc", True), ("attract_repel", True), ("product", True)])  # per-receiver bounds
@pytest.mark.parametrize("with_source", [False, True])
def test_neighbor_pull(impl, device, dtype, pair_kind, with_source, per_agent_eps):
    if impl.device is not None and impl.pair is not PAIR_TYPES[pair_kind]:
        pytest.skip("a registered implementation serves one pair-kernel type")
    gen = torch.Generator().manual_seed(3)
    for graph in graphs(dtype, device):
        n = graph.num_nodes
        x = rand(3, n, 2, dtype=dtype, device=device, gen=gen, low=-1)
        source = rand(3, n, dtype=dtype, device=device, gen=gen) if with_source else None
        eps = rand(3, n, 1, dtype=dtype, device=device, gen=gen, low=0.2, high=0.8) if per_agent_eps else \
            torch.tensor(0.5, dtype=dtype, device=device)

        def fn(x, source, eps, impl=impl, graph=graph):
            return torch.cat(impl.fn(graph.rowptr, graph.col, graph.row, graph.weight, graph.in_weight, x,
                                     make_pair(pair_kind, eps), source), -1)

        def oracle(x, source, eps, graph=graph):
            pull, weight = dense_pull(graph, x.double(), make_pair(pair_kind, eps.double()),
                                      None if source is None else source.double())
            return torch.cat([pull, weight if pair_kind is not None else weight[..., :1]], -1)

        def reference(x, source, eps, graph=graph):
            return torch.cat(kernels.registry.OPS["neighbor_pull"](
                graph.rowptr, graph.col, graph.row, graph.weight, graph.in_weight, x, make_pair(pair_kind, eps), source), -1)

        torch.testing.assert_close(fn(x, source, eps), reference(x, source, eps), **tol(dtype))
        torch.testing.assert_close(fn(x, source, eps), oracle(x, source, eps).to(dtype), **tol(dtype))
        inputs = [x, eps] if source is None else [x, source, eps]
        if source is None:
            check_grads(lambda x, eps: fn(x, None, eps), lambda x, eps: oracle(x, None, eps), inputs, dtype, gen)
        else:
            check_grads(fn, oracle, inputs, dtype, gen)


# ---------------------------------------------------------------- neighbor sums

def loop_neighbor_sum(graph: Graph, x: torch.Tensor, scale, weighted: bool = True) -> torch.Tensor:
    """``out[b, i] = sum over edges (j -> i) of a_e s_be x[b, j]``, edge by edge in float64."""
    out = torch.zeros(x.shape, dtype=torch.float64, device=x.device)
    weight = graph.weight if weighted else None
    for e, (j, i) in enumerate(edges_of(graph)):
        term = x[:, j].double()
        if weight is not None:
            term = term * float(weight[e])
        if scale is not None:
            term = term * scale[:, e, None].double()
        out[:, i] = out[:, i] + term
    return out


@pytest.mark.parametrize("impl, device, dtype", cases("neighbor_sum"))
@pytest.mark.parametrize("with_scale", [False, True])
def test_neighbor_sum_dense(impl, device, dtype, with_scale):
    gen = torch.Generator().manual_seed(4)
    for graph in graphs(dtype, device):
        x = rand(2, graph.num_nodes, 3, dtype=dtype, device=device, gen=gen, low=-1)
        scale = rand(2, graph.num_edges, dtype=dtype, device=device, gen=gen) if with_scale else None

        def fn(x, scale=None, graph=graph):
            return impl.fn(graph.col, graph.row, graph.weight, x, scale)

        def oracle(x, scale=None, graph=graph):
            return loop_neighbor_sum(graph, x, scale)

        reference = kernels.registry.OPS["neighbor_sum"](graph.col, graph.row, graph.weight, x, scale)
        torch.testing.assert_close(fn(x, scale), reference, **tol(dtype))
        torch.testing.assert_close(fn(x, scale), oracle(x, scale).to(dtype), **tol(dtype))
        check_grads(fn, oracle, [x] if scale is None else [x, scale], dtype, gen)


class Factored:
    """A stand-in :class:`lpm.kernels.EdgeScale`: the dense multiplier behind the protocol."""

    def __init__(self, value: torch.Tensor) -> None:
        self.value = value

    def dense(self) -> torch.Tensor:
        return self.value

    def take(self, scenario: torch.Tensor, edge: torch.Tensor) -> torch.Tensor:
        return self.value[scenario, edge]


@pytest.mark.parametrize("impl, device, dtype", cases("neighbor_sum_sparse"))
@pytest.mark.parametrize("scale_kind", [None, "dense", "factored"])
@pytest.mark.parametrize("density", [0.0, 0.1, 1.0])
def test_neighbor_sum_sparse(impl, device, dtype, scale_kind, density):
    """Forward only (the push has no gradient); bit for bit equal to the dense reference on the CPU."""
    gen = torch.Generator().manual_seed(5)
    for graph in graphs(dtype, device):
        n = graph.num_nodes
        x = rand(3, n, 2, dtype=dtype, device=device, gen=gen) * (rand(3, n, 2, dtype=dtype, device=device, gen=gen) < density)
        scale = rand(3, graph.num_edges, dtype=dtype, device=device, gen=gen) if scale_kind else None
        starts, edges = graph.followers()
        out = impl.fn(starts, edges, graph.row, graph.weight, x, Factored(scale) if scale_kind == "factored" else scale)
        dense = kernels.registry.OPS["neighbor_sum"](graph.col, graph.row, graph.weight, x, scale)
        if device.type == "cpu":
            assert torch.equal(out, dense)
        torch.testing.assert_close(out, dense, **tol(dtype))
        torch.testing.assert_close(out, loop_neighbor_sum(graph, x, scale).to(dtype), **tol(dtype))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("weighted", [False, True])
def test_neighbor_sum_unweighted_ignores_edge_weights(device, weighted):
    graph = small_graph(15, 2.0, seed=6, weighted=True).to(device)
    x = torch.rand(2, 15, 1, dtype=torch.float64, device=device)
    out = kernels.neighbor_sum(graph, x, weighted=weighted)
    torch.testing.assert_close(out, loop_neighbor_sum(graph, x, None, weighted=weighted))


# ---------------------------------------------------------------- neighbor_min, sum_over_followers

@pytest.mark.parametrize("impl, device, dtype", cases("neighbor_min"))
def test_neighbor_min(impl, device, dtype):
    gen = torch.Generator().manual_seed(7)
    for graph in graphs(dtype, device):
        x = torch.floor(rand(3, graph.num_nodes, 2, dtype=dtype, device=device, gen=gen, high=10))
        x[0, :3] = math.inf  # agents that never post
        adj = dense_adjacency(graph).to(device) > 0
        oracle = torch.where(adj[None, :, :, None], x[:, None, :, :], torch.tensor(math.inf, dtype=dtype, device=device)).amin(2)
        out = impl.fn(graph.col, graph.row, x)
        assert torch.equal(out, kernels.registry.OPS["neighbor_min"](graph.col, graph.row, x))
        assert torch.equal(out, oracle)


@pytest.mark.parametrize("impl, device, dtype", cases("sum_over_followers"))
def test_sum_over_followers(impl, device, dtype):
    gen = torch.Generator().manual_seed(8)
    for graph in graphs(dtype, device):
        values = rand(2, graph.num_edges, 3, dtype=dtype, device=device, gen=gen, low=-1)

        def fn(values, graph=graph):
            return impl.fn(graph.col, values, graph.num_nodes)

        def oracle(values, graph=graph):
            out = torch.zeros(values.size(0), graph.num_nodes, values.size(2), dtype=torch.float64, device=device)
            for e, (j, _) in enumerate(edges_of(graph)):
                out[:, j] = out[:, j] + values[:, e].double()
            return out

        reference = kernels.registry.OPS["sum_over_followers"](graph.col, values, graph.num_nodes)
        torch.testing.assert_close(fn(values), reference, **tol(dtype))
        torch.testing.assert_close(fn(values), oracle(values).to(dtype), **tol(dtype))
        check_grads(fn, oracle, [values], dtype, gen)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sum_over_followers_equals_index_add_bit_for_bit(dtype):
    """The reference moved from index_add_ along dimension 1 to scatter_add_ (4-8x faster on the
    CPU): the same sums, bit for bit, on a clustered scale-free graph with hubs."""
    graph = Graph.holme_kim(3000, 8, 0.4, seed=3)
    values = torch.randn(3, graph.num_edges, 2, dtype=dtype, generator=torch.Generator().manual_seed(9)) * 1e3
    before = values.new_zeros(3, graph.num_nodes, 2).index_add_(1, graph.col.long(), values)
    assert torch.equal(kernels.reference.sum_over_followers(graph.col, values, graph.num_nodes), before)


# ---------------------------------------------------------------- gathers

@pytest.mark.parametrize("impl, device, dtype", cases("gather_rows"))
@pytest.mark.parametrize("end", ["followee", "follower"])
@pytest.mark.parametrize("subset", [False, True])
def test_gather_rows(impl, device, dtype, end, subset):
    gen = torch.Generator().manual_seed(9)
    for graph in graphs(dtype, device):
        x = rand(2, graph.num_nodes, 3, dtype=dtype, device=device, gen=gen, low=-1)
        pairs = edges_of(graph)
        chosen = torch.randperm(len(pairs), generator=gen)[: len(pairs) // 2] if subset else torch.arange(len(pairs))
        agents = torch.tensor([pairs[e][0 if end == "followee" else 1] for e in chosen.tolist()], dtype=torch.long)
        index = (graph.col if end == "followee" else graph.row)[chosen.to(device)]

        def fn(x, index=index):
            return impl.fn(x, index)

        def oracle(x, agents=agents):
            return torch.stack([x[:, a] for a in agents.tolist()], 1) if agents.numel() else x[:, :0]

        torch.testing.assert_close(fn(x), oracle(x), rtol=0, atol=0)
        check_grads(fn, oracle, [x], dtype, gen)
    dispatch = kernels.gather_followees if end == "followee" else kernels.gather_followers
    graph = graphs(dtype, device)[1]
    x = rand(2, graph.num_nodes, dtype=dtype, device=device, gen=gen)  # 2-D agent values too
    edges = torch.arange(graph.num_edges, device=device).flip(0)
    expected = torch.stack([x[:, pair[0 if end == "followee" else 1]] for pair in edges_of(graph)], 1)
    assert torch.equal(dispatch(graph, x), expected)
    assert torch.equal(dispatch(graph, x, edges), expected.flip(1))


@pytest.mark.parametrize("impl, device, dtype", cases("take_along_agents"))
@pytest.mark.parametrize("trailing", [False, True])
def test_take_along_agents(impl, device, dtype, trailing):
    gen = torch.Generator().manual_seed(10)
    n = 9
    x = rand(*((3, n, 2) if trailing else (3, n)), dtype=dtype, device=device, gen=gen, low=-1)
    index = torch.randint(0, n, (3, n), generator=gen).to(device)

    def fn(x):
        return impl.fn(x, index)

    def oracle(x):
        return torch.stack([torch.stack([x[b, int(index[b, i])] for i in range(n)]) for b in range(3)])

    torch.testing.assert_close(fn(x), oracle(x), rtol=0, atol=0)
    check_grads(fn, oracle, [x], dtype, gen)


# ---------------------------------------------------------------- sampling, CSR expansion

@pytest.mark.parametrize("impl, device, dtype", cases("sample_followee", dtypes=(torch.float64,)))
def test_sample_followee(impl, device, dtype):
    """Agent ``i`` gets the ``floor(u * k)``-th of its ``k`` followees (ascending), itself if ``k = 0``."""
    gen = torch.Generator().manual_seed(11)
    for graph in graphs(torch.float64, device):
        n = graph.num_nodes
        u = rand(4, n, dtype=dtype, device=device, gen=gen)
        u[0] = 0.0
        u[1] = 1.0 - 1e-12  # the last followee
        adj = dense_adjacency(graph)
        expected = torch.empty(4, n, dtype=torch.long)
        for i in range(n):
            followees = torch.nonzero(adj[i]).flatten()
            for b in range(4):
                k = followees.numel()
                expected[b, i] = followees[min(int(float(u[b, i]) * k), k - 1)] if k else i
        out = impl.fn(graph.rowptr, graph.col, u)
        assert torch.equal(out.cpu(), expected)


def _weighted_pick(weights: list[float], draw: float) -> int:
    """Index of the first weight whose cumulative share exceeds ``draw`` (zero weights never), -1 if
    all are zero: the inverse-CDF draw the op must make, one row at a time in Python floats."""
    total = sum(weights)
    if total <= 0:
        return -1
    running = 0.0
    for k, w in enumerate(weights):
        running += w
        if w > 0 and running > draw * total:
            return k
    return max(k for k, w in enumerate(weights) if w > 0)


@pytest.mark.parametrize("impl, device, dtype", cases("sample_visible_followee"))
@pytest.mark.parametrize("scaled", [None, "dense", "factored"])
def test_sample_visible_followee(impl, device, dtype, scaled):
    """``(b, i, c)`` gets the followee ``j`` of ``i`` that the inverse CDF of the weights
    ``posts[b, j, c]`` (times the edge's ``edge_scale[b, e]``) puts ``u`` at, ``-1`` if all are zero.
    Exact agreement: a draw within rounding (1e-16 relative) of a boundary has probability ~1e-13."""
    gen = torch.Generator().manual_seed(12)
    for graph in graphs(dtype, device):
        n = graph.num_nodes
        posts = rand(2, n, 3, dtype=dtype, device=device, gen=gen) * (rand(2, n, 3, dtype=dtype, device=device, gen=gen) < 0.5)
        scale = rand(2, graph.num_edges, dtype=dtype, device=device, gen=gen) if scaled else None
        if scaled and graph.num_edges > 2:
            scale[:, :2] = 0.0  # blocked edges are never drawn
        index = torch.stack(torch.meshgrid(torch.arange(2), torch.arange(n), torch.arange(3), indexing="ij"), -1).reshape(-1, 3)
        index = index[torch.randperm(index.size(0), generator=gen)].to(device)  # any order
        u = rand(index.size(0), dtype=torch.float64, device=device, gen=gen)
        edges = edges_of(graph)
        expected = []
        for (b, i, c), draw in zip(index.tolist(), u.tolist()):
            row = [(e, j) for e, (j, follower) in enumerate(edges) if follower == i]
            weights = [float(posts[b, j, c]) * (float(scale[b, e]) if scaled else 1.0) for e, j in row]
            pick = _weighted_pick(weights, draw)
            expected.append(row[pick][1] if pick >= 0 else -1)
        given = Factored(scale) if scaled == "factored" else scale  # edge blocking keeps an EdgeScale
        out = impl.fn(graph.rowptr, graph.col, posts, index, u, given)
        assert out.tolist() == expected
        empty = impl.fn(graph.rowptr, graph.col, posts, index[:0], u[:0], given)
        assert empty.shape == (0,)


@pytest.mark.parametrize("impl, device, dtype", cases("sample_visible_followee", dtypes=(torch.float64,)))
def test_sample_visible_followee_frequencies_are_the_weights_shares(impl, device, dtype):
    """Over many draws each followee is picked with its share of the row's weights, even where the
    weights span 30 orders of magnitude (old posts in an ageing feed): 4 binomial standard deviations."""
    graph = Graph.from_edge_index(torch.tensor([[1, 2, 3, 4], [0, 0, 0, 0]]), 5).to(device)
    posts = torch.tensor([0.0, 0.5, 1e-30, 1.5, 0.0], dtype=dtype, device=device)[None, :, None]
    draws = 200_000
    index = torch.zeros(draws, 3, dtype=torch.int64, device=device)
    u = torch.rand(draws, generator=torch.Generator().manual_seed(3), dtype=torch.float64).to(device)
    out = impl.fn(graph.rowptr, graph.col, posts, index, u, None)
    for j, share in ((1, 0.25), (2, 0.0), (3, 0.75), (4, 0.0)):
        assert abs(float((out == j).double().mean()) - share) <= 4 * (share * (1 - share) / draws) ** 0.5
    tiny = impl.fn(graph.rowptr, graph.col, posts * (torch.arange(5, device=device) == 2)[None, :, None], index, u, None)
    assert bool((tiny == 2).all())  # a lone visible post is always the parent, however faded


@pytest.mark.parametrize("impl, device, dtype", cases("expand_segments", dtypes=(torch.int64,)))
def test_expand_segments(impl, device, dtype):
    gen = torch.Generator().manual_seed(13)
    length = torch.randint(0, 4, (8,), generator=gen).to(device)
    length[2] = 0
    start = torch.randint(0, 20, (8,), generator=gen).to(device)
    owner, position, offset = impl.fn(start, length)
    expected_owner = [k for k in range(8) for _ in range(int(length[k]))]
    expected_position = [int(start[k]) + r for k in range(8) for r in range(int(length[k]))]
    assert owner.tolist() == expected_owner and position.tolist() == expected_position
    assert offset.tolist() == [sum(length.tolist()[:k]) for k in range(8)]
    owner, position, offset = impl.fn(start[:0], length[:0])
    assert owner.numel() == position.numel() == offset.numel() == 0
