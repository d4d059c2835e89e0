"""Sentiment calibration: planted-parameter recovery, exact loss gradients, resume, metrics, CSV end to end."""

from __future__ import annotations

import dataclasses
import math
import statistics
from pathlib import Path

import pytest
import torch
from torch import nn

from lpm.calibration import fit_sentiment as fs
from lpm.calibration.common import fit, load_params
from lpm.dynamics.base import softplus
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
    # evidence_posts: no event here is conditioned on first days, so the loss does not depend on it
    learn = [k for k in fs.LEARNABLE if k not in ("coupling", "evidence_posts")]
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
    # evidence: the conditioned label logit makes evidence_posts matter too
    module = fs.SentimentCalibration(observed, config, init=init, evidence={"a": torch.tensor([50.0, 45.0])}).double()
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
    assert params["shock_valence"] == 0.0  # calibrate fits FITTED only: the emotional shock stays off
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


def test_conditioned_logits_closed_form_and_gradcheck():
    label = fs.NegativeLabel(0.7, 4.0, evidence_posts=50.0).double()
    evidence = torch.tensor([[0.0, 0.0], [50.0, 44.0], [1e9, 0.9e9]], dtype=torch.float64)
    got = label.conditioned_logits(evidence).detach()
    c = math.log(0.7 / 0.3)
    share = 45.0 / 52.0  # Laplace: (44 + 1) / (50 + 2)
    assert float(got[0]) == pytest.approx(c)  # no posts seen: the shared baseline
    assert float(got[1]) == pytest.approx(c + 0.5 * (math.log(share / (1 - share)) - c))  # n = evidence_posts: halfway
    assert float(got[2]) == pytest.approx(math.log(0.9 / 0.1), rel=1e-6)  # many posts: the event's own share

    # gradcheck the formula as a function of the raw (unconstrained) values, then check the module's
    # autograd gradient equals the formula's
    def functional(raw_baseline, raw_evidence):
        n, m = evidence[:2, 0], evidence[:2, 1]
        weight = n / (n + 100.0 * softplus(raw_evidence))
        share = (m + 1) / (n + 2)
        return raw_baseline + weight * (torch.log(share) - torch.log1p(-share) - raw_baseline)

    raw = (label.raw_baseline.detach().clone().requires_grad_(), label.raw_evidence.detach().clone().requires_grad_())
    assert torch.autograd.gradcheck(functional, raw)
    # the module computes the same function, so its autograd gradient is the checked one
    out = label.conditioned_logits(evidence[:2]).sum()
    out.backward()
    expected = torch.autograd.grad(functional(*raw).sum(), raw)
    assert float(label.raw_baseline.grad) == pytest.approx(float(expected[0]))
    assert float(label.raw_evidence.grad) == pytest.approx(float(expected[1]))


def test_conditioned_simulation_columns_match_single_runs():
    """A batch of E conditioned events equals E runs of a model whose baseline is each ``c_e``."""
    config = fs.SentimentConfig(agents=20, days_before=1, days_after=2, dt=6.0)
    model = fs.SentimentModel(config, TRUTH).double()
    evidence = torch.tensor([[0.0, 0.0], [200.0, 190.0], [30.0, 12.0]], dtype=torch.float64)
    with torch.no_grad():
        batch = model.simulate_targets(evidence=evidence)
        logits = model.label.conditioned_logits(evidence)
        for e in range(3):
            single = fs.SentimentModel(config, {**TRUTH, "baseline_negative_share": float(torch.sigmoid(logits[e]))})
            one = single.double().simulate_targets()
            torch.testing.assert_close(batch.negative_share[e], one.negative_share)
            torch.testing.assert_close(batch.volume[e], one.volume)
    assert float(batch.negative_share[1].mean()) > float(batch.negative_share[0].mean()) > float(batch.negative_share[2].mean())


