"""Sentiment calibration: planted-parameter recovery, exact loss gradients, resume, metrics, CSV end to end."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from lpm.calibration import fit_sentiment as fs
from lpm.calibration.common import fit, load_params
from lpm.errors import ConfigError, DataFormatError
from lpm.targets_series import SeriesTargets, sentiment_targets
from tests.helpers import assert_gradients_match_finite_differences

NAN = float("nan")
TRUTH = {"burst_size": 20.0, "burst_rise_h": 8.0, "burst_decay_h": 20.0, "shock_valence": -0.2, "emotion_decay": 0.08,
         "coupling": 0.5, "baseline_negative_share": 0.7}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # these tensors are tiny: on a shared 2-core machine, intra-op threads cost more than they give
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _planted(config: fs.SentimentConfig, params=TRUTH) -> SeriesTargets:
    with torch.no_grad():
        return fs.SentimentModel(config, params).simulate_targets()


def test_recovers_planted_parameters():
    """Every parameter but ``coupling`` comes back within 10% from a start 25-30% off.

    ``coupling`` stays at its planted value: contagion moves negativity from the hit region to its
    followers but nearly conserves mean valence, so the aggregate negative share barely sees it.
    """
    config = fs.SentimentConfig(agents=60, days_before=2, days_after=4, dt=3.0)
    observed = {"planted": _planted(config)}
    init = {k: v * (1.3 if i % 2 else 0.75) for i, (k, v) in enumerate(TRUTH.items())}
    init.update(baseline_negative_share=0.6, coupling=TRUTH["coupling"])
    learn = [k for k in fs.LEARNABLE if k != "coupling"]
    module = fs.SentimentCalibration(observed, config, init=init, learn=learn, learning_rate=0.1)
    result = fit(module, kind="sentiment", max_steps=50, logger="none", progress=False)
    fitted = module.fitted_params()
    assert result["loss"] < 0.01
    for name in learn:
        assert fitted[name] == pytest.approx(TRUTH[name], rel=0.1), (name, fitted[name])


def _learnable_view(module: fs.SentimentCalibration) -> nn.Module:
    """A module holding only the learnable parameters (the same tensors), for the gradient helper."""
    view = nn.Module()
    for name, param in module.sim.raw_parameters().items():
        view.register_parameter(name, param)
    return view


def test_loss_gradient_matches_finite_differences():
    config = fs.SentimentConfig(agents=12, days_before=1, days_after=2, dt=4.0, region_share=0.5)
    clean = _planted(config)
    # observed = planted, distorted, so the loss and every gradient are away from zero
    volume = (clean.volume * torch.tensor([1.3, 1.0, 0.8, 1.1])).double()
    share = (clean.negative_share + torch.tensor([0.05, -0.1, 0.08, NAN])).double()
    observed = {"a": SeriesTargets(volume=volume, negative_share=share, posts=volume)}
    init = {**TRUTH, "burst_size": 12.0, "shock_valence": -0.3}
    module = fs.SentimentCalibration(observed, config, init=init).double()
    checked = assert_gradients_match_finite_differences(_learnable_view(module), lambda: module.loss())
    assert checked == len(fs.LEARNABLE)


def test_resume_equals_an_uninterrupted_fit(tmp_path: Path):
    config = fs.SentimentConfig(agents=12, days_before=1, days_after=0, dt=2.0)
    observed = {"a": _planted(config)}

    def module():
        return fs.SentimentCalibration(observed, config, init={"burst_size": 5.0, "emotion_decay": 0.2}, seed=3)

    straight = module()
    fit(straight, kind="sentiment", max_steps=20, work_dir=tmp_path / "straight", logger="none", progress=False)
    first = module()
    fit(first, kind="sentiment", max_steps=10, work_dir=tmp_path / "split", logger="none", progress=False)
    resumed = module()
    result = fit(resumed, kind="sentiment", max_steps=20, work_dir=tmp_path / "split", resume=True, logger="none",
                 progress=False)
    assert result["steps"] == 20
    expected, got = straight.fitted_params(), resumed.fitted_params()
    assert first.fitted_params() != expected  # the split run really stopped halfway
    for name in fs.LEARNABLE:
        assert got[name] == pytest.approx(expected[name], rel=1e-5), name


def test_metrics_hand_computed():
    sim = SeriesTargets(volume=torch.tensor([0.0, 1.0, 0.0]), negative_share=torch.tensor([0.7, 0.8, 0.7]),
                        posts=torch.ones(3))
    observed = {
        "one": SeriesTargets(volume=torch.tensor([0.0, 1.0, 0.5]), negative_share=torch.tensor([0.6, NAN, 0.9]),
                             posts=torch.ones(3)),
        "two": SeriesTargets(volume=torch.tensor([NAN, 1.0, 0.0]), negative_share=torch.tensor([0.7, 0.8, 0.7]),
                             posts=torch.ones(3)),
    }
    out = fs.metrics(sim, observed)
    assert out["pearson_volume/one"] == pytest.approx(math.sqrt(3) / 2)  # cov 1/2, variances 2/3 and 1/2
    assert out["pearson_volume/two"] == pytest.approx(1.0)
    assert out["pearson_volume"] == pytest.approx((math.sqrt(3) / 2 + 1) / 2)
    assert out["mae_negative_share/one"] == pytest.approx(0.15)  # (0.1 + 0.2) / 2, the missing day left out
    assert out["mae_negative_share/two"] == pytest.approx(0.0, abs=1e-7)
    assert out["mae_negative_share"] == pytest.approx(0.075)
    assert out["nrmse_volume/one"] == pytest.approx(math.sqrt(0.25 / 3))


def _write_event(path: Path, posts_per_day, negative_per_day) -> Path:
    lines, num = ["num,datetime,label"], 0
    for day, (posts, negative) in enumerate(zip(posts_per_day, negative_per_day)):
        for k in range(posts):
            num += 1
            lines.append(f"{num},2020-03-{day + 1:02d} {k % 24:02d}:{k % 60:02d}:00,{int(k < negative)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_calibrate_and_evaluate_on_csv_events(tmp_path: Path):
    folder = tmp_path / "events"
    folder.mkdir()
    shapes = {"evA": [4, 9, 30, 60, 25, 10, 6], "evB": [3, 5, 12, 40, 30, 12, 8], "evC": [6, 8, 10, 50, 20, 9, 7],
              "evD": [5, 6, 20, 45, 35, 15, 5], "evE": [2, 4, 8, 35, 12, 6, 4]}
    for name, posts in shapes.items():
        _write_event(folder / f"{name}.csv", posts, [int(0.7 * p) for p in posts])
    config = fs.SentimentConfig(agents=16, days_before=2, days_after=3, dt=4.0, min_posts=5)
    out = tmp_path / "fitted.json"
    result = fs.calibrate([folder], out, max_steps=2, split="train", logger="none", progress=False, config=config,
                          work_dir=tmp_path / "work")
    params, meta = load_params(out, "sentiment")
    assert set(params) == set(fs.LEARNABLE) and result["steps"] == 2
    assert meta["events"] == ["evA", "evB", "evC", "evD"] and meta["config"]["agents"] == 16  # evE is held out
    metrics = fs.evaluate(out, [folder / "evE.csv", folder / "evA.csv"])
    assert set(metrics) == {"pearson_volume", "nrmse_volume", "mae_negative_share",
                            *(f"{m}/{e}" for m in ("pearson_volume", "nrmse_volume", "mae_negative_share")
                              for e in ("evA", "evE"))}
    assert all(math.isfinite(v) for v in metrics.values())
    assert fs.evaluate(out, [folder], split="test").keys() == {"pearson_volume", "nrmse_volume", "mae_negative_share",
                                                              "pearson_volume/evE", "nrmse_volume/evE",
                                                              "mae_negative_share/evE"}
    # evaluate scores the same simulation the metrics helper scores
    sim = fs.SentimentModel(config, params).simulate_targets()
    observed = {"evA": fs.observed_targets(fs.load_events([folder / "evA.csv"])["evA"], config)}
    assert metrics["pearson_volume/evA"] == pytest.approx(fs.metrics(sim, observed)["pearson_volume"], rel=1e-5)


def test_bad_inputs_raise_typed_errors(tmp_path: Path):
    with pytest.raises(ConfigError, match="divides 24"):
        fs.SentimentConfig(dt=5.0)
    with pytest.raises(ConfigError, match="Expected sentiment parameters"):
        fs.SentimentModel(fs.SentimentConfig(agents=4, days_before=0, days_after=0, dt=12.0), {"nope": 1.0})
    with pytest.raises(DataFormatError, match="does not exist"):
        fs.load_events([tmp_path / "missing.csv"])
    with pytest.raises(DataFormatError, match="days"):
        fs.SentimentCalibration({"a": sentiment_targets(torch.ones(3), torch.ones(3), anchor=0)},
                                fs.SentimentConfig(agents=4, days_before=1, days_after=2, dt=12.0))


@pytest.mark.data
def test_real_events_align_on_their_peak(shared_data: Path):
    config = fs.SentimentConfig()
    events = fs.load_events([shared_data / "natural_hazards"])
    assert len(events) == 7
    sandy = fs.observed_targets(events["2012Sandy"], config)
    assert sandy.volume.shape == (config.days,) and float(sandy.volume[config.days_before]) == 1.0
    assert float(torch.nan_to_num(sandy.volume, nan=0.0).max()) == 1.0  # aligned on the peak-volume day
