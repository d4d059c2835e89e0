"""The CPU fast path (:mod:`lpm.kernels.cpu`) against the plain-torch reference: forward values and
every gradient, float64 and float32, random graphs and inputs, one and several threads, the inputs it
hands back to the reference, and a whole simulation of the default model.

tests/kernels/test_kernel_ops.py runs the registered implementations against dense oracles too."""

from __future__ import annotations

import contextlib
import logging

import pytest
import torch

from lpm import kernels
from lpm.graph import Graph
from lpm.kernels import cpu, reference
from lpm.kernels.cpu import build, fast
from lpm.testing import small_graph


def test_the_library_builds_and_is_registered():
    assert cpu.available(), cpu.build_error()
    for dtype in (torch.float32, torch.float64):
        for pair in (None, kernels.SmoothBoundedConfidence, kernels.AttractRepel):
            assert kernels.lookup("neighbor_pull", torch.device("cpu"), dtype, pair) is fast.fused_pull
        assert kernels.lookup("neighbor_sum", torch.device("cpu"), dtype) is fast.fused_sum
    # other pair kernels, dtypes and devices keep the reference
    cpu_device = torch.device("cpu")
    assert kernels.lookup("neighbor_pull", cpu_device, torch.float64, kernels.Product) is reference.neighbor_pull
    assert kernels.lookup("neighbor_sum", torch.device("cpu"), torch.float16) is reference.neighbor_sum
    assert kernels.lookup("neighbor_sum", torch.device("meta"), torch.float32) is reference.neighbor_sum
    with cpu.disabled():
        assert kernels.lookup("neighbor_sum", torch.device("cpu"), torch.float32) is reference.neighbor_sum
    assert cpu.is_registered()


def graphs(dtype=torch.float64) -> list[Graph]:
    """Random graphs with a hub and agents following nobody, weighted and not, and a Holme-Kim graph."""
    return [small_graph(40, 4.0, seed=11, dtype=dtype),
            small_graph(60, 3.0, seed=12, weighted=True, isolated=5, dtype=dtype),
            Graph.holme_kim(300, 3, 0.3, seed=13)]


def args(graph: Graph):
    return graph.rowptr, graph.col, graph.row, graph.weight, graph.in_weight


def rand(*shape, gen, dtype=torch.float64, low=0.0, high=1.0):
    return (torch.rand(*shape, generator=gen, dtype=torch.float64) * (high - low) + low).to(dtype)


def pairs(kind: str, batch: int, n: int, dim: int, gen: torch.Generator, dtype=torch.float64):
    """Pair kernels with every parameter a tensor (so each has a gradient), eps in each supported layout."""
    eps_layouts = [torch.tensor(0.4, dtype=dtype), rand(n, 1, gen=gen, dtype=dtype, low=0.2, high=0.8),
                   rand(batch, n, 1, gen=gen, dtype=dtype, low=0.2, high=0.8),
                   rand(1, n, dim, gen=gen, dtype=dtype, low=0.2, high=0.8)]
    tau = torch.tensor(0.15, dtype=dtype)
    if kind == "bc":
        return [kernels.SmoothBoundedConfidence(eps=eps, tau=tau) for eps in eps_layouts]
    rho, repulsion = torch.tensor(0.9, dtype=dtype), torch.tensor(0.6, dtype=dtype)
    return [kernels.AttractRepel(eps=eps, rho=rho, tau=tau, repulsion=repulsion) for eps in eps_layouts]


def parameters(pair) -> list[torch.Tensor]:
    if pair is None:
        return []
    names = ("eps", "tau") if isinstance(pair, kernels.SmoothBoundedConfidence) else ("eps", "rho", "tau", "repulsion")
    return [getattr(pair, name) for name in names]


def with_grads(pair, tensors):
    """``pair`` rebuilt from leaf copies of its parameters that require gradients."""
    if pair is None:
        return None, []
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    fields = ("eps", "tau") if isinstance(pair, kernels.SmoothBoundedConfidence) else ("eps", "rho", "tau", "repulsion")
    return type(pair)(**dict(zip(fields, leaves))), leaves


