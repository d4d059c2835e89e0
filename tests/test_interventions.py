"""Interventions: their effects, exact monotonicity under common random numbers, and gradients
of final reach with respect to each intervention's strength and start time."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

import lpm
from lpm import observables, relax
from lpm.dynamics import Cascade, EmotionContagion, Item, BoundedConfidence
from lpm.errors import ConfigError
from lpm.interventions import (
    Downranking, EdgeBlocking, FactCheckLabel, GuidanceMessage, InterventionPlan, Prebunking, Rebuttal, Suspension,
    smooth_step,
)
from lpm.testing import small_graph
from tests.helpers import assert_gradients_match_finite_differences, make_state


def reach_per_seed(graph, model, arms, seeds=8, steps=40):
    result = lpm.counterfactual(model, lpm.PopulationState.sample(graph.num_nodes, seed=0), graph, arms,
                                steps=steps, seeds=seeds)
    return result, {arm: result._values(arm, "final_reshares") for arm in arms}


def test_earlier_label_never_reaches_more_under_common_random_numbers():
    graph = lpm.Graph.holme_kim(3000, 4, 0.3, seed=1)
    top = int(graph.out_degree().argmax())
    model = lpm.Model(cascade=Cascade([Item(source=top)], transmissibility=0.08, attention=0.5), dt=0.5)
    arms = {"none": [], "label@24h": [FactCheckLabel(0, at=24.0)], "label@6h": [FactCheckLabel(0, at=6.0)],
            "label@1h": [FactCheckLabel(0, at=1.0)]}
    _, reach = reach_per_seed(graph, model, arms)
    # same draws, lower probabilities at every step: the resharers are nested, seed by seed
    assert torch.all(torch.tensor(reach["label@1h"] <= reach["label@6h"]))
    assert torch.all(torch.tensor(reach["label@6h"] <= reach["label@24h"]))
    assert torch.all(torch.tensor(reach["label@24h"] <= reach["none"]))
    assert reach["label@1h"].mean() < reach["none"].mean()


def test_each_intervention_cuts_reach():
    graph = lpm.Graph.holme_kim(3000, 4, 0.3, seed=2)
    followers = graph.out_degree()
    top = int(followers.argmax())
    spreaders = followers.topk(6).indices[1:].tolist()
    model = lpm.Model(cascade=Cascade([Item(source=top)], transmissibility=0.08, attention=0.5), dt=0.5)
    arms = {
        "none": [], "label@1h": [FactCheckLabel(0, at=1.0, strength=1.5)],
        "downrank": [Downranking(0, at=0.5, factor=0.7)],
        "suspend": [Suspension(spreaders, 3000, at=0.0)], "block": [EdgeBlocking(spreaders, graph, at=0.0)],
        "prebunk30": [Prebunking([0], 3000, at=0.0, share=0.3, strength=3.0)],
        "rebuttal": [Rebuttal(0, spreaders, graph, at=0.5, every_h=2.0, count=4, strength=2.0)],
    }
    _, reach = reach_per_seed(graph, model, arms, seeds=16)
    for arm in arms:
        if arm != "none":
            assert reach[arm].mean() < reach["none"].mean(), arm


def test_common_random_numbers_pair_arms_exactly():
    """An arm that cannot matter (a label after the cascade died out) differs by exactly 0 on every
    seed under common random numbers, while independent seeds give it a wide interval."""
    graph = lpm.Graph.holme_kim(3000, 4, 0.3, seed=2)
    top = int(graph.out_degree().argmax())
    model = lpm.Model(cascade=Cascade([Item(source=top)], transmissibility=0.08, attention=0.5), dt=0.5)
    arms = {"none": [], "label@1000h": [FactCheckLabel(0, at=1000.0)]}
    pop = lpm.PopulationState.sample(3000, seed=0)
    paired = lpm.counterfactual(model, pop, graph, arms, steps=40, seeds=16)
    unpaired = lpm.counterfactual(model, pop, graph, arms, steps=40, seeds=16, common_random_numbers=False)
    same = paired.differences("final_reshares").set_index("arm").loc["label@1000h"]
    other = unpaired.differences("final_reshares").set_index("arm").loc["label@1000h"]
    assert same["difference"] == 0 and same["width"] == 0
    assert other["width"] > 10


def test_pairing_gain_and_bound_match_closed_forms():
    """On a hand-made table: an arm that halves the baseline seed by seed is a comonotone coupling,
    whose gain reaches the bound sqrt(1 + 1/4) / (1 - 1/2); an arm that adds a constant has equal
    spreads (no bound) and an exactly zero-variance difference; a shuffled arm gains ~1."""
    import numpy as np
    import pandas as pd

    from lpm.counterfactual import CounterfactualResult

    rng = np.random.default_rng(4)
    base = rng.lognormal(5.0, 0.6, size=400)
    arms = {"none": base, "half": 0.5 * base, "shifted": base - 30.0, "shuffled": 0.5 * rng.permutation(base)}
    table = pd.DataFrame({"arm": np.repeat(list(arms), base.size), "seed": np.tile(np.arange(base.size), len(arms)),
                          "final_reach": np.concatenate(list(arms.values()))})
    result = CounterfactualResult(table=table, trajectory=None, arms=tuple(arms), seeds=tuple(range(base.size)),
                                  baseline="none", common_random_numbers=True, outcomes=("final_reach",))
    pairing = result.pairing().set_index("arm")
    assert list(pairing.index) == ["half", "shifted", "shuffled"]
    assert pairing.loc["half", "correlation"] == pytest.approx(1.0)
    assert pairing.loc["half", "gain"] == pytest.approx((1.25 ** 0.5) / 0.5)
    assert pairing.loc["half", "bound"] == pytest.approx((1.25 ** 0.5) / 0.5)
    assert pairing.loc["shifted", "gain"] == float("inf") and pairing.loc["shifted", "bound"] == float("inf")
    # independent draws: Var(a - b) = var_a + var_b, up to sampling error of 400 pairs (~10%)
    assert pairing.loc["shuffled", "gain"] == pytest.approx(1.0, abs=0.15)
    with pytest.raises(ConfigError, match="at least 3 seeds"):
        CounterfactualResult(table=table[table.seed < 2], trajectory=None, arms=tuple(arms), seeds=(0, 1),
                             baseline="none", common_random_numbers=True, outcomes=("final_reach",)).pairing()


def full_plan(graph, n):
    return [
        FactCheckLabel(0, at=2.0, strength=0.8), Downranking(0, at=3.0, factor=0.3),
        Suspension([1, 2], n, at=2.5), EdgeBlocking([3, 4], graph, at=1.5, share=0.5),
        Prebunking([0], n, at=1.0, share=0.4, strength=0.7),
        Rebuttal(0, [5, 6], graph, at=1.0, every_h=1.5, count=2, strength=0.9),
        GuidanceMessage([5], graph, at=2.0, tone="rational", stance=0.5),
        GuidanceMessage([6], graph, at=1.0, tone="empathetic"),
    ]


def test_gradients_of_final_reach_wrt_every_strength_and_start_time_match_finite_differences():
    n = 14
    graph = small_graph(n, 3.0, seed=3)
    state = make_state(n, batch=2, seed=3)
    model = lpm.Model(
        opinion=BoundedConfidence(0.6, 0.5, tau=0.2), emotion=EmotionContagion(),
        cascade=Cascade([Item(source=0)], transmissibility=0.4, arousal_weight=0.5, alignment_weight=0.5, attention=0.8),
        interventions=full_plan(graph, n), dt=0.5,
    ).double()
    estimator = relax.RelaxedBernoulli(0.5)

    def loss():
        traj = lpm.simulate(model, state, graph, steps=10, seed=[1, 2], estimator=estimator,
                            record={"reshares": observables.reshares, "emotion": observables.emotion_mean,
                                    "opinion": observables.opinion_mean})
        return traj["reshares"][-1].sum() + traj["emotion"][-1].sum() + traj["opinion"][-1].sum()

    checked = assert_gradients_match_finite_differences(model.interventions, loss)
    assert checked == 14  # 8 start times + 6 strengths/factors (suspension and blocking have none)


def test_effects_compose_and_respect_scenario_masks():
    n = 10
    graph = small_graph(n, 3.0, seed=4)
    mask = torch.tensor([True, False, True])
    plan = InterventionPlan([FactCheckLabel(0, at=0.0, strength=1.0, scenarios=mask),
                             FactCheckLabel(0, at=0.0, strength=2.0), Suspension([2], n, at=0.0),
                             Suspension([2, 3], n, at=0.0)])
    from lpm.interventions import Shape

    like = torch.zeros((), dtype=torch.float64)
    shape = Shape(batch=3, agents=n, items=2, edges=graph.num_edges, emotions=2, topics=1, like=like)
    effects = plan.effects(1e6, shape)  # long after the start: smooth steps are 1
    logit = effects.reshare_logit.expand(3, n, 2)
    s1, s2 = (float(torch.nn.functional.softplus(p.raw_strength.detach())) for p in list(plan.interventions)[:2])
    torch.testing.assert_close(logit[:, 0, 0], torch.tensor([-(s1 + s2), -s2, -(s1 + s2)], dtype=torch.float64))
    assert torch.all(logit[..., 1] == 0)  # the other item is untouched
    gate = effects.source_gate
    assert torch.all(gate[:, 2] == 0) and torch.all(gate[:, 3] == 0) and torch.all(gate[:, [0, 1, 4]] == 1)
    before = plan.effects(-1e6, shape)
    assert float(before.reshare_logit.abs().max()) < 1e-12
    assert float(smooth_step(0.0, torch.tensor(0.0), 0.25)) == 0.5


def test_concurrent_rational_guidance_pulls_combine():
    """Two rational messages toward stances +1 and -0.5, both on: every reached opinion moves by
    r1 (1 - x) + r2 (-0.5 - x), the sum of both pulls (one target must not overwrite the other)."""
    n = 12
    graph = small_graph(n, 3.0, seed=5)
    first = GuidanceMessage([0], graph, at=0.0, tone="rational", stance=1.0, strength=0.7, decay=0.0)
    second = GuidanceMessage([1], graph, at=0.0, tone="rational", stance=-0.5, strength=1.3, decay=0.0)
    from lpm.interventions import Shape

    like = torch.zeros((), dtype=torch.float64)
    shape = Shape(batch=2, agents=n, items=1, edges=graph.num_edges, emotions=2, topics=1, like=like)
    effects = InterventionPlan([first, second]).effects(1e6, shape)
    x = torch.rand(2, n, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    moved = x + effects.opinion_pull - effects.opinion_rate * x

    def pull(message, stance):
        rate = 0.1 * torch.nn.functional.softplus(message.raw_strength.detach()) * message.reached.double()
        return rate[None, :, None] * (stance - x)

    torch.testing.assert_close(moved, x + pull(first, 1.0) + pull(second, -0.5))
    assert float((moved - x).abs().max()) > 0.01  # the pulls are not negligible


def test_bad_interventions_raise():
    graph = small_graph(10, seed=0)
    with pytest.raises(ConfigError, match="agent ids in"):
        Suspension([12], 10, at=0.0)
    with pytest.raises(ConfigError, match="at least one agent"):
        Suspension([], 10, at=0.0)
    with pytest.raises(ConfigError, match="tone"):
        GuidanceMessage([1], graph, at=0.0, tone="angry")
    with pytest.raises(ConfigError, match="share"):
        Prebunking([0], 10, at=0.0, share=0.0)
    with pytest.raises(ConfigError, match="width"):
        FactCheckLabel(0, at=0.0, width=0.0)
    with pytest.raises(ConfigError, match="Intervention objects"):
        InterventionPlan(["label"])
    model = lpm.Model(cascade=Cascade([Item(source=0)]), interventions=[FactCheckLabel(3, at=0.0)])
    with pytest.raises(ConfigError, match=r"item index in \[0, 1\)"):
        lpm.simulate(model, lpm.PopulationState.sample(10, seed=0), graph, steps=1, seed=0)
    with pytest.raises(ConfigError, match="baseline"):
        lpm.counterfactual(lpm.Model(emotion=EmotionContagion()), lpm.PopulationState.sample(10, seed=0), graph,
                           {"none": []}, steps=1, baseline="other")


def test_martingale_controls_have_mean_zero_and_narrow_reach():
    """``1[R <= H] - min(R, H)`` is a martingale whatever drives the hazard H (Sellke 1983): over
    200 seeds per arm, with a label, a suspension and edge blocking changing hazards and reach
    mid-run, heterogeneous attention, a feed that decays and opinion-dependent reshare
    probabilities, the controls' means (weights 1 and the reach weights) are within 4 standard errors of 0 (a false alarm
    once in ~16,000). The adjusted outcomes keep the raw means and narrow the spread of reach."""
    import numpy as np

    n = 1500
    graph = lpm.Graph.holme_kim(n, 4, 0.3, seed=3)
    ranked = graph.out_degree().argsort(descending=True).tolist()
    cascade = Cascade([Item(source=tuple(ranked[:2]), stance=1.0)], transmissibility=0.05, attention=0.4,
                      attention_spread=0.8, feed_half_life_h=0.5, alignment_weight=0.8)
    arms = {"none": [], "label": [FactCheckLabel(0, at=1.0, strength=1.0)],
            "suspend": [Suspension(ranked[2:4], n, at=0.5)], "block": [EdgeBlocking(ranked[2:6], graph, at=1.0)]}
    population = lpm.PopulationState.sample(n, seed=0, topics=1, opinion="bimodal")
    result = lpm.counterfactual(lpm.Model(cascade=cascade, dt=0.5), population, graph, arms, steps=24, seeds=200)
    assert result.headline == "final_reach_adjusted"
    for arm in arms:
        part = result.table[result.table.arm == arm]
        for outcome in ("final_reach", "final_reshares"):
            raw, adjusted = part[outcome].to_numpy(), part[f"{outcome}_adjusted"].to_numpy()
            control = raw - adjusted
            assert control.std() > 0, (arm, outcome)  # the controls do move from seed to seed
            assert abs(control.mean()) < 4 * control.std(ddof=1) / np.sqrt(control.size), (arm, outcome)
        raw, adjusted = part["final_reach"].to_numpy(), part["final_reach_adjusted"].to_numpy()
        assert adjusted.std() < 0.7 * raw.std(), arm
    pairing = result.pairing().set_index("arm")
    assert (pairing.outcome == "final_reach_adjusted").all()
    assert (pairing.gain_over_raw > pairing.gain).all()


@pytest.mark.parametrize("common_random_numbers", [True, False])
def test_counterfactual_in_batches_of_whole_arms_equals_one_batch(common_random_numbers):
    """Splitting the arms into batches (as the CPU default does for large populations) changes no
    number: not the outcomes, not the control-variate adjusted ones, not the recorded curves, and
    with independent seeds each arm keeps its own seeds."""
    graph = lpm.Graph.holme_kim(400, 3, 0.3, seed=4)
    ranked = torch.argsort(graph.out_degree(), descending=True).tolist()
    cascade = Cascade([Item(source=ranked[0])], transmissibility=0.15, attention=0.6, feed_half_life_h=1.0)
    model = lpm.Model(cascade=cascade, dt=0.5)
    arms = {"none": [], "label": [FactCheckLabel(0, at=1.0)], "block": [EdgeBlocking(ranked[1:4], graph, at=1.0)],
            "suspend": [Suspension(ranked[1:4], 400, at=1.0)], "downrank": [Downranking(0, at=2.0)]}
    population = lpm.PopulationState.sample(400, seed=1)
    kwargs = dict(steps=16, seeds=3, common_random_numbers=common_random_numbers, baseline="label")
    whole = lpm.counterfactual(model, population, graph, arms, chunk=15, **kwargs)
    split = lpm.counterfactual(model, population, graph, arms, chunk=6, **kwargs)  # batches of 2, 2, 1 arms
    pd.testing.assert_frame_equal(split.table, whole.table)
    assert split.arms == whole.arms and split.baseline == whole.baseline == "label"
    assert torch.equal(split.trajectory["reshares"], whole.trajectory["reshares"])
    assert torch.equal(split.trajectory.final.exposures, whole.trajectory.final.exposures)
    pd.testing.assert_frame_equal(split.differences(resamples=200), whole.differences(resamples=200))
    assert whole.table.final_reach.std() > 0  # the arms and seeds differ: the comparison is not vacuous


def test_cpu_batches_hold_at_most_the_agent_budget_and_gpus_take_one():
    from lpm.counterfactual import CPU_BATCH_AGENTS, arm_batches

    cpu = arm_batches(11, 16, 100_000, torch.device("cpu"))
    assert [len(g) for g in cpu] == [2] * 5 + [1]
    assert all(len(g) * 16 * 100_000 <= CPU_BATCH_AGENTS for g in cpu)
    assert [list(g) for g in arm_batches(11, 16, 1_000, torch.device("cpu"))] == [list(range(11))]
    assert [list(g) for g in arm_batches(11, 16, 100_000, torch.device("cuda"))] == [list(range(11))]
    assert [len(g) for g in arm_batches(3, 4, 10**9, torch.device("cpu"))] == [1, 1, 1]  # one arm at least
    assert [len(g) for g in arm_batches(5, 4, 10, torch.device("cuda"), chunk=9)] == [2, 2, 1]
    with pytest.raises(ConfigError, match="chunk"):
        arm_batches(5, 4, 10, torch.device("cpu"), chunk=3)
