"""Gradient checkpointing through time in the cascade fit: the same loss and gradients from less
memory (the peak is measured in the issue notes; here, that nothing else changes)."""

from __future__ import annotations

import pytest
import torch

from lpm.calibration.fit_cascades import DEFAULTS, CascadeCalibration, CascadeWorld, simulate_cascades
from lpm.errors import ConfigError
from lpm.targets import cascade_targets

HOURS = [1 / 6, 0.5, 1.0, 2.0]


def _loss_and_gradients(world: CascadeWorld, observed, checkpoint_every):
    module = CascadeCalibration(observed, world, dict(DEFAULTS, audience=700.0), batch=1, fit_horizon_h=2.0,
                                growth_weight=1.0, checkpoint_every=checkpoint_every)
    loss = module.loss_terms(3)["loss"]
    params = [p for p in module.parameters() if p.requires_grad]
    return loss.detach(), torch.autograd.grad(loss, params)


@pytest.mark.parametrize("every", [1, 5, 7])
def test_checkpointing_through_time_keeps_the_loss_and_its_gradients(every):
    """At 5-minute steps with pace and novelty (24 steps): chunks that divide the steps or not, and
    one step per chunk. The recomputed forward repeats the same float32 operations in the same
    order, so the values agree to float32 rounding (rtol 1e-6)."""
    world = CascadeWorld(agents=400, items=3, dt_h=1 / 12, resharer_novelty=True, feed_item_spread=True,
                         feed_item_pace=True)
    observed = cascade_targets(simulate_cascades(world, dict(DEFAULTS, audience=900.0), hours=HOURS, batch=2, seed=2),
                               HOURS)
    full_loss, full_grads = _loss_and_gradients(world, observed, None)
    loss, grads = _loss_and_gradients(world, observed, every)
    torch.testing.assert_close(loss, full_loss, rtol=1e-6, atol=0)
    assert len(grads) == len(full_grads) >= 8
    for grad, full in zip(grads, full_grads):
        assert bool(full.abs().sum() > 0)
        torch.testing.assert_close(grad, full, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("bad", [0, -2, 2.5, True, "4"])
def test_checkpoint_every_must_be_a_positive_int(bad):
    world = CascadeWorld(agents=400, items=2)
    observed = cascade_targets(simulate_cascades(world, DEFAULTS, hours=HOURS, batch=1, seed=1), HOURS)
    with pytest.raises(ConfigError, match="checkpoint_every"):
        CascadeCalibration(observed, world, batch=1, fit_horizon_h=2.0, checkpoint_every=bad)
