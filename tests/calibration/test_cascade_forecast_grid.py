"""The forecast reads the first hour on a grid of the data, not of the model: its regressions (the
references it is judged against) must not move when a fit uses a finer step."""

from __future__ import annotations

from dataclasses import replace

import pytest

from lpm.calibration.cascade_forecast import _reading_grid
from lpm.calibration.common import save_params
from lpm.calibration.fit_cascades import DEFAULTS, forecast
from lpm.errors import ConfigError
from tests.calibration.worlds import TINY


def test_the_reading_grid_is_every_reading_up_to_the_observation_window():
    assert _reading_grid(1.0, 1 / 6, 1 / 12) == pytest.approx([k / 6 for k in range(1, 7)], abs=1e-12)
    assert _reading_grid(1.0, 1 / 6, 1 / 6) == pytest.approx([k / 6 for k in range(1, 7)], abs=1e-12)
    assert _reading_grid(0.5, 0.25, 0.25) == pytest.approx([0.25, 0.5], abs=1e-12)


@pytest.mark.parametrize("observe_h, reading_h, dt_h, message", [
    (1.0, 1 / 6, 0.25, "whole number of the fitted world's steps"),  # 10-minute readings of a 15-minute world
    (1.0, 0.4, 0.2, "whole number of readings"),  # 1 h is 2.5 readings of 24 minutes
    (1.0, 0.0, 1 / 6, "reading_h"),
    (1.0, float("nan"), 1 / 6, "reading_h"),
])
def test_a_grid_the_world_cannot_read_is_refused(observe_h, reading_h, dt_h, message):
    with pytest.raises(ConfigError, match=message):
        _reading_grid(observe_h, reading_h, dt_h)


def test_the_regressions_do_not_depend_on_the_fits_step(tmp_path, dataset):
    """The same parameters fitted at 10- and 5-minute steps: the ensembles differ (another world),
    but the Szabo-Huberman and first-hour-features regressions read the same six sizes of the same
    cascades, so they score the same (to the last bits). Reading every step instead (as before) would give the
    5-minute fit a 12-size regression and another score."""
    values = dict(DEFAULTS, audience=1200.0)
    run = dict(observe_h=1.0, horizon_h=12.0, split="all", batch=2)
    coarse = forecast(save_params(tmp_path / "coarse.json", "cascades", values, {"world": TINY.__dict__}),
                      [dataset], **run)
    fine_world = replace(TINY, dt_h=1 / 12, reading_interval_h=1 / 6)
    fine = forecast(save_params(tmp_path / "fine.json", "cascades", values, {"world": fine_world.__dict__}),
                    [dataset], **run)
    # the same least squares on the same numbers; LAPACK's threaded reductions may differ in the last bit
    for name in ("baseline_rmsle_size", "baseline_medape_size", "features_baseline_rmsle_size"):
        assert fine[name] == pytest.approx(coarse[name], rel=1e-12)
    assert fine["reading_h"] == coarse["reading_h"] == pytest.approx(1 / 6)
    per_step = forecast(save_params(tmp_path / "fine.json", "cascades", values, {"world": fine_world.__dict__}),
                        [dataset], reading_h=1 / 12, **run)
    assert per_step["features_baseline_rmsle_size"] != pytest.approx(coarse["features_baseline_rmsle_size"], rel=1e-6)
    # the size at one hour, either way
    assert per_step["baseline_rmsle_size"] == pytest.approx(coarse["baseline_rmsle_size"], rel=1e-12)
