"""Small simulated worlds shared by the calibration tests."""

from __future__ import annotations

from lpm.calibration.fit_cascades import CascadeWorld

#: the smallest world the cascade CLI tests fit (400 agents, 4 items per scenario)
TINY = CascadeWorld(agents=400, items=4)