def test_recovers_planted_evidence_weight():
    """A planted ``evidence_posts`` comes back from events whose first days differ.

    The baseline stays at its planted value: the loss's prior term sets it to the level of an event
    nothing is known about (the typical scored share of all events), which is not the planted
    ``c`` of a few synthetic events, so only the evidence weight has a planted optimum here.
    """
    config = fs.SentimentConfig(agents=20, days_before=1, days_after=2, dt=6.0)
    truth = {**TRUTH, "evidence_posts": 80.0, "baseline_negative_share": 0.7}
    evidence = {"a": torch.tensor([20.0, 19.0]), "b": torch.tensor([300.0, 150.0]), "c": torch.tensor([60.0, 57.0]),
                "d": torch.tensor([150.0, 60.0])}
    with torch.no_grad():
        sims = fs.SentimentModel(config, truth).simulate_targets(evidence=torch.stack(list(evidence.values())))
    observed = {name: SeriesTargets(volume=sims.volume[i], negative_share=sims.negative_share[i], posts=sims.posts[i])
                for i, name in enumerate(evidence)}
    at_truth = fs.SentimentCalibration(observed, config, evidence=evidence, init=truth)
    module = fs.SentimentCalibration(observed, config, evidence=evidence, init={**truth, "evidence_posts": 200.0},
                                     learn=["evidence_posts"], learning_rate=0.1)
    fit(module, kind="sentiment", max_steps=60, logger="none", progress=False)
    assert module.fitted_params()["evidence_posts"] == pytest.approx(80.0, rel=0.1)
    with torch.no_grad():
        assert float(module.loss()) == pytest.approx(float(at_truth.loss()), abs=2e-3)


def test_forecast_split_observes_the_first_valid_days(tmp_path: Path):
    path = _write_event(tmp_path / "ev.csv", [4, 10, 40, 20, 10, 10], [4, 6, 30, 10, 9, 2])
    series = fs.load_events([path])["ev"]
    config = fs.SentimentConfig(days_before=2, days_after=3, min_posts=5, observe_days=1)
    evidence, scored = fs.forecast_split(series, config)
    assert evidence.tolist() == [14.0, 10.0]  # day 0 (4 posts, below min_posts) is observed with day 1
    assert torch.isnan(scored.negative_share[:2]).all()
    torch.testing.assert_close(scored.negative_share[2:], torch.tensor([0.75, 0.5, 0.9, 0.2], dtype=torch.float64))
    none, full = fs.forecast_split(series, dataclasses.replace(config, observe_days=0))
    assert none.tolist() == [0.0, 0.0] and float(full.negative_share[1]) == pytest.approx(0.6)
    # asking for more days than leave one to score: all valid days but the last are observed
    most, last = fs.forecast_split(series, dataclasses.replace(config, observe_days=9))
    assert most.tolist() == [84.0, 59.0] and int(torch.isfinite(last.negative_share).sum()) == 1


_POSTS = [10, 20, 40, 20, 10, 10]  # peak on day 2; volume / peak = .25 .5 1 .5 .25 .25
_TRAIN_NEGATIVE = {"evA": [5, 10, 20, 10, 5, 5], "evB": _POSTS, "evC": [0] * 6, "evD": [5, 20, 40, 0, 5, 10]}
_TEST_POSTS, _TEST_NEGATIVE = [4, 10, 40, 20, 10, 10], [4, 6, 30, 10, 9, 2]


