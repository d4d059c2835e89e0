"""The fused Triton kernels, run by Triton's interpreter on the CPU, against the plain-torch reference:
forward and the gradients of a random projection of every output, in float64.

The interpreter costs tens of ms per program and op, so graphs are tiny (tens of agents, a few
programs) but keep the awkward cases: agents that follow nobody, a hub followed by everyone, rows
and columns longer than one edge chunk, scenario and dimension counts that leave lanes masked.
"""

from __future__ import annotations

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


def _leaf(shape, seed: int, low: float = -1.0, high: float = 1.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (low + (high - low) * torch.rand(shape, generator=gen, dtype=DT)).requires_grad_()


def _grads(outputs, inputs, seed: int):
    """Gradients of ``sum_o <o, r_o>`` with fixed random ``r_o``, w.r.t. each input that requires one."""
    gen = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=gen, dtype=o.dtype)).sum() for o in outputs)
    wanted = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    return torch.autograd.grad(loss, wanted)


def _check_pull(fused, graph: Graph, x, pair, source_weight, params):
    args = (graph.rowptr, graph.col, graph.row, graph.weight, graph.in_weight)
    want = reference.neighbor_pull(*args, x, pair, source_weight)
    got = fused.neighbor_pull(*args, x, pair, source_weight)
    inputs = [x, source_weight, *params]
    assert got[0].shape == want[0].shape and got[1].shape == want[1].shape
    torch.testing.assert_close(got[0], want[0], **TOL)
    torch.testing.assert_close(got[1], want[1], **TOL)
    for g_got, g_want in zip(_grads(got, inputs, 7), _grads(want, inputs, 7)):
        assert g_got.shape == g_want.shape and g_want.abs().sum() > 0
        torch.testing.assert_close(g_got, g_want, **TOL)


def test_kernels_are_interpreted_and_not_registered(fused):
    assert type(fused.kernels.pull_rows_fwd).__name__ == "InterpretedFunction"
    # an interpreting process registers nothing: every op is served by its reference
    assert not fused_kernels.register_available()
    assert all(len(kernels.implementations(op)) == 1 for op in fused_kernels.FUSED_OPS)


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
    rho, repulsion = _leaf((), 11, 0.8, 1.2), _leaf((), 12, 0.3, 0.7)
    sw = _leaf((2, 20), 13, 0.0, 1.0)
    pair = kernels.AttractRepel(eps=eps, rho=rho, tau=0.1, repulsion=repulsion)
    _check_pull(fused, graph, x, pair, sw, [eps, rho, repulsion])


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