def compare_pull(graph, x, pair, source, dtype, exact=False, x_grad=True, float32_tol=2e-5):
    """Forward and the gradient of a random projection in every input, fast path vs reference
    (``x_grad=False``: ``x`` is a constant, as a simulation's state is)."""
    tol = dict(atol=1e-12, rtol=1e-10) if dtype == torch.float64 else dict(atol=float32_tol, rtol=float32_tol)
    gen = torch.Generator().manual_seed(99)
    results = []
    for fn in (fast.fused_pull, reference.neighbor_pull):
        xs = x.detach().clone().requires_grad_(x_grad)
        ss = None if source is None else source.detach().clone().requires_grad_()
        pp, leaves = with_grads(pair, parameters(pair))
        pull, weight = fn(*args(graph), xs, pp, ss)
        results.append((pull.detach(), weight.detach()))
        gen.manual_seed(99)
        proj_p = rand(*pull.shape, gen=gen, dtype=dtype, low=-1)
        proj_w = rand(*weight.shape, gen=gen, dtype=dtype, low=-1)
        inputs = ([xs] if x_grad else []) + ([ss] if ss is not None else []) + leaves
        loss = (pull * proj_p).sum() + (weight * proj_w).sum()
        results.append(torch.autograd.grad(loss, inputs, allow_unused=True, materialize_grads=True))
    fwd_fast, grads_fast, fwd_ref, grads_ref = results
    for got, want in zip(fwd_fast, fwd_ref):
        assert got.shape == want.shape
        if exact:
            assert torch.equal(got, want)
        torch.testing.assert_close(got, want, **tol)
    assert len(grads_fast) == len(grads_ref)
    for got, want in zip(grads_fast, grads_ref):
        torch.testing.assert_close(got, want, **tol)


