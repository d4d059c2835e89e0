"""The kernels' registry: a registered implementation is chosen for its key and only there; the
reference serves everything else; the dispatch functions go through it."""

from __future__ import annotations

import pytest
import torch

from lpm import kernels
from lpm.errors import ConfigError
from lpm.kernels import registry
from lpm.testing import small_graph


class Recorder:
    """A stand-in implementation: the reference, counting its calls."""

    def __init__(self, op: str) -> None:
        self.reference = registry.OPS[op]
        self.calls = 0
        self.__name__ = "recorder"

    def __call__(self, *args):
        self.calls += 1
        return self.reference(*args)


@pytest.fixture(autouse=True)
def bare_registry():
    """The registry's rules on an empty table: what lpm registers on import (the CPU fast path) is
    set aside for each test and restored after it."""
    saved = dict(registry._TABLE)
    registry._TABLE.clear()
    yield
    registry._TABLE.clear()
    registry._TABLE.update(saved)


@pytest.fixture
def registered():
    """Register stand-ins for a test and unregister them afterwards, whatever happens."""
    keys = []

    def add(op, fn, **key):
        kernels.register(op, fn, **key)
        keys.append((op, key))
        return fn

    yield add
    for op, key in keys:
        kernels.unregister(op, **key)


def test_lookup_falls_back_to_the_reference():
    for op, reference in registry.OPS.items():
        assert kernels.lookup(op, torch.device("cpu"), torch.float32) is reference
    assert [impl.fn for impl in kernels.implementations("neighbor_sum")] == [registry.OPS["neighbor_sum"]]


def test_registered_implementation_is_chosen_for_its_key_only(registered):
    stand_in = registered("neighbor_pull", Recorder("neighbor_pull"), device="cpu", dtype=torch.float64,
                          pair=kernels.SmoothBoundedConfidence)
    assert kernels.lookup("neighbor_pull", torch.device("cpu"), torch.float64, kernels.SmoothBoundedConfidence) is stand_in
    graph = small_graph(20, 3.0, seed=1)
    x = torch.rand(2, 20, 1, dtype=torch.float64)
    expected = registry.OPS["neighbor_pull"](graph.rowptr, graph.col, graph.row, graph.weight, graph.in_weight, x,
                                             kernels.SmoothBoundedConfidence(0.3, 0.1), None)
    pull, weight = kernels.neighbor_pull(graph, x, kernels.SmoothBoundedConfidence(0.3, 0.1))
    assert stand_in.calls == 1 and torch.equal(pull, expected[0]) and torch.equal(weight, expected[1])
    kernels.neighbor_pull(graph, x.float(), kernels.SmoothBoundedConfidence(0.3, 0.1))  # another dtype
    kernels.neighbor_pull(graph, x, kernels.AttractRepel(0.3, 0.9, 0.1, 0.5))  # another pair kernel
    kernels.neighbor_pull(graph, x)  # no pair kernel
    assert stand_in.calls == 1
    names = [impl.name for impl in kernels.implementations("neighbor_pull")]
    assert names == ["neighbor_pull-reference", "neighbor_pull-recorder-cpu-float64-SmoothBoundedConfidence"]


def test_any_dtype_registration_and_the_exact_dtype_wins(registered):
    general = registered("neighbor_min", Recorder("neighbor_min"), device="cpu")
    exact = registered("neighbor_min", Recorder("neighbor_min"), device="cpu", dtype=torch.float32)
    assert kernels.lookup("neighbor_min", torch.device("cpu"), torch.float64) is general
    assert kernels.lookup("neighbor_min", torch.device("cpu"), torch.float32) is exact
    assert kernels.lookup("neighbor_min", torch.device("meta"), torch.float32) is registry.OPS["neighbor_min"]


def test_unregister_restores_the_reference():
    stand_in = Recorder("gather_rows")
    kernels.register("gather_rows", stand_in, device="cpu")
    kernels.unregister("gather_rows", device="cpu")
    assert kernels.lookup("gather_rows", torch.device("cpu"), torch.float32) is registry.OPS["gather_rows"]


def test_registry_rejects_unknown_ops_and_double_registration(registered):
    with pytest.raises(ConfigError, match="op among"):
        kernels.register("no_such_op", lambda: None, device="cpu")
    with pytest.raises(ConfigError, match="device type"):
        kernels.register("neighbor_sum", lambda: None, device="")
    registered("neighbor_sum", Recorder("neighbor_sum"), device="cpu")
    with pytest.raises(ConfigError, match="one implementation per key"):
        kernels.register("neighbor_sum", Recorder("neighbor_sum"), device="cpu")
    with pytest.raises(ConfigError, match="registered implementation"):
        kernels.unregister("neighbor_sum", device="cpu", dtype=torch.float16)


def test_every_dispatch_function_goes_through_the_registry(registered):
    """Each op's stand-in sees the call its dispatch function makes (so a fused kernel would too)."""
    graph = small_graph(20, 3.0, seed=2)
    x = torch.rand(2, 20, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    posts = torch.zeros_like(x)
    posts[0, 3, 1] = 1.0  # sparse: neighbor_sum pushes from the nonzeros
    calls = {
        "neighbor_pull": lambda: kernels.neighbor_pull(graph, x),
        "neighbor_sum": lambda: kernels.neighbor_sum(graph, x),
        "neighbor_sum_sparse": lambda: kernels.neighbor_sum(graph, posts),
        "neighbor_min": lambda: kernels.neighbor_min(graph, x),
        "sum_over_followers": lambda: kernels.sum_over_followers(graph, torch.rand(2, graph.num_edges, 1, dtype=torch.float64)),
        "gather_rows": lambda: kernels.gather_followees(graph, x),
        "take_along_agents": lambda: kernels.take_along_agents(x, torch.zeros(2, 20, dtype=torch.long)),
        "sample_followee": lambda: kernels.sample_followee(graph, torch.rand(2, 20, dtype=torch.float64)),
        "sample_visible_followee": lambda: kernels.sample_visible_followee(
            graph, posts, torch.tensor([[0, 1, 0]]), torch.tensor([0.5], dtype=torch.float64)),
        "expand_segments": lambda: kernels.expand_segments(torch.tensor([0, 3]), torch.tensor([2, 1])),
    }
    assert set(calls) == set(registry.OPS)
    for op, call in calls.items():
        stand_in = registered(op, Recorder(op), device="cpu")
        call()
        assert stand_in.calls == 1, op


def test_neighbor_sum_pushes_sparse_values_only_without_gradient(registered):
    sparse = registered("neighbor_sum_sparse", Recorder("neighbor_sum_sparse"), device="cpu")
    dense = registered("neighbor_sum", Recorder("neighbor_sum"), device="cpu")
    graph = small_graph(40, 3.0, seed=3)
    x = torch.zeros(2, 40, 1, dtype=torch.float64)
    x[0, 3] = 1.0
    kernels.neighbor_sum(graph, x)
    assert (sparse.calls, dense.calls) == (1, 0)
    kernels.neighbor_sum(graph, x.clone().requires_grad_())  # gradients need the dense product
    kernels.neighbor_sum(graph, torch.rand(2, 40, 1, dtype=torch.float64))  # dense values
    assert (sparse.calls, dense.calls) == (1, 2)


def test_edge_gates_satisfy_the_edge_scale_protocol():
    from lpm.interventions import EdgeGates

    gates = EdgeGates((torch.ones(2, 1),), (torch.zeros(5),))
    assert isinstance(gates, kernels.EdgeScale)
    assert not isinstance(torch.ones(2, 5), kernels.EdgeScale)
