"""Readings that do not depend on the step (Cascade ``reading_interval_h``): a step of ``dt`` hours
sees ``dt / reading_interval_h`` of one reading's posts, so finer steps split a post's exposures
over more steps instead of multiplying them."""

from __future__ import annotations

import pytest
import torch

import lpm
from lpm import relax
from lpm.calibration.cascade_world import CascadeWorld, world_from_meta
from lpm.dynamics import Cascade, Item, init_cascade_state
from lpm.dynamics.feed_decay import lifetime_visibility
from lpm.errors import ConfigError
from lpm.graph import Graph
from tests.helpers import make_state

HALF_LIFE_H = 0.3
SOURCES = [3 + 11 * c for c in range(4)]
EXPOSURES = {"exposures": lambda state, events: state.exposures.sum(1)}  # (B, C) summed over agents


def _model(dt: float, reading_interval_h) -> lpm.Model:
    cascade = Cascade([Item(source=s) for s in SOURCES], transmissibility=1e-12, audience=50.0,
                      attention=0.4, feed_half_life_h=HALF_LIFE_H, reading_interval_h=reading_interval_h)
    return lpm.Model(cascade=cascade, dt=dt).double()


def _total_exposures(dt: float, reading_interval_h, hours: float = 12.0) -> torch.Tensor:
    """``(B, C)`` exposures to each item summed over agents and ``hours`` (every post long past its cut)."""
    graph = Graph.holme_kim(200, 3, 0.3, seed=4)
    state = init_cascade_state(make_state(200, batch=2, seed=3), 4)
    run = lpm.simulate(_model(dt, reading_interval_h), state, graph, steps=round(hours / dt), seed=[8, 9],
                       record=EXPOSURES, estimator=relax.Expected())
    return run["exposures"][-1].detach()


@pytest.mark.parametrize("dt", [1 / 6, 1 / 24])
def test_a_step_sees_its_share_of_a_reading(dt):
    """With transmissibility ~0 only the sources post, so the total is attention x (audience + the
    source's followers) x the post's visibility summed over its steps (:func:`lifetime_visibility`), times
    ``dt / reading_interval_h`` with an interval (closed form; to 1e-9: transmissibility 1e-12 still
    lets ~1e-11 of a reshare through, whose own posts the interval scales too; measured 6e-12)."""
    per_step = _total_exposures(dt, None)
    cascade = _model(dt, None).cascade  # the parameters as stored (float32-rounded: ~6e-8 off 0.4, 50, 0.3)
    reach = per_step / float(lifetime_visibility(cascade.feed_half_life_h.detach(), dt))  # (B, C)
    followers = Graph.holme_kim(200, 3, 0.3, seed=4).out_degree()[SOURCES].double()
    attention, audience = torch.sigmoid(cascade.raw_attention), cascade.raw_audience.exp()
    torch.testing.assert_close(reach, (attention * (audience + followers)).expand_as(reach), rtol=1e-9, atol=0)
    torch.testing.assert_close(_total_exposures(dt, 0.5), per_step * (dt / 0.5), rtol=1e-9, atol=0)
    assert torch.equal(_total_exposures(dt, dt), per_step)  # an interval of one step changes nothing


def test_finer_steps_converge_to_the_continuous_reading():
    """A post's exposures over its life approach attention x reach x the integral of its visibility
    (over the reading interval) as the step shrinks, and with an interval the totals at 10- and
    2.5-minute steps differ by the Riemann sum's error only, which shrinks with the step: without
    one, the 2.5-minute steps give about four times the exposures."""
    interval = 1 / 6
    coarse, fine, finest = (_total_exposures(dt, interval) for dt in (1 / 6, 1 / 24, 1 / 96))
    assert bool(((coarse - finest).abs() > (fine - finest).abs()).all())
    assert float(((fine - finest) / finest).abs().max()) < 0.1
    # the left Riemann sum's excess over the integral, lambda dt / (1 - exp(-lambda dt)) - 1: 20% at
    # 10-minute steps and a 0.3 h half-life, 5% at 2.5 minutes
    assert float(((coarse - finest) / finest).abs().max()) < 0.4
    unscaled = _total_exposures(1 / 24, None) / _total_exposures(1 / 6, None)
    assert bool((unscaled > 3.0).all())


def test_reading_interval_must_be_positive_hours():
    for bad in (0.0, -1.0, float("inf"), "10m"):
        with pytest.raises(ConfigError, match="reading_interval_h"):
            Cascade([Item(source=0)], reading_interval_h=bad)


def test_world_reads_every_ten_minutes_and_old_fits_read_once_per_step():
    """New worlds keep one reading per 10 minutes at any step length; fits saved before the option
    load as they were fitted: one reading per step of their own length."""
    world = CascadeWorld(agents=100, items=2, dt_h=1 / 12)
    assert world.model({}).cascade.reading_interval_h == pytest.approx(1 / 6)
    old = world_from_meta({"world": {"agents": 100, "items": 2, "dt_h": 1 / 12}})
    assert old.reading_interval_h == pytest.approx(1 / 12)
    assert world_from_meta({"world": {**world.__dict__}}).reading_interval_h == pytest.approx(1 / 6)


def test_a_fit_brings_its_reading_interval_to_a_scenario(tmp_path):
    """Fitted attention is a share of one reading, so a scenario with another step (here 20 minutes)
    takes the fit's interval with its parameters and sees two readings' worth of posts per step;
    fits saved before the option bring one reading per their own step."""
    from lpm.calibration.common import apply_fitted, save_params
    from lpm.calibration.fit_cascades import DEFAULTS, apply_params

    scenario = _model(1 / 3, None)
    world = CascadeWorld(agents=100, items=2, dt_h=1 / 12)
    fit = save_params(tmp_path / "fit.json", "cascades", dict(DEFAULTS), {"world": world.__dict__})
    apply_fitted(scenario, fit)
    assert scenario.cascade.reading_interval_h == pytest.approx(1 / 6)
    old_world = {k: v for k, v in world.__dict__.items() if k != "reading_interval_h"}
    old = save_params(tmp_path / "old.json", "cascades", dict(DEFAULTS), {"world": old_world})
    apply_fitted(scenario, old)
    assert scenario.cascade.reading_interval_h == pytest.approx(1 / 12)
    with pytest.raises(ConfigError, match="reading_interval_h"):
        apply_params(scenario, {}, reading_interval_h=0.0)
