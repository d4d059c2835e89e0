"""Cascade targets and metrics against hand-computed cases; data and simulations share the code."""

from __future__ import annotations

import math

import pytest
import torch

import lpm
from lpm.data.cascades import CascadeTable
from lpm.dynamics.cascade import Cascade, Item
from lpm.errors import ConfigError
from lpm.targets import DEPTH_LEVELS, cascade_metrics, cascade_targets, ks_statistic, nrmse


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
    # depth profile within 72 h: cascade 0 has a, b at depth 1 and c at depth 2 (d is outside); cascade 1 has e
    assert targets.depth_profile.tolist() == [[2, 1, 0, 0, 0], [1, 0, 0, 0, 0]]
    assert [summary[f"share_depth_{k}"] for k in ("1", "2", "3_4", "5_7", "8_plus")] == pytest.approx([0.75, 0.25, 0, 0, 0])
    again = targets.resample(torch.tensor([1, 1, 0]))
    assert again.depth_profile.tolist() == [[1, 0, 0, 0, 0], [1, 0, 0, 0, 0], [2, 1, 0, 0, 0]]


def test_depth_profile_counts_every_level_of_a_random_forest():
    """Random trees (each node on a uniformly drawn earlier node): the profile's rows add up to the
    cascades' reshares and each level's count equals a direct count of the depths."""
    gen = torch.Generator().manual_seed(5)
    rows, cascade, parent, depth = 0, [], [], []
    for m in range(6):
        n = int(torch.randint(1, 40, (1,), generator=gen))
        levels = [0]
        cascade.append(m)
        parent.append(-1)
        depth.append(0)
        for i in range(1, n):
            on = int(torch.randint(0, i, (1,), generator=gen))
            levels.append(levels[on] + 1)
            cascade.append(m)
            parent.append(rows + on)
            depth.append(levels[i])
        rows += n
    time_h = torch.where(torch.tensor(parent) >= 0, 1.0, 0.0).double()
    table = CascadeTable(torch.tensor(cascade), time_h, torch.tensor(parent), torch.tensor(depth), [str(m) for m in range(6)])
    targets = cascade_targets(table, hours=[72.0])
    d, c = torch.tensor(depth), torch.tensor(cascade)
    assert targets.depth_profile.sum(1).tolist() == (targets.size[:, -1] - 1).long().tolist()
    for column, (first, last) in enumerate(DEPTH_LEVELS):
        inside = (d >= first) & (d <= (last if last is not None else 10**9))
        assert targets.depth_profile[:, column].tolist() == torch.bincount(c[inside], minlength=6).tolist()


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
