"""The fused Triton kernels, run by Triton's interpreter on the CPU, against the plain-torch reference:
forward and the gradients of a random projection of every output, in float64.

The interpreter costs tens of ms per program and op, so graphs are tiny (tens of agents, a few
programs) but keep the awkward cases: agents that follow nobody, a hub followed by everyone, rows
and columns longer than one edge chunk, scenario and dimension counts that leave lanes masked.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import pytest
import torch

# Triton decorates its own library functions for compiled or interpreted kernels when it is first
# imported, so the interpreter must be chosen before that. Without a GPU nothing else in the test
# process compiles Triton kernels, so the interpreter is chosen for the process (kept set: Triton
# also reads it at launch). Where Triton was already imported compiled, or a GPU is present, the
# module runs again in a fresh process with the interpreter (test_in_a_fresh_interpreted_process).
if "triton" not in sys.modules and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"
pytest.importorskip("triton")

from lpm import kernels  # noqa: E402
from lpm.graph import Graph  # noqa: E402
from lpm.kernels import reference  # noqa: E402
from lpm.kernels import triton as fused_kernels  # noqa: E402
from lpm.scenario import load_scenario  # noqa: E402
from lpm.simulate import simulate  # noqa: E402
from lpm.testing import small_graph  # noqa: E402

INTERPRETED = fused_kernels.interpreting()
DT = torch.float64
# float64 sums of tens of terms of size <= 10, in another order than the reference's scatter
TOL = dict(atol=1e-11, rtol=1e-10)


@pytest.fixture(scope="module")
def fused():
    if not INTERPRETED:
        pytest.skip("Triton was imported compiled in this process: see test_in_a_fresh_interpreted_process")
    return fused_kernels.fused_ops()


@pytest.mark.skipif(INTERPRETED, reason="the interpreter runs in this process")
def test_in_a_fresh_interpreted_process():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                           __file__], capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    assert " passed" in done.stdout and " failed" not in done.stdout, done.stdout[-2000:]


def _dense_graph(num_nodes: int, seed: int, weighted: bool) -> Graph:
    """Every agent follows about 60% of the others, and agent 1 follows everyone: rows and columns
    several edge chunks long (8-16 edges each)."""
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(num_nodes, num_nodes, generator=gen) < 0.6
    mask[1] = True
    followers, followees = mask.nonzero().unbind(1)
    weight = torch.rand(followers.numel(), generator=gen, dtype=DT) + 0.1 if weighted else None
    return Graph.from_edge_index(torch.stack([followees, followers]), num_nodes, weight)


def _leaf(shape, seed: int, low: float = -1.0, high: float = 1.0, dtype=DT) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (low + (high - low) * torch.rand(shape, generator=gen, dtype=torch.float64)).to(dtype).requires_grad_()


def _grads(outputs, inputs, seed: int):
    """Gradients of ``sum_o <o, r_o>`` with fixed random ``r_o``, w.r.t. each input that requires one."""
    gen = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=gen, dtype=o.dtype)).sum() for o in outputs)
    wanted = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    return torch.autograd.grad(loss, wanted)


def _check_pull(fused, graph: Graph, x, pair, source_weight, params, tol=TOL):
    args = (graph.rowptr, graph.col, graph.row, graph.weight, graph.in_weight)
    want = reference.neighbor_pull(*args, x, pair, source_weight)
    got = fused.neighbor_pull(*args, x, pair, source_weight)
    inputs = [x, source_weight, *params]
    assert got[0].shape == want[0].shape and got[1].shape == want[1].shape
    torch.testing.assert_close(got[0], want[0], **tol)
    torch.testing.assert_close(got[1], want[1], **tol)
    for g_got, g_want in zip(_grads(got, inputs, 7), _grads(want, inputs, 7)):
        assert g_got.shape == g_want.shape and g_want.abs().sum() > 0
        torch.testing.assert_close(g_got, g_want, **tol)


def test_kernels_are_interpreted_and_not_registered(fused):
    assert type(fused.kernels.pull_rows_fwd).__name__ == "InterpretedFunction"
    # an interpreting process registers nothing for CUDA (the CPU's own fast path may be registered)
    assert not fused_kernels.register_available()
    assert not any(impl.device == "cuda" for op in fused_kernels.FUSED_OPS for impl in kernels.implementations(op))


@pytest.mark.parametrize("with_source", [False, True])
def test_pull_without_pair_kernel(fused, with_source):
    graph = small_graph(20, 3.0, seed=1, weighted=with_source)
    x = _leaf((2, 20, 3), 1)
    sw = _leaf((2, 20), 2, 0.0, 1.0) if with_source else None
    _check_pull(fused, graph, x, None, sw, [])


def test_pull_smooth_bounded_confidence_per_agent_eps(fused):
    graph = small_graph(24, 3.0, seed=2, weighted=True)
    x = _leaf((3, 24, 1), 3)
    eps = _leaf((3, 24, 1), 4, 0.2, 0.8)
    seen = (torch.rand(3, 24, generator=torch.Generator().manual_seed(5)) < 0.7).to(DT)  # posted or not
    seen.requires_grad_()
    _check_pull(fused, graph, x, kernels.SmoothBoundedConfidence(eps=eps, tau=0.1), seen, [eps])


def test_pull_smooth_bounded_confidence_learnable_scalars(fused):
    graph = small_graph(20, 3.0, seed=3)
    x = _leaf((2, 20, 3), 6)
    eps, tau = _leaf((), 7, 0.3, 0.6), _leaf((), 8, 0.05, 0.2)
    _check_pull(fused, graph, x, kernels.SmoothBoundedConfidence(eps=eps, tau=tau), None, [eps, tau])


def test_pull_attract_repel(fused):
    graph = small_graph(20, 3.0, seed=4, weighted=True)
    x = _leaf((2, 20, 2), 9)
    eps = _leaf((20, 1), 10, 0.2, 0.5)
    rho, repulsion, tau = _leaf((), 11, 0.8, 1.2), _leaf((), 12, 0.3, 0.7), _leaf((1,), 24, 0.05, 0.2)
    sw = _leaf((2, 20), 13, 0.0, 1.0)
    pair = kernels.AttractRepel(eps=eps, rho=rho, tau=tau, repulsion=repulsion)
    _check_pull(fused, graph, x, pair, sw, [eps, rho, repulsion, tau])


def test_pull_long_rows_and_columns(fused):
    graph = _dense_graph(36, 5, weighted=True)
    x = _leaf((1, 36, 1), 14)
    pair = kernels.AttractRepel(eps=0.4, rho=0.9, tau=0.1, repulsion=0.5)
    _check_pull(fused, graph, x, pair, _leaf((1, 36), 15, 0.0, 1.0), [])


def test_pull_other_pair_kernel_goes_to_the_reference(fused):
    graph = small_graph(12, 2.0, seed=5)
    x = _leaf((1, 12, 1), 16)
    pair = kernels.Personalization(gamma=2.0)
    _check_pull(fused, graph, x, pair, None, [])


@pytest.mark.parametrize("scale_rows", [0, 1, 2])
def test_neighbor_sum(fused, scale_rows):
    graph = small_graph(20, 3.0, seed=6, weighted=scale_rows != 1)
    x = _leaf((2, 20, 3), 17)
    scale = _leaf((scale_rows, graph.num_edges), 18, 0.0, 1.0) if scale_rows else None
    want = reference.neighbor_sum(graph.col, graph.row, graph.weight, x, scale)
    got = fused.neighbor_sum(graph.col, graph.row, graph.weight, x, scale)
    torch.testing.assert_close(got, want, **TOL)
    inputs = [x, scale]
    for g_got, g_want in zip(_grads([got], inputs, 19), _grads([want], inputs, 19)):
        assert g_got.shape == g_want.shape
        torch.testing.assert_close(g_got, g_want, **TOL)


def test_neighbor_sum_long_columns_without_gradient(fused):
    graph = _dense_graph(30, 6, weighted=False)
    frontier = (torch.rand(2, 30, 2, generator=torch.Generator().manual_seed(20)) < 0.3).to(DT)  # posts per item
    scale = torch.rand(2, graph.num_edges, generator=torch.Generator().manual_seed(21), dtype=DT)
    want = reference.neighbor_sum(graph.col, graph.row, None, frontier, scale)
    torch.testing.assert_close(fused.neighbor_sum(graph.col, graph.row, None, frontier, scale), want, **TOL)


def test_sum_over_followers(fused):
    graph = _dense_graph(30, 7, weighted=False)
    values = _leaf((2, graph.num_edges, 3), 22)
    want = reference.sum_over_followers(graph.col, values, graph.num_nodes)
    got = fused.sum_over_followers(graph.col, values, graph.num_nodes)
    torch.testing.assert_close(got, want, **TOL)
    (g_got,), (g_want,) = _grads([got], [values], 23), _grads([want], [values], 23)
    torch.testing.assert_close(g_got, g_want, **TOL)


def test_pull_float64_states_on_a_float32_graph(fused):
    """The reference's pull without pair kernel or source weights uses the graph's own in-weights,
    summed in float32 here; the fused pull must agree in float64, not only to float32 rounding
    (the first H200 run differed by 1e-6 on such a graph)."""
    graph = small_graph(20, 3.0, seed=10, weighted=True, dtype=torch.float32)
    assert graph.in_weight.dtype == torch.float32
    x = _leaf((2, 20, 3), 28)
    _check_pull(fused, graph, x, None, None, [])


def test_pull_float32(fused):
    """float32: sums of up to ~10 terms of size <= 2, sigmoid slopes up to 1/(4 tau) = 2.5, in
    another order than the reference: 2e-5 absolute is ~100 ulps of the largest term."""
    graph = small_graph(20, 3.0, seed=8, weighted=True, dtype=torch.float32)
    x = _leaf((2, 20, 2), 25, dtype=torch.float32)
    eps = _leaf((2, 20, 1), 26, 0.2, 0.8, dtype=torch.float32)
    sw = _leaf((2, 20), 27, 0.0, 1.0, dtype=torch.float32)
    pair = kernels.AttractRepel(eps=eps, rho=0.9, tau=0.1, repulsion=0.5)
    _check_pull(fused, graph, x, pair, sw, [eps], tol=dict(atol=2e-5, rtol=1e-5))


@pytest.mark.parametrize("pair_name", ["sbc", "ar"])
def test_pull_gradcheck(fused, pair_name):
    """Finite differences of the fused pull itself (not only agreement with the reference)."""
    graph = small_graph(8, 2.0, seed=9, weighted=True)
    x = _leaf((1, 8, 1), 28)
    sw = _leaf((1, 8), 29, 0.2, 1.0)
    eps = _leaf((1, 8, 1), 30, 0.3, 0.9)
    args = (graph.rowptr, graph.col, graph.row, graph.weight, graph.in_weight)

    def pull(x, sw, eps):
        pair = (kernels.SmoothBoundedConfidence(eps=eps, tau=0.2) if pair_name == "sbc"
                else kernels.AttractRepel(eps=eps, rho=1.0, tau=0.2, repulsion=0.5))
        return fused.neighbor_pull(*args, x, pair, sw)

    assert torch.autograd.gradcheck(pull, (x, sw, eps), eps=1e-6, atol=1e-7)


@contextlib.contextmanager
def _registered_on_cpu(fused, calls: dict):
    """The interpreted fused ops registered for CPU float64 tensors (so that the dispatch uses them),
    counting their calls."""
    keys = [(op, pair) for op, pairs in fused_kernels.FUSED_OPS.items() for pair in pairs]

    def counted(op, fn):
        def run(*args):
            calls[op] = calls.get(op, 0) + 1
            return fn(*args)
        return run

    # the CPU fast path (kernels/cpu) may hold these keys: set aside while the interpreted ops stand in
    displaced = {(impl.op, impl.pair): impl.fn for op, _ in keys for impl in kernels.implementations(op)[1:]
                 if impl.device == "cpu" and impl.dtype == DT}
    for op, pair in keys:
        if (op, pair) in displaced:
            kernels.unregister(op, device="cpu", dtype=DT, pair=pair)
        kernels.register(op, counted(op, getattr(fused, op)), device="cpu", dtype=DT, pair=pair)
    try:
        yield
    finally:
        for op, pair in keys:
            kernels.unregister(op, device="cpu", dtype=DT, pair=pair)
            if (op, pair) in displaced:
                kernels.register(op, displaced[op, pair], device="cpu", dtype=DT, pair=pair)


def _default_run(steps: int):
    scenario = load_scenario("default")
    graph = scenario.build_graph(40, 0, torch.device("cpu"))
    state = scenario.build_population(graph, 2, 0).to(dtype=DT)
    model = scenario.build_model(graph, scenario.dt, 0).to(dtype=DT)
    trajectory = simulate(model, state, graph, steps=steps, seed=0)
    trajectory["polarization"][-1].sum().backward()
    return trajectory, {name: p.grad for name, p in model.named_parameters() if p.grad is not None}


def test_default_model_through_the_dispatch(fused):
    """The default model (biased assimilation, emotion contagion, Hawkes; 40 agents, 2 scenarios)
    stepped through the dispatch with the fused kernels registered equals the reference run:
    observables, and gradients of the final polarization w.r.t. every parameter."""
    reference_run, reference_grads = _default_run(4)
    calls: dict = {}
    with _registered_on_cpu(fused, calls):
        fused_run, fused_grads = _default_run(4)
    assert calls.get("neighbor_pull", 0) >= 4 * 3, calls  # opinion, emotion and activity, every step
    for name, want in reference_run.values.items():
        torch.testing.assert_close(fused_run[name], want, **TOL, msg=name)
    assert reference_grads.keys() == fused_grads.keys() and reference_grads
    for name, want in reference_grads.items():
        torch.testing.assert_close(fused_grads[name], want, atol=1e-10, rtol=1e-8, msg=name)
