"""Slow planted-parameter recovery of the resharer-audience mechanism after bias correction, kept
apart from test_fit_cascades.py so that the suite's per-file scheduling runs them beside it."""

from __future__ import annotations

import pytest

from lpm.calibration.common import fit
from lpm.calibration.fit_cascades import DEFAULTS, CascadeCalibration, CascadeWorld, correct_bias, simulate_cascades
from lpm.targets import cascade_targets

HOURS = [1 / 6, 0.5, 1.0, 2.0, 4.0]


def _recover(world: CascadeWorld, truth: dict, free: tuple[str, ...], start: dict, *, scenarios: int,
             batch: int) -> list[dict]:
    """One round of indirect inference on ``scenarios x C`` exact cascades simulated at ``truth``, the
    ``free`` parameters fitted from ``start`` (60 mean-field steps of ``batch`` scenarios per fit)."""
    observed = cascade_targets(simulate_cascades(world, truth, hours=HOURS, batch=scenarios, seed=321), HOURS)

    def estimate(targets, init):
        module = CascadeCalibration(targets, world, dict(init or start), [n for n in world.params if n not in free],
                                    batch=batch, fit_horizon_h=4.0)
        return fit(module, kind="cascades", max_steps=60, logger="none", progress=False)["averaged"]

    return correct_bias(estimate, observed, world, free=free, iterations=1, seed=1000)


@pytest.mark.slow
def test_recovers_resharer_audience_after_bias_correction():
    """In the default world (resharers' own audiences), the resharers' audience alone, from 50% off
    with the other parameters known, comes back within 15% after one round of indirect inference.

    Fitted jointly with transmissibility and the source audience from 30% / 30% / 50% off it does
    not (measured: +53% / -41% / -38% after two rounds): more person-to-person spread can come from
    either channel. The depth-2 share in the loss did not separate them either (+52% / -35% / -42%):
    on this small world 60 steps barely move the three from where they start."""
    world = CascadeWorld(agents=1500, items=16)
    truth = dict(DEFAULTS, transmissibility=0.01, audience=3000.0, resharer_audience=60.0, feed_half_life_h=0.25)
    free = ("resharer_audience",)
    start = dict(truth, resharer_audience=truth["resharer_audience"] * 0.5)
    path = _recover(world, truth, free, start, scenarios=4, batch=2)
    assert path[-1]["resharer_audience"] == pytest.approx(truth["resharer_audience"], rel=0.15), path


@pytest.mark.slow
def test_recovers_the_item_spread_of_resharer_audiences_after_bias_correction():
    """The spread of resharers' audiences across items, from 50% off with the other parameters
    known, comes back within 20% after one round of indirect inference: the per-cascade root-share
    quantiles identify it. Tolerance: 128 simulated cascades estimate an SD to about 6% (1/sqrt(2 x
    128)), plus the binomial noise of each cascade's root share that the mean field does not have."""
    world = CascadeWorld(agents=1500, items=16)
    truth = dict(DEFAULTS, transmissibility=0.01, audience=3000.0, resharer_audience=60.0, resharer_item_spread=1.0,
                 feed_half_life_h=0.25)
    free = ("resharer_item_spread",)
    path = _recover(world, truth, free, dict(truth, resharer_item_spread=0.5), scenarios=8, batch=4)
    assert path[0]["resharer_item_spread"] != pytest.approx(0.5, rel=0.05), path  # the fit moved it
    assert path[-1]["resharer_item_spread"] == pytest.approx(truth["resharer_item_spread"], rel=0.2), path


@pytest.mark.slow
def test_recovers_the_first_level_audience_ratio_after_bias_correction():
    """How much larger the audiences of resharers attached to the source are, from 50% off with the
    other parameters known, comes back within 20% after one round of indirect inference: the depth-2
    share in the loss identifies it (it moves reshares from depth 1 and from deeper levels to depth 2).
    Tolerance as for the item spread: 128 cascades' depth-2 shares, each with its binomial noise."""
    world = CascadeWorld(agents=1500, items=16, first_level_audience=True)
    truth = dict(DEFAULTS, transmissibility=0.01, audience=3000.0, resharer_audience=60.0, feed_half_life_h=0.25,
                 first_level_audience_ratio=3.0)
    free = ("first_level_audience_ratio",)
    path = _recover(world, truth, free, dict(truth, first_level_audience_ratio=1.5), scenarios=8, batch=4)
    assert path[0]["first_level_audience_ratio"] != pytest.approx(1.5, rel=0.05), path  # the fit moved it
    assert path[-1]["first_level_audience_ratio"] == pytest.approx(truth["first_level_audience_ratio"], rel=0.2), path
