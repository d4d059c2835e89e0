"""The cascade fit's posterior through the API and the CLI: written beside the fit, drawn by the
forecast and by scenario runs (apart from test_fit_cascades.py so the two slow files run on
different test workers)."""

from __future__ import annotations

import json
import math

import pytest

from lpm.calibration.common import load_params
from lpm.calibration.fit_cascades import CascadeWorld
from lpm.cli import main


def test_calibrate_writes_a_posterior_beside_the_fit(tmp_path, dataset):
    from lpm.calibration.fit_cascades import calibrate
    from lpm.calibration.posterior import load_posterior, posterior_path

    fitted = tmp_path / "fitted.json"
    calibrate([dataset], fitted, max_steps=2, split="all", logger="none", progress=False,
              world=CascadeWorld(agents=400, items=4, resharer_audience=False), posterior=True)
    posterior = load_posterior(posterior_path(fitted), kind="cascades")
    params, meta = load_params(fitted, kind="cascades")
    assert params == pytest.approx(posterior.point())  # the fit file holds the posterior mode
    assert set(meta["mean_field_fit"]) == set(params) and "step" in meta  # the mean-field fit and its record kept
    assert set(posterior.names) == set(params) - {"attention"}  # the free parameters; attention held fixed
    assert posterior.fixed == pytest.approx({"attention": params["attention"]})
    assert bool((posterior.sd > 0).all()) and bool((posterior.sd < 3.0).all())  # the data narrowed the prior
    for draw in posterior.draw(5, seed=1):
        assert 0 < draw["transmissibility"] < 1 and draw["feed_tail"] > 1
    # the forecast ensemble splits its scenarios among parameter draws
    from lpm.calibration.fit_cascades import forecast

    drawn = forecast(fitted, [dataset], posterior=posterior, batch=4, draws=2, split="all", neighbours=4)
    point = forecast(fitted, [dataset], batch=4, split="all", neighbours=4)
    assert drawn["parameter_draws"] == 2 and point["parameter_draws"] == 0
    assert 0 <= drawn["model_coverage80"] <= 1 and math.isfinite(drawn["model_rmsle_size"])
    # the regression sees no simulation: the same up to the summation order of its least squares
    assert drawn["baseline_rmsle_size"] == pytest.approx(point["baseline_rmsle_size"], rel=1e-12)


def test_cli_posterior_flags(tmp_path, dataset, capsys):
    fitted = tmp_path / "fitted.json"
    assert main(["calibrate", "cascades", "--data", str(dataset), "--out", str(fitted), "--max-steps", "1",
                 "--agents", "400", "--items", "4", "--logger", "none", "--quiet", "--split", "all",
                 "--posterior"]) == 0
    out = capsys.readouterr().out
    assert "80% credible intervals" in out and (tmp_path / "fitted.posterior.json").exists()
    assert main(["forecast", "cascades", "--params", str(fitted), "--data", str(dataset), "--ensemble", "2",
                 "--split", "all", "--posterior", "--json", str(tmp_path / "f.json")]) == 0
    assert json.loads((tmp_path / "f.json").read_text())["parameter_draws"] == 2
    assert main(["calibrate", "stance", "--data", str(dataset), "--out", str(fitted), "--posterior"]) == 2
    # a scenario with arms draws each seed's cascade parameters from that posterior
    assert main(["run", "misinformation", "--agents", "1500", "--steps", "2", "--seeds", "2", "--quiet",
                 "--out", str(tmp_path / "runs"), "--params", str(fitted), "--posterior"]) == 0
    assert "with parameter uncertainty" in capsys.readouterr().out
    summary = json.loads((tmp_path / "runs" / "misinformation" / "summary.json").read_text())
    assert {row["arm"] for row in summary["parameter_uncertainty"]} == {row["arm"] for row in summary["arms"]}
    assert main(["run", "misinformation", "--agents", "1500", "--steps", "2", "--quiet", "--out",
                 str(tmp_path / "runs"), "--posterior"]) == 2  # a posterior needs its fit