def test_check_references_equal_hand_computed_values(tmp_path: Path):
    folder = tmp_path / "events"
    folder.mkdir()
    for name, negative in _TRAIN_NEGATIVE.items():
        _write_event(folder / f"{name}.csv", _POSTS, negative)
    _write_event(folder / "evE.csv", _TEST_POSTS, _TEST_NEGATIVE)  # evE: the split's held-out event
    config = fs.SentimentConfig(agents=16, days_before=2, days_after=3, dt=6.0, min_posts=5, observe_days=1)
    out = tmp_path / "fitted.json"
    fs.calibrate([folder], out, max_steps=1, split="train", logger="none", progress=False, config=config,
                 work_dir=tmp_path / "work")
    report = fs.check(out, [folder], split="test")
    assert report.references == ["train_mean_curve", "train_constant", "persistence"]
    assert report.higher_is_better == ("pearson_volume",)
    assert list(report.rows) == ["mae_negative_share", "pearson_volume", "nrmse_volume"]
    assert set(report.figures) == {"volume", "negative_share"}
    assert report.meta["events"] == ["evE"] and report.meta["training_events"] == ["evA", "evB", "evC", "evD"]

    # shares: evA .5 every day, evB 1, evC 0, evD .5 1 1 0 .5 1; evE scored days 2..5 (day 1 observed)
    scored = [0.75, 0.5, 0.9, 0.2]
    constant = (6 * 0.5 + 6 * 1.0 + 0.0 + 4.0) / 24
    curve = [0.5, 0.625, 0.625, 0.375, 0.5, 0.625]
    persistence = 10 / 14  # evE's days 0-1: 14 posts, 10 negative
    row = report.rows["mae_negative_share"]
    assert row["train_constant"] == pytest.approx(sum(abs(s - constant) for s in scored) / 4)
    assert row["train_mean_curve"] == pytest.approx(sum(abs(s - c) for s, c in zip(scored, curve[2:])) / 4)
    assert row["persistence"] == pytest.approx(sum(abs(s - persistence) for s in scored) / 4)
    assert row["model_noise"] == 0.0 and row["reference_noise"] > 0

    volume = [p / 40 for p in _TEST_POSTS]
    curve_volume = [p / 40 for p in _POSTS]
    off_peak = sum(curve_volume) - 1.0
    constant_volume = [off_peak / 5] * 2 + [1.0] + [off_peak / 5] * 3
    pear = report.rows["pearson_volume"]
    assert pear["train_mean_curve"] == pytest.approx(statistics.correlation(volume, curve_volume))
    assert pear["train_constant"] == pytest.approx(statistics.correlation(volume, constant_volume))
    assert pear["persistence"] == pear["train_mean_curve"]  # volume is not conditioned on
    rmse = math.sqrt(sum((a - b) ** 2 for a, b in zip(volume, constant_volume)) / 6)
    assert report.rows["nrmse_volume"]["train_constant"] == pytest.approx(rmse / (1.0 - 0.1))
    # the model column is evaluate()'s numbers
    assert row["model"] == pytest.approx(fs.evaluate(out, [folder], split="test")["mae_negative_share"])
    with pytest.raises(DataFormatError, match="training events"):
        fs.check(out, [folder / "evE.csv"], split="all")


def test_leave_one_event_out_holds_out_each_event_once(tmp_path: Path):
    folder = tmp_path / "events"
    folder.mkdir()
    for name, negative in {**_TRAIN_NEGATIVE, "evE": _TEST_NEGATIVE}.items():
        _write_event(folder / f"{name}.csv", _TEST_POSTS if name == "evE" else _POSTS, negative)
    config = fs.SentimentConfig(agents=8, days_before=2, days_after=3, dt=12.0, min_posts=5, observe_days=1)
    reports = fs.leave_one_event_out([folder], tmp_path / "loo", max_steps=1, config=config)
    assert sorted(reports) == ["evA", "evB", "evC", "evD", "evE"]
    for held_out, report in reports.items():
        assert report.meta["events"] == [held_out] and held_out not in report.meta["training_events"]
    # evB's negative share is 1 every day; the other events' mean daily share is 9.95 / 23 (evA 6 x .5,
    # evC 6 x 0, evD 4 over 6 days, evE 2.95 over its 5 days with >= 5 posts): the constant misses evB
    # by 1 - 9.95 / 23, persistence (evB's own first days) not at all
    row = reports["evB"].rows["mae_negative_share"]
    assert row["persistence"] == pytest.approx(0.0, abs=1e-12)
    assert row["train_constant"] == pytest.approx(1 - 9.95 / 23)


@pytest.mark.data
def test_check_runs_on_real_events(shared_data: Path, tmp_path: Path):
    data = [shared_data / "natural_hazards"]
    config = fs.SentimentConfig(agents=40, dt=6.0)
    out = tmp_path / "fitted.json"
    fs.calibrate(data, out, max_steps=1, split="train", logger="none", progress=False, config=config,
                 work_dir=tmp_path / "work")
    report = fs.check(out, data, split="test")
    assert report.meta["events"] == ["2018Wildfires"] and len(report.meta["training_events"]) == 6
    for row in report.rows.values():
        assert all(math.isfinite(v) for v in row.values())


@pytest.mark.data
def test_real_events_align_on_their_peak(shared_data: Path):
    config = fs.SentimentConfig()
    events = fs.load_events([shared_data / "natural_hazards"])
    assert len(events) == 7
    sandy = fs.observed_targets(events["2012Sandy"], config)
    assert sandy.volume.shape == (config.days,) and float(sandy.volume[config.days_before]) == 1.0
    assert float(torch.nan_to_num(sandy.volume, nan=0.0).max()) == 1.0  # aligned on the peak-volume day
