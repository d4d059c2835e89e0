"""The check report: best reference, verdicts within the summed noise band, JSON and table."""

from __future__ import annotations

import pytest
import torch

from lpm.calibration.check import CheckReport, bootstrap_sd, format_report, rows_from
from lpm.errors import ConfigError


def _report() -> CheckReport:
    rows = rows_from({"mae": 0.10, "pearson": 0.80, "tie": 0.50},
                     {"mae": 0.01, "pearson": 0.02, "tie": 0.01},
                     {"copy": {"mae": 0.20, "pearson": 0.90, "tie": 0.52}, "constant": {"mae": 0.15, "pearson": 0.70, "tie": 0.60}},
                     {"mae": 0.01, "pearson": 0.03, "tie": 0.02})
    return CheckReport("cascades", "test", rows, ["copy", "constant"], higher_is_better=("pearson",))


def test_verdicts_against_the_best_reference_within_the_summed_noise():
    report = _report()
    assert report.best_reference("mae") == ("constant", 0.15)  # lower is better
    assert report.best_reference("pearson") == ("copy", 0.90)  # higher is better
    assert report.verdict("mae") == "better"  # 0.05 below, band 0.02
    assert report.verdict("pearson") == "worse"  # 0.10 below, band 0.05
    assert report.verdict("tie") == "within noise"  # 0.02 better, band 0.03
    rows = report.to_json()["rows"]
    assert rows["mae"]["verdict"] == "better" and rows["pearson"]["best_reference"] == "copy"
    table = format_report(report)
    assert "except pearson" in table and table.count("\n") == 4 and "within noise" in table


def test_missing_reference_column_is_an_error():
    with pytest.raises(ConfigError, match="constant"):
        CheckReport("stance", "test", {"mae": {"model": 0.1, "copy": 0.2}}, ["copy", "constant"])


def test_bootstrap_sd_of_a_mean_matches_its_standard_error():
    """The bootstrap SD of a sample mean is close to sd / sqrt(n) (within 15% at 400 draws)."""
    values = torch.randn(200, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    sd = bootstrap_sd(lambda index: float(values[index].mean()), values.numel(), draws=400, seed=2)
    assert sd == pytest.approx(float(values.std()) / values.numel() ** 0.5, rel=0.15)
    with pytest.raises(ConfigError, match="at least 2 units"):
        bootstrap_sd(lambda index: 0.0, 1)
