"""The shared Lightning loop (lpm.calibration.common.fit): budget by Trainer(max_time), logged names and configuration."""

from __future__ import annotations

import csv

import pytest
import torch
from torch import nn

from lpm.calibration.common import CalibrationModule, fit


def _quadratic():
    import lightning.pytorch as pl

    class Quadratic(CalibrationModule, pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.x = nn.Parameter(torch.zeros(1))
            self.seed = 0

        def loss(self, seed: int) -> torch.Tensor:
            return ((self.x - 1.0) ** 2).sum()

        def fitted_params(self) -> dict[str, float]:
            return {"x": float(self.x[0].detach())}

    return Quadratic()


@pytest.mark.parametrize("budget_s, steps", [(0.0, 1), (None, 40)])
def test_budget_stops_after_the_step_that_spends_it(tmp_path, budget_s, steps):
    """A spent budget still takes one step (there must be parameters to write); no budget runs to
    max_steps (the endless step stream never ends an epoch, which must not hold the stop back)."""
    result = fit(_quadratic(), kind="cascades", max_steps=40, budget_s=budget_s, work_dir=tmp_path, logger="none",
                 progress=False)
    assert result["steps"] == steps and len(result["history"]) == steps


def test_logged_names_and_configuration(tmp_path):
    fit(_quadratic(), kind="stance", max_steps=3, work_dir=tmp_path, logger="csv", progress=False,
        meta={"split": "train", "world": {"agents": 10}})
    (metrics,) = tmp_path.rglob("metrics.csv")
    with metrics.open() as handle:
        rows = list(csv.DictReader(handle))
    assert {"train/loss", "param/x"} <= set(rows[0]) and len(rows) == 3
    assert float(rows[0]["train/loss"]) == pytest.approx(1.0)  # (0 - 1)^2 at the start
    (hparams,) = tmp_path.rglob("hparams.yaml")
    text = hparams.read_text()
    for line in ("kind: stance", "max_steps: 3", "module: Quadratic", "split: train", "learning_rate: 0.05"):
        assert line in text, text
