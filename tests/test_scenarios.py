"""The shipped scenarios run and show their headline effects at small scale."""

from __future__ import annotations

import dataclasses

import torch

import lpm
from lpm.scenario import load_scenario, run_scenario


def small(name: str, **overrides):
    return dataclasses.replace(load_scenario(name), **overrides)


def test_polarization_interest_feed_polarizes_more():
    result = run_scenario(small("polarization", agents=4000, seeds=2), progress=False).counterfactual
    summary = result.summary().set_index("arm")
    for outcome in ("final_polarization", "final_between_communities", "final_echo_chamber"):
        assert summary.loc["interest", outcome] > summary.loc["chronological", outcome], outcome


def test_polarization_communities_match_the_generator():
    from lpm.scenarios import polarization

    _, block = lpm.Graph.sbm_homophily(1234, polarization.COMMUNITIES, polarization.MEAN_DEGREE,
                                       polarization.HOMOPHILY, seed=0)
    assert torch.equal(polarization.community(1234), block)


def test_disaster_guidance_lowers_negative_share():
    result = run_scenario(small("disaster", agents=3000, seeds=2, days=3.0), progress=False).counterfactual
    diff = result.differences("mean_negative_share").set_index("arm")
    assert diff.loc["empathetic@+2h", "hi"] < 0  # the whole 90% interval is below zero
    from lpm.scenarios.disaster import LANDFALL_H

    summary = result.summary().set_index("arm")
    assert summary.loc["none", "peak_time_negative_share"] >= LANDFALL_H  # the peak follows the landfall
    assert summary.loc["none", "peak_posts"] > 2 * summary.loc["none", "mean_posts"]  # the volume burst


def test_misinformation_earlier_labels_cut_more():
    result = run_scenario(small("misinformation", agents=3000, seeds=2, days=1.0), progress=False).counterfactual
    reach = result.summary().set_index("arm")["final_reach"]
    assert reach["label@1h"] <= reach["label@6h"] <= reach["label@24h"] <= reach["none"]
    assert reach["prebunk30"] <= reach["prebunk10"]


def test_polarization_on_polblogs(shared_data):
    result = run_scenario(small("polarization_polblogs", seeds=2, days=1.0), progress=False).counterfactual
    summary = result.summary().set_index("arm")
    for outcome in ("final_polarization", "final_between_communities"):
        assert summary.loc["interest", outcome] > summary.loc["chronological", outcome], outcome
    assert result.trajectory.final.opinion.shape[1] == 1490  # the blogs
