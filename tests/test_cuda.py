"""CPU against CUDA: every fused kernel registered for CUDA against the reference on the GPU and
against the reference on the CPU (forward and gradients), and whole simulations of the default
model (and of a cascade) with the same draws on both devices. Skipped without CUDA;
``scripts/gpu_check.sh`` runs them (``pytest -m cuda``)."""

from __future__ import annotations

import pytest
import torch

from lpm import kernels
from lpm.graph import Graph
from lpm.kernels import registry
from lpm.kernels import triton as fused_kernels
from lpm.observables import CASCADE, DEFAULT
from lpm.scenario import load_scenario
from lpm.simulate import simulate
from lpm.testing import small_graph

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

CUDA = torch.device("cuda")


@pytest.fixture(autouse=True, scope="module")
def _fused_on_cuda():
    """The fused kernels are opt-in for users (LPM_FUSED_KERNELS=1): registered for this module's
    tests only, so other modules in the session see the registry as configured."""
    with fused_kernels.fused_registered() as on:
        assert on, "the fused kernels could not be registered (Triton missing or interpreting?)"
        yield
DTYPES = (torch.float32, torch.float64)


def _tol(want: torch.Tensor) -> dict:
    """float32: sums of up to a few hundred terms (the hub's row) in another order than the
    reference's scatter, with sigmoid slopes up to 1/(4 tau) = 2.5: a few ulps of the largest term
    per term, relative to the output's scale. float64: the same, 2**29 times finer."""
    scale = float(want.abs().max()) + 1.0
    if want.dtype == torch.float32:
        return dict(atol=3e-5 * scale, rtol=1e-4)
    return dict(atol=1e-12 * scale, rtol=1e-10)


def _graphs() -> list[Graph]:
    return [small_graph(400, 8.0, seed=1, weighted=True, dtype=torch.float32),
            Graph.holme_kim(5000, 5, 0.3, seed=2)]


def _random(shape, seed: int, dtype, low=-1.0, high=1.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(shape, generator=gen, dtype=torch.float64).to(dtype)


def _pair(name: str, num_nodes: int, batch: int, dtype, device):
    """The pair kernel and its differentiable parameters (leaves on ``device``)."""
    if name == "none":
        return None, []
    eps = _random((batch, num_nodes, 1), 3, dtype, 0.2, 0.8).to(device).requires_grad_()
    if name == "sbc":
        return kernels.SmoothBoundedConfidence(eps=eps, tau=0.1), [eps]
    rho = torch.tensor(0.9, dtype=dtype, device=device, requires_grad=True)
    repulsion = torch.tensor(0.4, dtype=dtype, device=device, requires_grad=True)
    return kernels.AttractRepel(eps=eps, rho=rho, tau=0.1, repulsion=repulsion), [eps, rho, repulsion]


def _run_pull(graph: Graph, impl, device, dtype, pair_name: str, with_source: bool):
    batch, dim = 2, 3
    x = _random((batch, graph.num_nodes, dim), 4, dtype).to(device).requires_grad_()
    sw = ((_random((batch, graph.num_nodes), 5, dtype, 0.0, 1.0) < 0.6).to(dtype).to(device).requires_grad_()
          if with_source else None)
    pair, params = _pair(pair_name, graph.num_nodes, batch, dtype, device)
    g = graph.to(device)
    pull, weight = impl(g.rowptr, g.col, g.row, g.weight, g.in_weight, x, pair, sw)
    gen = torch.Generator().manual_seed(6)
    loss = (pull * torch.randn(pull.shape, generator=gen, dtype=dtype).to(device)).sum() + \
        (weight * torch.randn(weight.shape, generator=gen, dtype=dtype).to(device)).sum()
    leaves = [t for t in [x, sw, *params] if t is not None]
    return [pull, weight, *torch.autograd.grad(loss, leaves)]


def _assert_all_close(got: list, want: list) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.shape == b.shape
        torch.testing.assert_close(a.detach().cpu(), b.detach().cpu(), **_tol(b.detach()))


def test_fused_kernels_are_registered_for_cuda():
    for op, pairs in fused_kernels.FUSED_OPS.items():
        for dtype in DTYPES:
            for pair in pairs:
                assert kernels.lookup(op, CUDA, dtype, pair) is not registry.OPS[op], (op, dtype, pair)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("pair_name,with_source", [("none", False), ("none", True), ("sbc", True), ("sbc", False),
                                                   ("ar", True)])
def test_neighbor_pull_fused_cuda_against_reference_on_cuda_and_cpu(dtype, pair_name, with_source):
    reference = registry.OPS["neighbor_pull"]
    pair_type = {"none": None, "sbc": kernels.SmoothBoundedConfidence, "ar": kernels.AttractRepel}[pair_name]
    fused = kernels.lookup("neighbor_pull", CUDA, dtype, pair_type)
    for graph in _graphs():
        got = _run_pull(graph, fused, CUDA, dtype, pair_name, with_source)
        _assert_all_close(got, _run_pull(graph, reference, CUDA, dtype, pair_name, with_source))
        _assert_all_close(got, _run_pull(graph, reference, torch.device("cpu"), dtype, pair_name, with_source))


def _run_sum(graph: Graph, impl, device, dtype, scaled: bool):
    x = _random((3, graph.num_nodes, 2), 7, dtype).to(device).requires_grad_()
    scale = _random((3, graph.num_edges), 8, dtype, 0.0, 1.0).to(device).requires_grad_() if scaled else None
    g = graph.to(device)
    out = impl(g.col, g.row, g.weight, x, scale)
    loss = (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(9), dtype=dtype).to(device)).sum()
    return [out, *torch.autograd.grad(loss, [t for t in (x, scale) if t is not None])]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("scaled", [False, True])