@pytest.mark.parametrize("kind", [None, "bc", "attract_repel"])
@pytest.mark.parametrize("gated", ["none", "dense", "sparse"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_neighbor_pull_matches_the_reference(kind, gated, dtype):
    gen = torch.Generator().manual_seed(7)
    for graph in graphs(dtype):
        n, batch = graph.num_nodes, 3
        for dim in (1, 3):
            x = rand(batch, n, dim, gen=gen, dtype=dtype, low=-1)
            source = None
            if gated != "none":  # sparse: mostly zeros, as posts are
                source = rand(batch, n, gen=gen, dtype=dtype)
                if gated == "sparse":
                    source = source * (rand(batch, n, gen=gen) < 0.1).to(dtype)
            for pair in ([None] if kind is None else pairs(kind, batch, n, dim, gen, dtype)):
                if pair is not None and pair.eps.dim() == 3 and pair.eps.size(-1) != dim:
                    continue
                # without a pair kernel the fused sums are the reference's, bit for bit (one thread here)
                compare_pull(graph, x, pair, source, dtype, exact=kind is None)


@pytest.mark.parametrize("kind", [None, "bc", "attract_repel"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("threads", [1, 2])
def test_gradients_when_the_state_is_a_constant(kind, dtype, threads):
    """Only the source weights and the pair's parameters learn (a simulation's usual case): the
    backward skips x and keeps the followees' values and source gradients in one record per agent."""
    gen = torch.Generator().manual_seed(17)
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        # the last graph is over the serial threshold; its hubs sum thousands of float32 terms, in
        # another order than the reference's
        for graph, float32_tol in [(g, 2e-5) for g in graphs(dtype)[1:]] + [(Graph.holme_kim(20_000, 4, 0.3, seed=1), 2e-4)]:
            n, batch = graph.num_nodes, 2
            for dim in (1, 2):
                x = rand(batch, n, dim, gen=gen, dtype=dtype, low=-1)
                source = rand(batch, n, gen=gen, dtype=dtype) * (rand(batch, n, gen=gen) < 0.3).to(dtype)
                for pair in ([None] if kind is None else pairs(kind, batch, n, dim, gen, dtype)):
                    if pair is not None and pair.eps.dim() == 3 and pair.eps.size(-1) != dim:
                        continue
                    compare_pull(graph, x, pair, source, dtype, x_grad=False, float32_tol=float32_tol)
    finally:
        torch.set_num_threads(saved)


def test_backward_with_saturated_and_extreme_kernels():
    """Exponents beyond the backward's one-exp range (tiny tau, huge distances, eps past rho): the
    sigmoids are computed directly there, and the gradients stay finite and equal to the reference's."""
    graph = small_graph(60, 4.0, seed=5, weighted=True)
    gen = torch.Generator().manual_seed(6)
    for dtype in (torch.float64, torch.float32):
        x = rand(2, 60, 2, gen=gen, dtype=dtype, low=-1)
        x[0, :10] *= 1e3  # distances of thousands
        source = rand(2, 60, gen=gen, dtype=dtype) * (rand(2, 60, gen=gen) < 0.5).to(dtype)
        tol = dict(atol=1e-10, rtol=1e-9) if dtype == torch.float64 else dict(atol=1e-4, rtol=1e-4)
        eps = rand(60, 1, gen=gen, dtype=dtype, low=0.1, high=0.5)
        eps[:5] = 30.0  # eps - rho far beyond the exponent range for a few receivers
        for tau in (1e-3, 0.01, 0.2):
            pair = kernels.AttractRepel(eps=eps, rho=torch.tensor(0.6, dtype=dtype), tau=tau,
                                        repulsion=torch.tensor(0.5, dtype=dtype))
            results = []
            for fn in (fast.fused_pull, reference.neighbor_pull):
                ss = source.clone().requires_grad_()
                leaves = [t.detach().clone().requires_grad_() for t in (pair.eps, pair.rho, pair.repulsion)]
                pp = kernels.AttractRepel(eps=leaves[0], rho=leaves[1], tau=tau, repulsion=leaves[2])
                pull, weight = fn(*args(graph), x, pp, ss)
                loss = (pull * x).sum() + weight.sum()
                results.append(torch.autograd.grad(loss, [ss, *leaves]))
            for got, want in zip(*results):
                assert torch.isfinite(got).all()
                torch.testing.assert_close(got, want, **tol)


def test_pull_float_parameters_and_huge_distances():
    """Python-float parameters (no gradient) and saturated sigmoids stay finite and equal."""
    graph = small_graph(50, 4.0, seed=3)
    gen = torch.Generator().manual_seed(1)
    x = rand(2, 50, 2, gen=gen, low=-1) * 1e3
    for pair in (kernels.SmoothBoundedConfidence(0.3, 1e-3), kernels.AttractRepel(0.3, 0.9, 1e-3, 0.5)):
        got = fast.fused_pull(*args(graph), x, pair, None)
        want = reference.neighbor_pull(*args(graph), x, pair, None)
        for a, b in zip(got, want):
            assert torch.isfinite(a).all()
            torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("kind", [None, "bc", "attract_repel"])
def test_neighbor_pull_gradcheck(kind):
    graph = small_graph(12, 3.0, seed=4, weighted=True)
    gen = torch.Generator().manual_seed(5)
    x = rand(2, 12, 2, gen=gen, low=-1).requires_grad_()
    source = rand(2, 12, gen=gen).requires_grad_()
    pair = None if kind is None else pairs(kind, 2, 12, 2, gen)[2]
    pp, leaves = with_grads(pair, parameters(pair))
    fields = [] if pair is None else list(pp.__dataclass_fields__)

    def fn(x, source, *params):
        p = None if pair is None else type(pair)(**dict(zip(fields, params)))
        return torch.cat(fast.fused_pull(*args(graph), x, p, source), -1)

    assert torch.autograd.gradcheck(fn, (x, source, *leaves))
    # x a constant: the backward without x's gradient
    assert torch.autograd.gradcheck(lambda source, *params: fn(x.detach(), source, *params), (source, *leaves))


@pytest.mark.parametrize("scaled", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_neighbor_sum_matches_the_reference(scaled, dtype):
    gen = torch.Generator().manual_seed(8)
    tol = dict(atol=1e-12, rtol=1e-10) if dtype == torch.float64 else dict(atol=2e-5, rtol=2e-5)
    for graph in graphs(dtype):
        x = rand(2, graph.num_nodes, 3, gen=gen, dtype=dtype, low=-1).requires_grad_()
        scale = rand(2, graph.num_edges, gen=gen, dtype=dtype).requires_grad_() if scaled else None
        inputs = [x] + ([scale] if scaled else [])
        got = fast.fused_sum(graph.col, graph.row, graph.weight, x, scale)
        want = reference.neighbor_sum(graph.col, graph.row, graph.weight, x, scale)
        assert torch.equal(got, want)  # the same products, added in edge order
        proj = rand(*got.shape, gen=gen, dtype=dtype, low=-1)
        for a, b in zip(torch.autograd.grad((got * proj).sum(), inputs),
                        torch.autograd.grad((want * proj).sum(), inputs)):
            torch.testing.assert_close(a, b, **tol)
    if dtype == torch.float64:
        graph = small_graph(10, 3.0, seed=9, weighted=True)
        x = rand(2, 10, 2, gen=gen).requires_grad_()
        scale = rand(2, graph.num_edges, gen=gen).requires_grad_()
        assert torch.autograd.gradcheck(lambda x, s: fast.fused_sum(graph.col, graph.row, graph.weight, x, s),
                                        (x, scale))


def test_several_threads_agree_with_one():
    """Rows split across threads by edges; scattered gradients summed per thread: the same numbers."""
    graph = Graph.holme_kim(20_000, 4, 0.3, seed=1)  # > the serial threshold of edge visits
    gen = torch.Generator().manual_seed(2)
    x = rand(2, graph.num_nodes, 2, gen=gen, low=-1)
    source = rand(2, graph.num_nodes, gen=gen) * (rand(2, graph.num_nodes, gen=gen) < 0.2)
    pair = pairs("attract_repel", 2, graph.num_nodes, 2, gen)[1]
    saved = torch.get_num_threads()
    outputs = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            xs, ss = x.clone().requires_grad_(), source.clone().requires_grad_()
            pp, leaves = with_grads(pair, parameters(pair))
            pull, weight = kernels.neighbor_pull(graph, xs, pp, ss)
            plain, _ = kernels.neighbor_pull(graph, xs, None, ss)
            total = kernels.neighbor_sum_dense(graph, xs)
            loss = (pull * x).sum() + weight.sum() + (plain * x).sum() + (total * x).sum()
            outputs.append([pull, weight, plain, total, *torch.autograd.grad(loss, [xs, ss, *leaves])])
    finally:
        torch.set_num_threads(saved)
    for one, two in zip(*outputs):
        torch.testing.assert_close(one, two, atol=1e-11, rtol=1e-11)


def test_sparse_sources_are_pushed_with_the_same_bits():
    """Once a graph has been pulled over a few times its transpose is cached, and a pull gated by few
    sources is pushed along their out-edges: the same terms in the same order as the row loop."""
    graph = small_graph(400, 5.0, seed=21, weighted=True)
    gen = torch.Generator().manual_seed(4)
    x = rand(2, 400, 2, gen=gen, low=-1)
    source = rand(2, 400, gen=gen) * (rand(2, 400, gen=gen) < 0.05)
    pair = kernels.AttractRepel(eps=rand(400, 1, gen=gen, low=0.2, high=0.6), rho=0.9, tau=0.1, repulsion=0.4)
    rows = [fast.fused_pull(*args(graph), x, kind, source) for kind in (None, pair)]  # before the transpose
    for _ in range(fast._BUILD_AT_CALL):
        pushed = [fast.fused_pull(*args(graph), x, kind, source) for kind in (None, pair)]
    assert fast._FOLLOWERS[id(graph.col)][3] is not None
    for got, want in zip(pushed, rows):
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    want = reference.neighbor_pull(*args(graph), x, None, source)
    assert torch.equal(pushed[0][0], want[0]) and torch.equal(pushed[0][1], want[1])


def test_inputs_outside_the_fast_path_get_the_reference():
    graph = small_graph(30, 3.0, seed=6, weighted=True)
    gen = torch.Generator().manual_seed(3)
    x = rand(2, 30, 2, gen=gen, low=-1)
    per_dimension = kernels.SmoothBoundedConfidence(eps=torch.tensor([[0.3, 0.5]], dtype=torch.float64), tau=0.1)
    weight = graph.weight.double().requires_grad_()
    for pair, edge_weight in ((per_dimension, graph.weight), (None, weight)):
        got = fast.fused_pull(graph.rowptr, graph.col, graph.row, edge_weight, graph.in_weight, x, pair, None)
        want = reference.neighbor_pull(graph.rowptr, graph.col, graph.row, edge_weight, graph.in_weight, x, pair, None)
        for a, b in zip(got, want):
            assert torch.equal(a, b)
    assert weight.grad is None and fast.fused_pull(graph.rowptr, graph.col, graph.row, weight, graph.in_weight, x,
                                                   None, None)[0].requires_grad


def test_a_failed_build_logs_a_warning_and_serves_the_reference(monkeypatch, caplog):
    monkeypatch.setenv("CXX", "no-such-compiler-lpm")
    build._load.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="lpm.kernels.cpu.build"):
            assert not cpu.available()
        assert "unavailable" in caplog.text and "no-such-compiler-lpm" in caplog.text
        graph = small_graph(20, 3.0, seed=2)
        x = torch.rand(1, 20, 1, dtype=torch.float64)
        pair = kernels.AttractRepel(0.3, 0.9, 0.1, 0.5)
        for a, b in zip(kernels.neighbor_pull(graph, x, pair), reference.neighbor_pull(*args(graph), x, pair)):
            assert torch.equal(a, b)
    finally:
        build._load.cache_clear()
        monkeypatch.delenv("CXX")
    assert cpu.available()


def test_a_simulation_of_the_default_model_is_unchanged():
    """The default scenario's model (biased assimilation, emotion contagion, Hawkes) over 12 steps in
    float64: the same trajectory and parameter gradients with and without the fast path."""
    import lpm
    from lpm.scenarios import default

    graph = default.build_graph(800, seed=0, device=torch.device("cpu"))
    state = default.build_population(graph, batch=2, seed=0).to(dtype=torch.float64)
    runs = []
    for enabled in (True, False):
        model = default.build_model(graph, dt=1.0 / 3.0, seed=0).double()
        with contextlib.nullcontext() if enabled else cpu.disabled():
            traj = lpm.simulate(model, state, graph, steps=12, seed=3)
            loss = traj["polarization"][-1].sum() + traj["posts"].sum() + traj["emotion_mean"].sum()
            grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True, materialize_grads=True)
        runs.append((traj, grads))
    (fast_traj, fast_grads), (ref_traj, ref_grads) = runs
    for name in ref_traj.values:
        torch.testing.assert_close(fast_traj[name], ref_traj[name], atol=1e-12, rtol=1e-10)
    assert ref_traj["posts"].sum() > 0
    for a, b in zip(fast_grads, ref_grads):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("kind", [None, "bc", "attract_repel"])
def test_source_gradient_from_the_transpose(threads, kind):
    """Once a graph's transpose is cached, the source weights' gradient of a plain gated pull over a
    constant state is summed per followee over its followers: the same gradients as the row loop's
    and the reference's, weighted and not, one thread or two (pair kernels keep the row loop, which
    measured faster here: followers are scattered, followees are often hubs in cache)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for graph in (small_graph(300, 5.0, seed=31, weighted=True), Graph.holme_kim(20_000, 4, 0.3, seed=2)):
            gen = torch.Generator().manual_seed(32)
            n, dim = graph.num_nodes, 2
            x = rand(2, n, dim, gen=gen, low=-1)
            source = rand(2, n, gen=gen) * (rand(2, n, gen=gen) < 0.3)
            proj = rand(2, n, dim, gen=gen, low=-1), rand(2, n, dim, gen=gen, low=-1)
            for pair in ([None] if kind is None else pairs(kind, 2, n, dim, gen)):
                grads = []
                for fn in (fast.fused_pull, fast.fused_pull, reference.neighbor_pull):  # first: no transpose yet
                    ss = source.clone().requires_grad_()
                    pp, leaves = with_grads(pair, parameters(pair))
                    pull, weight = fn(*args(graph), x, pp, ss)
                    loss = (pull * proj[0]).sum() + (weight * proj[1][..., :weight.size(-1)]).sum()
                    grads.append(torch.autograd.grad(loss, [ss, *leaves]))
                    if fn is fast.fused_pull and fast._FOLLOWERS.get(id(graph.col), [None] * 4)[3] is None:
                        for _ in range(fast._BUILD_AT_CALL):
                            fast.fused_pull(*args(graph), x, None, source)
                assert fast._FOLLOWERS[id(graph.col)][3] is not None
                for rows, pushed, want in zip(*grads):
                    torch.testing.assert_close(pushed, rows, atol=1e-12, rtol=1e-10)
                    torch.testing.assert_close(pushed, want, atol=1e-12, rtol=1e-10)
    finally:
        torch.set_num_threads(saved)
