"""Fixtures shared by the calibration tests."""

from __future__ import annotations

import pytest

from lpm.calibration.fit_cascades import DEFAULTS, simulate_cascades
from lpm.data import write_rumdetect
from tests.calibration.worlds import TINY


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A rumdetect-format folder of simulated cascades (written and read by the real loader)."""
    folder = tmp_path_factory.mktemp("twitter_sim")
    table = simulate_cascades(TINY, dict(DEFAULTS, audience=1200.0), hours=[1.0, 72.0], batch=8, seed=9)
    return write_rumdetect(table, folder)
