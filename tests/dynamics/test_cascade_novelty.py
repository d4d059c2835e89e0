"""Resharers' reach that ages (Cascade ``resharer_half_life_h``): an item's resharers reach
``tau / (tau + age)`` of their audience ``age`` hours after its post; older models are unchanged."""

from __future__ import annotations

import pytest
import torch

import lpm
from lpm import relax
from lpm.calibration.cascade_world import CascadeWorld, model_params, set_params, world_from_meta
from lpm.dynamics import Cascade, Item, init_cascade_state
from lpm.errors import ConfigError
from lpm.graph import Graph
from lpm.rng import CounterRNG
from tests.helpers import assert_cascade_gradients_match_finite_differences, make_state

SIZE = {"size": lambda state, events: state.reshared.sum(1)}


def _cascade(starts=(0.0, 0.0, 0.0), **kwargs) -> Cascade:
    return Cascade([Item(source=3 + 7 * c, start_h=s) for c, s in enumerate(starts)], transmissibility=0.1,
                   audience=40.0, feed_half_life_h=0.5, resharer_audience=20.0, **kwargs)


def test_reach_falls_as_tau_over_tau_plus_the_items_age_and_halves_at_tau():
    """At time 5 h, items posted at 0, 2, 3 and 7 h are 5, 3, 2 and (not yet posted) 0 h old; with
    tau = 2 their reach is the unaged one times 2/7, 2/5, 1/2 (the half-life) and 1. The spreads
    across agents and items multiply in unchanged."""
    n, tau = 30, 2.0
    starts = (0.0, 2.0, 3.0, 7.0)
    rng = CounterRNG.from_seed([4, 5], 2)
    spreads = dict(resharer_audience_spread=0.6, resharer_item_spread=0.8)
    aged = _cascade(starts, resharer_half_life_h=tau, **spreads).double()
    unaged = _cascade(starts, **spreads).double()
    with torch.no_grad():
        got = aged.resharer_reach(rng, n, torch.float64, time_h=5.0)
        want = unaged.resharer_reach(rng, n, torch.float64, time_h=5.0)
    assert got.shape == want.shape == (2, n, 4)
    # the stored half-life went through float32 softplus coordinates: 2 within ~1e-7, so read it back
    tau = float(aged.resharer_half_life_h.detach())
    assert tau == pytest.approx(2.0, rel=1e-6)
    factor = torch.tensor([tau / (tau + 5), tau / (tau + 3), tau / (tau + 2), 1.0], dtype=torch.float64)
    torch.testing.assert_close(got, want * factor, rtol=1e-12, atol=0)


def test_a_reach_that_ages_needs_the_time_and_a_resharer_audience():
    rng = CounterRNG.from_seed([1], 1)
    with pytest.raises(ConfigError, match="time_h"):
        _cascade(resharer_half_life_h=1.0).resharer_reach(rng, 10, torch.float64)
    with pytest.raises(ConfigError, match="resharer_audience"):
        Cascade([Item(source=1)], transmissibility=0.1, resharer_half_life_h=1.0)
    with pytest.raises(ConfigError, match="resharer_half_life_h"):
        _cascade(resharer_half_life_h=-1.0)


def test_a_very_long_half_life_gives_the_model_without_ageing_and_a_short_one_fewer_reshares():
    """tau = 1e9 h scales the reach by ``1 - age / tau`` ~ 1 - 1e-9 over these 1.5 h, far below the
    1e-7 tolerance (expected-value dynamics, nothing drawn). A half-life of 0.3 h removes exposures
    and nothing else, and the dynamics are monotone in exposures, so every item ends smaller."""
    graph = Graph.holme_kim(120, 3, 0.3, seed=2)
    state = init_cascade_state(make_state(120, batch=2, seed=1), 3)

    def run(**kwargs) -> torch.Tensor:
        model = lpm.Model(cascade=_cascade(resharer_audience_spread=0.5, **kwargs), dt=0.25).double()
        return lpm.simulate(model, state, graph, steps=6, seed=[1, 2], record=SIZE, estimator=relax.Expected())["size"]

    plain = run()
    assert float(plain[-1].detach().min()) > 1.5  # every item spreads beyond its source
    torch.testing.assert_close(run(resharer_half_life_h=1e9), plain, rtol=1e-7, atol=0)
    short = run(resharer_half_life_h=0.3)
    assert bool((short[-1] < plain[-1] - 1e-6).all())


def test_resharer_half_life_gradients_match_finite_differences():
    cascade = Cascade([Item(source=3), Item(source=17, start_h=0.5)], transmissibility=0.2, audience=30.0,
                      feed_half_life_h=0.6, resharer_audience=4.0, resharer_half_life_h=0.8)
    checked = assert_cascade_gradients_match_finite_differences(
        cascade, Graph.holme_kim(40, 2, 0.3, seed=6), lambda run: run["size"][-1].log().sum(), SIZE)
    assert checked == 5  # transmissibility, audience, feed half-life, resharer audience and its half-life


def test_the_world_fits_the_half_life_only_when_asked_and_old_fits_load_without_it():
    plain, novelty = CascadeWorld(agents=200, items=2), CascadeWorld(agents=200, items=2, resharer_novelty=True)
    assert "resharer_half_life_h" not in plain.params
    assert novelty.params[-1] == "resharer_half_life_h"
    model = novelty.model({"resharer_half_life_h": 3.5})
    assert model_params(model)["resharer_half_life_h"] == pytest.approx(3.5)
    set_params(model, {"resharer_half_life_h": 0.7})
    assert float(model.cascade.resharer_half_life_h) == pytest.approx(0.7)
    assert "resharer_half_life_h" not in model_params(plain.model({}))
    # a fit saved before the option names the world without it
    assert world_from_meta({"world": {"agents": 200, "items": 2, "resharer_audience": True}}).resharer_novelty is False
