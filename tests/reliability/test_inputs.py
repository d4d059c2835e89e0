"""Seeds, item start times and schedules past the horizon: refused or warned about, never silent."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import lpm
from lpm.dynamics import Cascade, Item
from lpm.errors import ConfigError
from lpm.interventions import FactCheckLabel
from lpm.rng import SEED_MAX, SEED_MIN, CounterRNG
from lpm.testing import small_graph


@pytest.mark.parametrize("seed", [2**64, 2**63, SEED_MIN - 1, -(2**64)])
def test_seed_outside_int64_is_refused(seed):
    with pytest.raises(ConfigError, match=f"int64 range.*got {seed}"):
        CounterRNG.from_seed(seed, 2)


def test_seed_sequence_outside_int64_is_refused():
    with pytest.raises(ConfigError, match="int64 range"):
        CounterRNG.from_seed([2**64, 1], 2)


def test_seed_2_pow_64_no_longer_aliases_seed_0():
    graph = small_graph(20, seed=0)
    state = lpm.PopulationState.sample(20, seed=0)
    model = lpm.Model(activity=lpm.dynamics.Hawkes(mu=0.6, alpha=0.8, beta=1.5))
    with pytest.raises(ConfigError, match="18446744073709551616"):
        lpm.simulate(model, state, graph, steps=2, seed=2**64)


def test_int64_edges_and_numpy_seeds_work():
    for seed in (SEED_MIN, SEED_MAX, 0, -1):
        assert CounterRNG.from_seed(seed, 3).seeds.shape == (3,)
    assert torch.equal(CounterRNG.from_seed(np.int64(7), 3).seeds, CounterRNG.from_seed(7, 3).seeds)
    assert torch.equal(CounterRNG.from_seed(torch.tensor(7), 3).seeds, CounterRNG.from_seed(7, 3).seeds)
    graph = lpm.Graph.barabasi_albert(np.int64(50), np.int64(2), seed=np.int64(3))
    assert graph.num_nodes == 50


def test_numpy_seed_through_simulate():
    graph = small_graph(20, seed=0)
    state = lpm.PopulationState.sample(20, seed=0)
    model = lpm.Model(activity=lpm.dynamics.Hawkes(mu=0.6, alpha=0.8, beta=1.5))
    a = lpm.simulate(model, state, graph, steps=3, seed=np.int64(5))
    b = lpm.simulate(model, state, graph, steps=3, seed=5)
    torch.testing.assert_close(a["posts"], b["posts"], atol=0, rtol=0)


@pytest.mark.parametrize("start_h", [float("nan"), float("inf"), -1.0])
def test_item_start_must_be_finite(start_h):
    with pytest.raises(ConfigError, match=f"start_h.*got {start_h}"):
        Item(source=0, start_h=start_h)


def _cascade_model(at: float, start_h: float = 0.0) -> lpm.Model:
    label = FactCheckLabel(item=0, at=at, strength=0.5)
    cascade = Cascade([Item(source=0, start_h=start_h)], transmissibility=0.1, attention=0.5)
    return lpm.Model(cascade=cascade, interventions=[label], dt=0.5)


def test_intervention_after_horizon_warns_at_the_caller():
    graph = small_graph(30, seed=0)
    state = lpm.PopulationState.sample(30, seed=0)
    with pytest.warns(UserWarning, match=r"intervention 0 \(FactCheckLabel\).*at 5 h \(got at=24 h\)") as record:
        lpm.simulate(_cascade_model(at=24.0), state, graph, steps=10, seed=0)
    assert record[0].filename == __file__  # stacklevel=2: the warning points at this call


def test_item_after_horizon_warns():
    graph = small_graph(30, seed=0)
    state = lpm.PopulationState.sample(30, seed=0)
    with pytest.warns(UserWarning, match=r"item 0 .*start_h=9 h"):
        lpm.simulate(_cascade_model(at=1.0, start_h=9.0), state, graph, steps=10, seed=0)


def test_schedule_inside_horizon_does_not_warn():
    graph = small_graph(30, seed=0)
    state = lpm.PopulationState.sample(30, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lpm.simulate(_cascade_model(at=1.0, start_h=1.0), state, graph, steps=10, seed=0)
