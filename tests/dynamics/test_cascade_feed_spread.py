"""The feed half-life's spread across items (Cascade ``feed_item_spread``): each item's visibility
halves at its own, log-normally spread, half-life; older models are unchanged."""

from __future__ import annotations

import math

import pytest
import torch

import lpm
from lpm import relax
from lpm.dynamics import Cascade, Item, init_cascade_state
from lpm.dynamics.cascade_base import _standard_normal
from lpm.errors import ConfigError
from lpm.graph import Graph
from lpm.rng import STREAM_CASCADE_FEED_ITEM, CounterRNG
from tests.helpers import assert_cascade_gradients_match_finite_differences, make_state

SIZE = {"size": lambda state, events: state.reshared.sum(1)}


def _cascade(items: int, **kwargs) -> Cascade:
    return Cascade([Item(source=3 + 7 * c) for c in range(items)], transmissibility=0.1, audience=40.0,
                   feed_half_life_h=0.5, **kwargs)


def test_item_half_lives_are_log_normal_with_the_spread():
    """``h_bc = h exp(s z_bc)`` with ``z`` the stream's standard normals; over 2 x 3000 items the SD
    of ``log h`` is ``s`` within 5 standard errors (SE of an SD: ``s / sqrt(2 n)`` = 0.0047 here)."""
    spread = 0.8
    cascade = _cascade(3000, feed_item_spread=spread).double()
    rng = CounterRNG.from_seed([5, 6], 2, torch.device("cpu"))
    with torch.no_grad():
        half_life = cascade.item_half_life(rng, torch.float64)
    assert half_life.shape == (2, 1, 3000)
    z = _standard_normal(rng, STREAM_CASCADE_FEED_ITEM, (3000,), torch.float64)
    torch.testing.assert_close(half_life[:, 0, :], 0.5 * torch.exp(spread * z))
    log_half_life = half_life.log().reshape(-1)
    assert float(log_half_life.std()) == pytest.approx(spread, abs=5 * spread / math.sqrt(2 * 6000))
    assert float(log_half_life.mean()) == pytest.approx(math.log(0.5), abs=5 * spread / math.sqrt(6000))
    # without the spread: one half-life, a scalar
    plain = _cascade(3).double().item_half_life(rng, torch.float64)
    assert plain.shape == () and float(plain) == pytest.approx(0.5)


@pytest.mark.parametrize("tail", [None, 1.7])
def test_each_item_ages_with_its_own_half_life(tail):
    """One step ages item ``c``'s visibility as :meth:`Cascade.visibility` at that item's half-life:
    exponential ``2^(-dt / h_c)`` or the power law ``(1 + age / tau_c)^(-a)``, from an age read off
    the visibility."""
    cascade = _cascade(4, feed_item_spread=0.9, feed_tail=tail).double()
    rng = CounterRNG.from_seed([1], 1, torch.device("cpu"))
    half_life = cascade.item_half_life(rng, torch.float64)  # (1, 1, 4)
    age = torch.tensor([0.2, 0.7, 1.5], dtype=torch.float64)[None, :, None].expand(1, 3, 4)  # (1, N=3, C=4)
    reshared = torch.full((1, 3, 4), 2.0, dtype=torch.float64)
    frontier = reshared * cascade.visibility(age, half_life)
    dt = 0.25
    with torch.no_grad():
        aged = cascade._age_frontier(frontier, reshared, dt, half_life)
        want = reshared * cascade.visibility(age + dt, half_life)
    torch.testing.assert_close(aged, want)
    # the items really differ: the same ages leave different visibilities
    assert float(want[0, 0].std()) > 0.01


def test_a_vanishing_spread_gives_the_dynamics_without_it():
    """The spread's code path (per-item half-lives, drawn every run) at s = 1e-9 equals the model
    without the spread: half-lives differ by a factor exp(1e-9 z), far below the 1e-7 tolerance
    (expected-value dynamics, so no draw can flip); a spread of 1 changes the run."""
    graph = Graph.holme_kim(120, 3, 0.3, seed=2)
    state = init_cascade_state(make_state(120, batch=2, seed=1), 3)
    plain = lpm.Model(cascade=_cascade(3), dt=0.25).double()
    vanishing = lpm.Model(cascade=_cascade(3, feed_item_spread=1e-9), dt=0.25).double()
    assert vanishing.cascade.raw_feed_item_spread is not None
    runs = [lpm.simulate(model, state, graph, steps=6, seed=[1, 2], record=SIZE,
                         estimator=relax.Expected())["size"] for model in (plain, vanishing)]
    assert float(runs[0][-1].sum()) > 3.0  # the cascades spread beyond their sources
    torch.testing.assert_close(runs[1], runs[0], rtol=1e-7, atol=0)
    spread = lpm.Model(cascade=_cascade(3, feed_item_spread=1.0), dt=0.25).double()
    other = lpm.simulate(spread, state, graph, steps=6, seed=[1, 2], record=SIZE, estimator=relax.Expected())["size"]
    assert not torch.equal(other, runs[0])


def test_feed_item_spread_gradients_match_finite_differences():
    cascade = Cascade([Item(source=3), Item(source=17)], transmissibility=0.2, audience=30.0, feed_half_life_h=0.6,
                      feed_tail=1.5, feed_item_spread=0.7)
    checked = assert_cascade_gradients_match_finite_differences(
        cascade, Graph.holme_kim(40, 2, 0.3, seed=6), lambda run: run["size"][-1].log().sum(), SIZE)
    assert checked == 5  # transmissibility, audience, half-life, tail and the half-life's spread across items


def test_the_spread_needs_a_half_life():
    with pytest.raises(ConfigError, match="feed_half_life_h"):
        Cascade([Item(source=1)], transmissibility=0.1, feed_item_spread=0.5)
