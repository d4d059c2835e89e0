"""Items that differ in pace only (Cascade ``feed_item_pace``): a post's visibility summed over its
lifetime (:func:`lpm.dynamics.feed_decay.lifetime_visibility`), and exposures scaled so that every
item's posts give the same total whatever its half-life."""

from __future__ import annotations

import pytest
import torch

import lpm
from lpm import relax
from lpm.calibration.cascade_world import CascadeWorld, world_from_meta
from lpm.dynamics import Cascade, Item, init_cascade_state
from lpm.dynamics.feed_decay import _power_law_scale, feed_visibility, lifetime_visibility
from lpm.errors import ConfigError
from lpm.graph import Graph
from lpm.rng import CounterRNG
from tests.helpers import assert_cascade_gradients_match_finite_differences, make_state

DT = 0.25
EXPOSURES = {"exposures": lambda state, events: state.exposures.sum(1)}  # (B, C) summed over agents


def _brute_force_sum(half_life: float, tail) -> float:
    """``sum_n v(n dt)`` over 400,000 steps, plus (power law) the integral of what is left, which is
    below 1e-6 of the total there."""
    h = torch.tensor(half_life, dtype=torch.float64)
    total = feed_visibility(torch.arange(400_000, dtype=torch.float64) * DT, h, tail).sum()
    if tail is not None:
        scale = _power_law_scale(h, tail)
        total = total + scale / (tail - 1) * (1 + (400_000 - 0.5) * DT / scale) ** (1 - tail) / DT
    return float(total)


@pytest.mark.parametrize("tail", [None, 1.4, 2.5])
@pytest.mark.parametrize("half_life", [0.03, 0.4, 3.0, 40.0])
def test_lifetime_visibility_is_the_sum_over_every_step(tail, half_life):
    """Against a brute-force sum over 400,000 steps: the exponential law's closed form to rounding
    (1e-12), the power law's 512 terms plus the midpoint-rule integral to 1e-6 (measured: 1e-8)."""
    tail_t = None if tail is None else torch.tensor(tail, dtype=torch.float64)
    got = float(lifetime_visibility(torch.tensor(half_life, dtype=torch.float64), DT, tail_t))
    assert got == pytest.approx(_brute_force_sum(half_life, tail_t), rel=1e-12 if tail is None else 1e-6)
    assert got >= 1.0  # the step of the post itself counts fully


def test_lifetime_visibility_gradients():
    half_life = torch.tensor([0.2, 1.3, 9.0], dtype=torch.float64, requires_grad=True)
    tail = torch.tensor(1.6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda h, a: lifetime_visibility(h, DT, a), (half_life, tail))
    # the exponential law: smooth between the steps at which a term crosses the 1% cut
    assert torch.autograd.gradcheck(lambda h: lifetime_visibility(h, DT), (half_life,))


def _world(pace: bool, spread: float, tail=None) -> lpm.Model:
    kwargs = dict(feed_item_spread=spread, feed_item_pace=pace) if spread > 0 else {}
    cascade = Cascade([Item(source=3 + 11 * c) for c in range(6)], transmissibility=1e-12, audience=50.0,
                      feed_half_life_h=0.3, feed_tail=tail, **kwargs)
    return lpm.Model(cascade=cascade, dt=DT).double()


def test_paced_items_give_the_same_exposures_in_all_spread_over_their_own_time():
    """With transmissibility ~0 only the sources post, so each item's exposures summed over agents and
    steps are (audience + followers) x the source post's summed visibility. With pace, that is the
    total at the median half-life for every item, whatever its own (exponential law: the run passes
    every cut, so the totals agree to rounding, 1e-9); without pace the slow items give more. Pace
    moves exposures in time: slow items give fewer in the first step than at the median."""
    graph = Graph.holme_kim(300, 3, 0.3, seed=4)
    state = init_cascade_state(make_state(300, batch=2, seed=3), 6)

    def exposures(model: lpm.Model) -> torch.Tensor:
        run = lpm.simulate(model, state, graph, steps=240, seed=[8, 9], record=EXPOSURES, estimator=relax.Expected())
        return run["exposures"]  # (T + 1, B, C)

    median, paced, unpaced = exposures(_world(False, 0.0)), exposures(_world(True, 0.9)), exposures(_world(False, 0.9))
    torch.testing.assert_close(paced[-1], median[-1], rtol=1e-9, atol=0)
    relative = (unpaced[-1] / median[-1]).log().abs().detach()
    assert float(relative.max()) > 0.5  # without pace the totals differ by a factor e^0.5 or more
    half_life = _world(True, 0.9).cascade.item_half_life(CounterRNG.from_seed([8, 9], 2), torch.float64)[:, 0].detach()
    first = paced[1] / median[1]  # the first step: the share of a post's exposures given at age 0
    assert bool(((first < 1) == (half_life > 0.3)).all())


def test_pace_gradients_match_finite_differences():
    cascade = Cascade([Item(source=3), Item(source=17)], transmissibility=0.2, audience=30.0, feed_half_life_h=0.6,
                      feed_tail=1.5, feed_item_spread=0.7, feed_item_pace=True)
    checked = assert_cascade_gradients_match_finite_differences(
        cascade, Graph.holme_kim(40, 2, 0.3, seed=6), lambda run: run["size"][-1].log().sum(),
        {"size": lambda state, events: state.reshared.sum(1)})
    assert checked == 5  # transmissibility, audience, half-life, tail and the half-life's spread


def test_pace_needs_the_spread_and_old_fits_load_without_it():
    with pytest.raises(ConfigError, match="feed_item_spread"):
        Cascade([Item(source=1)], transmissibility=0.1, feed_half_life_h=0.5, feed_item_pace=True)
    with pytest.raises(ConfigError, match="feed_item_spread"):
        CascadeWorld(feed_item_pace=True)
    paced = CascadeWorld(agents=200, items=2, feed_item_spread=True, feed_item_pace=True)
    assert paced.model({}).cascade.feed_item_pace and "feed_item_spread" in paced.params
    assert world_from_meta({"world": {"agents": 200, "items": 2, "feed_item_spread": True}}).feed_item_pace is False
