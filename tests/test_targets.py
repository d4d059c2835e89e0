"""Cascade targets and metrics against hand-computed cases; data and simulations share the code."""

from __future__ import annotations

import math

import pytest
import torch

import lpm
from lpm.data.cascades import CascadeTable
from lpm.dynamics.cascade import Cascade, Item
from lpm.errors import ConfigError
from lpm.targets import cascade_metrics, cascade_targets, ks_statistic, nrmse


def _two_cascades() -> CascadeTable:
    # cascade 0: root r0 (t=0); a (0.1 h, on root), b (0.4 h, on root), c (1.5 h, on a), d (80 h, on c: outside 72 h)
    # cascade 1: root r1; e (3 h, on root)
    cascade = torch.tensor([0, 0, 0, 0, 0, 1, 1])
    time_h = torch.tensor([0.0, 0.1, 0.4, 1.5, 80.0, 0.0, 3.0], dtype=torch.float64)
    parent = torch.tensor([-1, 0, 0, 1, 3, -1, 5])
    depth = torch.tensor([0, 1, 1, 2, 3, 0, 1])
    return CascadeTable(cascade, time_h, parent, depth, ["x", "y"])


def test_targets_of_a_hand_built_table():
    targets = cascade_targets(_two_cascades(), hours=[0.5, 2.0, 72.0])
    assert targets.size.tolist() == [[3, 4, 4], [1, 1, 2]]
    assert targets.depth.tolist() == [[1, 2, 2], [0, 0, 1]]
    # breadth: most nodes at one depth (root level excluded)
    assert targets.breadth.tolist() == [[2, 2, 2], [0, 0, 1]]
    # within 72 h: cascade 0 has 3 children, 2 on the root; cascade 1 has 1 on the root
    assert targets.root_share.tolist() == pytest.approx([2 / 3, 1.0])
    assert sorted(targets.delays.tolist()) == pytest.approx([0.1, 0.4, 1.5, 3.0])
    summary = targets.summary()
    assert summary["share_delays_within_1h"] == pytest.approx(0.5)


def test_ks_statistic_against_hand_values_and_scipy():
    assert ks_statistic(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 2.0, 3.0])) == 0.0
    assert ks_statistic(torch.tensor([0.0, 1.0]), torch.tensor([2.0, 3.0])) == 1.0
    scipy_stats = pytest.importorskip("scipy.stats")
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(300, generator=generator), torch.randn(200, generator=generator) * 1.3 + 0.2
    assert ks_statistic(a, b) == pytest.approx(scipy_stats.ks_2samp(a.numpy(), b.numpy()).statistic, abs=1e-12)
    with pytest.raises(ConfigError, match="non-empty"):
        ks_statistic(torch.tensor([]), a)


def test_nrmse_is_scaled_by_the_observed_range():
    observed = torch.tensor([1.0, 3.0, 5.0])
    assert nrmse(observed + 2.0, observed) == pytest.approx(2.0 / 4.0)
    assert nrmse(torch.tensor([2.0, 2.0]), torch.tensor([1.0, 1.0])) == pytest.approx(1.0)  # flat: by the mean


def test_metrics_of_identical_sets_are_zero_and_grow_with_distortion():
    table = _two_cascades()
    targets = cascade_targets(table)
    same = cascade_metrics(targets, targets)
    assert all(value == pytest.approx(0.0) for value in same.values())
    slower = CascadeTable(table.cascade, table.time_h * 3, table.parent, table.depth, table.ids)
    moved = cascade_metrics(cascade_targets(slower), targets)
    assert moved["ks_delay"] > 0 and moved["nrmse_size"] > 0


def test_simulated_and_observed_cascades_go_through_the_same_code():
    graph = lpm.Graph.barabasi_albert(400, 3, seed=2)
    model = lpm.Model(cascade=Cascade([Item(source=0), Item(source=9)], transmissibility=0.3,
                                      feed_half_life_h=0.5), dt=1 / 6)
    state = lpm.PopulationState.create(torch.zeros(2, 400, 1), torch.zeros(2, 400, 2))
    with torch.no_grad():
        final = lpm.simulate(model, state, graph, steps=30, record={}, seed=[1, 2], estimator=lpm.relax.Hard()).final
    table = CascadeTable.from_state(final, [0.0, 0.0])
    targets = cascade_targets(table, hours=[1.0, 5.0])
    # the size at the last reading equals the number of agents who reshared, per (scenario, item)
    assert targets.size[:, -1].tolist() == final.reshared.sum(1).reshape(-1).tolist()
    # depth from parents: every non-root node is one deeper than its parent
    child = table.parent >= 0
    assert torch.equal(table.depth[child], table.depth[table.parent[child]] + 1)
    assert math.isfinite(cascade_metrics(targets, targets)["nrmse_depth"])