def test_neighbor_sum_fused_cuda_against_reference_on_cuda_and_cpu(dtype, scaled):
    fused = kernels.lookup("neighbor_sum", CUDA, dtype)
    for graph in _graphs():
        got = _run_sum(graph, fused, CUDA, dtype, scaled)
        _assert_all_close(got, _run_sum(graph, registry.OPS["neighbor_sum"], CUDA, dtype, scaled))
        _assert_all_close(got, _run_sum(graph, registry.OPS["neighbor_sum"], torch.device("cpu"), dtype, scaled))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_sum_over_followers_fused_cuda_against_reference_on_cpu(dtype):
    fused = kernels.lookup("sum_over_followers", CUDA, dtype)
    for graph in _graphs():
        values = _random((2, graph.num_edges, 3), 10, dtype)
        got = fused(graph.col.to(CUDA), values.to(CUDA), graph.num_nodes)
        want = registry.OPS["sum_over_followers"](graph.col, values, graph.num_nodes)
        _assert_all_close([got], [want])


def _simulate(name: str, device: torch.device, agents: int, steps: int, grad: bool, record=None):
    scenario = load_scenario(name)
    graph = scenario.build_graph(agents, 0, device)
    state = scenario.build_population(graph, 2, 0).to(dtype=torch.float64)
    model = scenario.build_model(graph, scenario.dt, 0).to(device=device, dtype=torch.float64)
    with torch.set_grad_enabled(grad):
        trajectory = simulate(model, state, graph, steps=steps, seed=0, record=record)
    return model, trajectory


def test_simulate_default_model_same_on_cpu_and_cuda():
    """A whole week of the default model (1000 agents, 2 scenarios, the shock on day 3), float64: the
    same draws on both devices (counter-based), so every recorded observable agrees."""
    steps = load_scenario("default").steps
    _, on_cpu = _simulate("default", torch.device("cpu"), 1000, steps, grad=False)
    _, on_cuda = _simulate("default", CUDA, 1000, steps, grad=False)
    assert set(on_cpu.values) == set(on_cuda.values)
    for name, want in on_cpu.values.items():
        torch.testing.assert_close(on_cuda[name].cpu(), want, atol=1e-9, rtol=1e-9, msg=name)
    assert float(on_cpu["posts"].sum()) > 0


def test_simulate_default_model_gradients_same_on_cpu_and_cuda():
    grads = []
    for device in (torch.device("cpu"), CUDA):
        model, trajectory = _simulate("default", device, 2000, 36, grad=True)
        trajectory["polarization"][-1].sum().backward()
        grads.append({n: p.grad.cpu() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name, want in grads[0].items():
        torch.testing.assert_close(grads[1][name], want, atol=1e-9, rtol=1e-7, msg=name)


def test_simulate_cascade_same_on_cpu_and_cuda():
    """The misinformation scenario's model (a cascade: the push of posts to followers, sparse on the
    CPU, the fused dense push on CUDA) without interventions: the same reshares and exposures."""
    record = {**DEFAULT, **CASCADE}
    _, on_cpu = _simulate("misinformation", torch.device("cpu"), 3000, 72, grad=False, record=record)
    _, on_cuda = _simulate("misinformation", CUDA, 3000, 72, grad=False, record=record)
    assert float(on_cpu["reshares"].sum()) > 0
    for name, want in on_cpu.values.items():
        torch.testing.assert_close(on_cuda[name].cpu(), want, atol=1e-9, rtol=1e-9, msg=name)
