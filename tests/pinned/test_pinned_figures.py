"""End-to-end figures pinned before the engine-interface refactor: it must not change any number.

Each figure comes from a public entry point (a scenario run, a counterfactual, a calibration loss)
on a small world, on the CPU, in float32 (float64 for the series fits). ``figures.json`` holds the
values main produced before the refactor; regenerate it only for a change meant to move the numbers:

    python -m tests.pinned.test_pinned_figures --write

Tolerance: relative 1e-5 (plus 1e-7 absolute). The refactor may reorder float32 sums over a
handful of terms (relative error ~1e-7 each), but a sampled event that flips moves a figure by far
more than that, so the check still catches any change in what is simulated.
"""

from __future__ import annotations

import json
import math
import sys
import warnings
from pathlib import Path

import pytest
import torch

FIGURES = Path(__file__).with_name("figures.json")
SCENARIOS = ("default", "disaster", "polarization", "misinformation")


def _scenario_figures(name: str) -> dict[str, float]:
    from lpm.scenario import load_scenario, run_scenario, summary_rows, with_overrides

    scenario = with_overrides(load_scenario(name), agents=400, days=1.0, seeds=2 if name == "misinformation" else None)
    result = run_scenario(scenario, steps=30, progress=False)
    figures = {}
    for row in summary_rows(result.trajectory):
        label = row.get("observable", row.get("name", ""))
        for key, value in row.items():
            if isinstance(value, float) and math.isfinite(value):
                figures[f"{label}/{key}"] = value
    if result.counterfactual is not None:
        for row in result.counterfactual.differences().to_dict("records"):
            figures[f"effect/{row['arm']}"] = float(row["difference"])
    return figures


def _cascade_figures() -> dict[str, float]:
    from lpm.calibration.fit_cascades import DEFAULTS, CascadeCalibration, CascadeWorld, simulate_cascades
    from lpm.targets import cascade_targets

    # without the item spread and first-level ratio added later: the pinned trees show the older dynamics
    world = CascadeWorld(agents=300, items=6, resharer_item_spread=False, first_level_audience=False)
    truth = {k: v for k, v in dict(DEFAULTS, transmissibility=0.012, audience=3000.0).items() if k in world.params}
    hours = [0.5, 1.0, 4.0]
    table = simulate_cascades(world, truth, hours=hours, batch=2, seed=7)
    observed = cascade_targets(table, hours)
    figures = {"rows": float(table.time_h.numel()), "time_h_sum": float(table.time_h.sum()),
               "depth_sum": float(table.depth.sum()), "parent_sum": float(table.parent.sum())}
    module = CascadeCalibration(observed, world, init={k: v * 1.2 for k, v in truth.items()})
    for key, value in module.loss_terms(3).items():
        figures[f"loss/{key}"] = float(value)
    return figures


def _stance_figures() -> dict[str, float]:
    from lpm.calibration import fit_stance as fst
    from lpm.targets_series import stance_shares

    truth = {"support_bias": -1.5, "deny_bias": -2.5, "query_bias": -2.0, "belief_slope": 1.5, "arousal_slope": 1.5,
             "arousal_decay": 0.3, "coupling": 0.3, "initial_belief": 0.3, "evidence_rate_true": 0.15,
             "evidence_rate_false": 0.25, "evidence_rate_unverified": 0.08}
    config = fst.StanceConfig(agents=20, dt=1.0, edges_h=(0, 1, 2, 4))
    with torch.no_grad():
        counts = stance_shares(fst.StanceModel(config, truth).simulate_counts()) * 100.0
        module = fst.StanceCalibration(counts * torch.tensor([1.0, 1.3, 0.7, 1.0]), config,
                                       init={k: v * 1.1 for k, v in truth.items()}).double()
        return {"loss": float(module.loss())}


def _sentiment_figures() -> dict[str, float]:
    from lpm.calibration import fit_sentiment as fs

    truth = {"burst_size": 20.0, "burst_rise_h": 8.0, "burst_decay_h": 20.0, "shock_valence": -0.2,
             "emotion_decay": 0.08, "coupling": 0.5, "baseline_negative_share": 0.7}
    config = fs.SentimentConfig(agents=30, days_before=1, days_after=2, dt=4.0, region_share=0.5)
    with torch.no_grad():
        clean = fs.SentimentModel(config, truth).simulate_targets()
        figures = {f"volume/{i}": float(v) for i, v in enumerate(clean.volume.tolist())}
        figures.update({f"negative_share/{i}": float(v) for i, v in enumerate(clean.negative_share.tolist())})
        module = fs.SentimentCalibration({"a": clean}, config, init={**truth, "burst_size": 12.0}).double()
        figures["loss"] = float(module.loss())
    return figures


def compute() -> dict[str, dict[str, float]]:
    torch.manual_seed(0)
    figures = {f"scenario/{name}": _scenario_figures(name) for name in SCENARIOS}
    figures["calibration/cascades"] = _cascade_figures()
    figures["calibration/stance"] = _stance_figures()
    figures["calibration/sentiment"] = _sentiment_figures()
    return figures


@pytest.fixture(scope="module")
def computed() -> dict[str, dict[str, float]]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the reduction order of every sum is fixed
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the small runs end before some arms start
            return compute()
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("group", ["scenario/" + s for s in SCENARIOS]
                         + ["calibration/cascades", "calibration/stance", "calibration/sentiment"])
def test_figures_unchanged(computed, group):
    pinned = json.loads(FIGURES.read_text())[group]
    got = computed[group]
    assert sorted(got) == sorted(pinned), f"{group}: figures added or missing"
    changed = {k: (pinned[k], got[k]) for k in pinned if got[k] != pytest.approx(pinned[k], rel=1e-5, abs=1e-7)}
    assert not changed, f"{group}: {len(changed)} figures moved (pinned, now): {dict(list(changed.items())[:8])}"


if __name__ == "__main__":
    if "--write" in sys.argv:
        torch.set_num_threads(1)
        FIGURES.write_text(json.dumps(compute(), indent=1, sort_keys=True) + "\n")
        print(f"wrote {FIGURES}")
