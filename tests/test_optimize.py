"""Levers and policy optimisation: budgeted soft top-k, gradients against finite differences, a
planted targeting problem whose optimum is known, and validation on fresh seeds."""

from __future__ import annotations

import math

import pytest
import torch

from lpm.dynamics import Cascade, Item
from lpm.errors import ConfigError
from lpm.graph import Graph
from lpm.levers import (AgentFeatures, DownrankSchedule, LabelTiming, TargetedPrebunking, agent_features, hard_top_k,
                        soft_top_k)
from lpm.model import Model
from lpm.optimize import VALIDATION_SEED_OFFSET, final_reach, final_reshares, optimize
from lpm.relax import Expected
from lpm.state import PopulationState


@pytest.mark.parametrize("n,k,temperature", [(50, 5.0, 0.3), (200, 37.5, 0.05), (1000, 100.0, 1.0)])
def test_soft_top_k_meets_the_budget_exactly(n, k, temperature):
    scores = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(n)) * 2.0
    soft = soft_top_k(scores, k, temperature)
    assert float(soft.sum()) == pytest.approx(k, abs=1e-8)
    assert bool(((soft >= 0) & (soft <= 1)).all())


def test_soft_top_k_tends_to_hard_top_k():
    scores = torch.randn(300, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    hard = hard_top_k(scores, 30)
    assert int(hard.sum()) == 30 and bool((hard[scores.argsort(descending=True)[:30]] == 1).all())
    gaps = []
    for temperature in (0.3, 0.03, 0.003, 0.0003):
        gaps.append(float((soft_top_k(scores, 30, temperature) - hard).abs().sum()))
    assert all(b < a for a, b in zip(gaps, gaps[1:])) and gaps[-1] < 1e-2


def test_soft_top_k_gradient_is_the_constrained_one():
    """gradcheck: the implicit-function gradient equals finite differences of the exact-budget map,
    and every gradient direction keeps the budget (d sum / d scores = 0)."""
    scores = torch.randn(12, dtype=torch.float64, generator=torch.Generator().manual_seed(2)).requires_grad_()
    assert torch.autograd.gradcheck(lambda s: soft_top_k(s, 4.0, 0.5), (scores,), atol=1e-7, rtol=1e-5)
    (grad,) = torch.autograd.grad(soft_top_k(scores, 4.0, 0.5).sum(), scores)
    assert float(grad.abs().max()) < 1e-10


def test_bad_budgets_and_temperatures_are_typed_errors():
    scores = torch.randn(10)
    with pytest.raises(ConfigError, match="budget k in"):
        soft_top_k(scores, 10.0, 0.1)
    with pytest.raises(ConfigError, match="temperature"):
        soft_top_k(scores, 3.0, 0.0)
    with pytest.raises(ConfigError, match="shape"):
        hard_top_k(scores[None], 3)


def _small_world(n: int = 60, seed: int = 0):
    graph = Graph.holme_kim(n, 3, 0.3, seed=seed)
    population = PopulationState.sample(n, seed=seed, batch=1, topics=1, opinion="bimodal", dtype=torch.float64)
    hubs = torch.argsort(graph.out_degree(), descending=True)[:2].tolist()
    cascade = Cascade([Item(source=tuple(hubs), stance=1.0)], transmissibility=0.15, alignment_weight=0.8)
    return graph, population, Model(cascade=cascade, dt=1.0).double()


def test_objective_gradients_match_finite_differences():
    """d(final reach)/d(lever parameters) through the mean-field run, in float64, against central
    differences: policy weights (through the soft top-k), label start, downranking factor and start."""
    graph, population, model = _small_world()
    features = agent_features(graph, population)
    levers = [TargetedPrebunking(features, 0.2, temperature=0.5,
                                 weights=[0.5, -0.2, 0.3, 0.1, 0.8]),
              LabelTiming(earliest_h=0.5, latest_h=10.0, at=3.0),
              DownrankSchedule(factor=0.4, at=2.0, latest_h=10.0, engagement_cost=0.5)]
    levers = [lever.double() for lever in levers]
    objective = final_reach()
    state = population.expand_batch(1)
    from lpm.interventions import InterventionPlan
    from lpm.simulate import simulate

    def loss() -> torch.Tensor:
        plan = InterventionPlan([iv for lever in levers for iv in lever.interventions(hard=False)])
        run = model.with_interventions(plan).to(dtype=torch.float64)
        trajectory = simulate(run, state, graph, steps=8, seed=[0], estimator=Expected(), record={})
        value = objective.smooth(trajectory)
        return (value + sum(lever.cost({"value": value}) for lever in levers)).sum()

    params = [p for lever in levers for p in lever.parameters()]
    for p in params:
        p.grad = None
    loss().backward()
    h = 1e-5
    for p in params:
        flat, grad = p.data.view(-1), p.grad.view(-1)
        assert float(grad.abs().max()) > 1e-8
        for i in range(flat.numel()):
            original = float(flat[i])
            with torch.no_grad():
                flat[i] = original + h
                up = float(loss())
                flat[i] = original - h
                down = float(loss())
            flat[i] = original
            numeric = (up - down) / (2 * h)
            # float64 central differences: truncation ~h^2, rounding ~1e-16 |loss| / h ~ 1e-9
            assert float(grad[i]) == pytest.approx(numeric, rel=1e-4, abs=1e-6)


def _star_of_stars(hubs: int = 5, leaves: int = 20):
    """Source 0 followed by ``hubs`` hubs, each followed by ``leaves`` leaves of its own."""
    edges = [(0, h) for h in range(1, hubs + 1)]
    node = hubs + 1
    for h in range(1, hubs + 1):
        for _ in range(leaves):
            edges.append((h, node))
            node += 1
    graph = Graph.from_edge_index(torch.tensor(edges).T, num_nodes=node)
    return graph, list(range(1, hubs + 1))


def test_optimize_finds_the_hubs_of_a_star_of_stars():
    """Prebunking budget = number of hubs: the optimum blocks the hubs, through whom every leaf is
    reached (any other choice leaves some hub free to pass the claim to its 20 leaves). Starting
    from a policy that scores a feature unrelated to the structure, the gradient must find them."""
    graph, hubs = _star_of_stars()
    n = graph.num_nodes
    population = PopulationState.sample(n, seed=3, batch=1, topics=1, dtype=torch.float64)
    noise = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    base = agent_features(graph, population)
    raw = torch.stack([base.raw[:, 0], noise], 1)
    values = (raw - raw.mean(0)) / raw.std(0)
    features = AgentFeatures(("log_followers", "noise"), values, raw)
    cascade = Cascade([Item(source=0)], transmissibility=0.6)
    model = Model(cascade=cascade, dt=1.0).double()
    lever = TargetedPrebunking(features, len(hubs) / n, strength=6.0, temperature=0.3, weights=[0.05, 1.0])
    assert set(lever.selection(hard=True).nonzero().flatten().tolist()) != set(hubs)
    plan = optimize(model, population, graph, [lever], final_reach(), steps=6, iterations=60, lr=0.1,
                    warm_start=False, validate=False)
    assert set(lever.selection(hard=True).nonzero().flatten().tolist()) == set(hubs)
    assert plan.trace[-1]["objective"] < plan.trace[0]["objective"]
    # the soft selection met the budget exactly at every step
    assert float(lever.selection().detach().sum()) == pytest.approx(len(hubs), abs=1e-8)


def test_validation_runs_exact_dynamics_on_fresh_seeds():
    graph, population, model = _small_world(80, seed=1)
    features = agent_features(graph, population)
    levers = [TargetedPrebunking(features, 0.1), LabelTiming(earliest_h=0.5, latest_h=6.0, at=3.0)]
    plan = optimize(model, population, graph, levers, final_reshares(), steps=6, iterations=4, validation_seeds=4,
                    tpe_batch=4)
    validation = plan.validation
    assert set(validation.arms) == {"none", "optimized", "grid_best", "tpe_best"}
    assert set(validation.seeds).isdisjoint(plan.meta["optimisation_seeds"])
    assert min(validation.seeds) >= VALIDATION_SEED_OFFSET
    # exact runs: integer reshare counts, the objective column equals the table's own count
    table = validation.table
    assert (table["objective"] == table["final_reshares"]).all()
    assert (table["objective"] % 1 == 0).all()
    assert set(plan.comparison["against"]) == {"none", "grid_best", "tpe_best"}
    assert len(plan.grid) == 2 * len(features.names) * 3 and plan.meta["tpe_trials"] >= 4
    # the optimised plan's prebunked agents are exactly the budget
    optimized = plan.arms["optimized"][0]
    assert int(optimized.target.sum()) == round(0.1 * graph.num_nodes)


def test_optimize_rejects_bad_setups():
    graph, population, model = _small_world()
    features = agent_features(graph, population)
    with pytest.raises(ConfigError, match="at least one lever"):
        optimize(model, population, graph, [], final_reach(), steps=2)
    with pytest.raises(ConfigError, match="below"):
        optimize(model, population, graph, [LabelTiming()], final_reach(), steps=2, seeds=[VALIDATION_SEED_OFFSET])
    with pytest.raises(ConfigError, match="budget share"):
        TargetedPrebunking(features, 1.5)
    with pytest.raises(ConfigError, match="policy weights"):
        TargetedPrebunking(features, 0.1, weights=[1.0, 2.0])
    with pytest.raises(ConfigError, match="one scenario"):
        agent_features(graph, population.expand_batch(2))
    assert math.isfinite(LabelTiming().values()["label.at_h"])


def test_guidance_plan_gradients_match_finite_differences():
    """The disaster scenario's guidance lever (send time, tone mix, regional focus) against central
    differences of the soft peak negative share, float64, 40 agents over 40 hours."""
    from lpm.interventions import InterventionPlan
    from lpm.levers import GuidancePlan
    from lpm.optimize import peak_negative_share
    from lpm.scenarios import disaster
    from lpm.simulate import simulate

    graph = disaster.build_graph(40, 0, torch.device("cpu"))
    population = disaster.build_population(graph, 1, 0).to(dtype=torch.float64)
    model = disaster.build_model(graph, 1.0, 0).double()
    officials = torch.argsort(graph.out_degree(), descending=True)[:3].tolist()
    lever = GuidancePlan(officials, graph, disaster.in_region(40, 0), strength=2.0, earliest_h=20.0,
                         latest_h=38.0, at=30.0, tone_mix=0.3, region_focus=0.6).double()
    objective = peak_negative_share(sharpness=20.0)

    def loss() -> torch.Tensor:
        run = model.with_interventions(InterventionPlan(lever.interventions())).to(dtype=torch.float64)
        trajectory = simulate(run, population, graph, steps=40, seed=[0], estimator=Expected(),
                              record=dict(objective.record))
        return objective.smooth(trajectory).sum()

    lever.zero_grad()
    loss().backward()
    for name, p in lever.named_parameters():
        analytic = float(p.grad)
        assert abs(analytic) > 1e-8, name
        original = float(p.data)
        with torch.no_grad():
            p.data.fill_(original + 1e-5)
            up = float(loss())
            p.data.fill_(original - 1e-5)
            down = float(loss())
            p.data.fill_(original)
        assert analytic == pytest.approx((up - down) / 2e-5, rel=1e-4, abs=1e-7), name
    # the dose keeps its total over the reached followers whatever the focus
    reached = lever.reached_inside + lever.reached_outside
    assert float(lever.dose().detach().sum()) == pytest.approx(float(reached.sum()), rel=1e-12)


def test_lpm_optimize_cli_writes_plan_and_figures(tmp_path):
    import json

    from lpm.cli import main

    code = main(["optimize", "misinformation", "--levers", "prebunk,label_timing", "--budget", "prebunk_share=0.05",
                 "--agents", "300", "--days", "0.25", "--iterations", "3", "--validation-seeds", "3",
                 "--out", str(tmp_path)])
    assert code == 0
    out = tmp_path / "misinformation" / "optimize"
    plan = json.loads((out / "plan.json").read_text())
    assert plan["agents"] == 300 and plan["objective"] == "final_reach"
    assert {row["against"] for row in plan["comparison"]} == {"none", "grid_best", "tpe_best"}
    assert sum(row["share_selected"] for row in plan["targeting"]) == pytest.approx(0.05 * 10, abs=0.05)
    for name in ("convergence.png", "effects.png", "targeting.png", "comparison.parquet", "trace.parquet"):
        assert (out / name).stat().st_size > 0
    assert main(["optimize", "misinformation", "--levers", "teleport", "--agents", "300"]) == 2
    assert main(["optimize", "misinformation", "--levers", "prebunk", "--budget", "prebunk_share=lots"]) == 2


class _TransmissibilityDraws:
    """A posterior over the cascade's transmissibility: evenly spread draws in [lo, hi]."""

    def __init__(self, lo: float, hi: float) -> None:
        self.lo, self.hi = lo, hi

    def draw(self, count: int, seed: int = 0) -> list[dict[str, float]]:
        order = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()
        return [{"transmissibility": self.lo + (self.hi - self.lo) * (k + 0.5) / count} for k in order]

    def apply(self, model, values) -> list[str]:
        with torch.no_grad():
            model.cascade.raw_transmissibility.fill_(math.log(values["transmissibility"] / (1 - values["transmissibility"])))
        return ["transmissibility"]


def test_optimize_under_a_posterior_reports_both_intervals():
    """With a posterior the search scores plans over its draws and the validation runs each fresh seed
    under its own draw, beside the point estimate: both comparisons and their width ratio come back,
    and the draws' spread of transmissibility makes the effects vary more between seeds."""
    graph, population, model = _small_world(80, seed=2)
    features = agent_features(graph, population)
    lever = TargetedPrebunking(features, 0.1)
    plan = optimize(model, population, graph, [lever], final_reshares(), steps=6, iterations=3, validation_seeds=6,
                    tpe=False, posterior=_TransmissibilityDraws(0.05, 0.4), draws=3)
    assert plan.comparison_point_estimate is not None
    assert set(plan.meta["widening"]) == {"optimized-none", "grid_best-none", "optimized-grid_best"}
    fixed = plan.validation.fixed_parameters.table
    drawn = plan.validation.table
    assert (fixed["seed"].to_numpy() == drawn["seed"].to_numpy()).all()
    # the same seeds under different parameters give different runs
    assert not (fixed["objective"].to_numpy() == drawn["objective"].to_numpy()).all()


def test_weighted_objective_is_the_weighted_sum_of_its_terms():
    from lpm.optimize import weighted
    from lpm.simulate import simulate

    graph, population, model = _small_world(50, seed=5)
    reach, reshares = final_reach(), final_reshares()
    combined = weighted((1.0, reach), (-2.5, reshares))
    trajectory = simulate(model, population.expand_batch(2), graph, steps=5, seed=[0, 1], record={})
    for kind in ("smooth", "exact"):
        expected = getattr(reach, kind)(trajectory) - 2.5 * getattr(reshares, kind)(trajectory)
        assert torch.allclose(getattr(combined, kind)(trajectory), expected)
    with pytest.raises(ConfigError, match="at least one"):
        weighted()


def test_lpm_optimize_records_provenance_and_refuses_to_overwrite(tmp_path):
    import json

    from lpm.cli import main

    args = ["optimize", "misinformation", "--levers", "label_timing", "--agents", "200", "--days", "0.2",
            "--iterations", "2", "--validation-seeds", "2", "--out", str(tmp_path)]
    assert main(args) == 0
    plan_path = tmp_path / "misinformation" / "optimize" / "plan.json"
    plan = json.loads(plan_path.read_text())
    assert plan["provenance"]["command"].startswith("lpm optimize misinformation")
    assert min(plan["provenance"]["seeds"]) >= VALIDATION_SEED_OFFSET
    before = plan_path.read_bytes()
    assert main(args) == 2  # a finished optimisation is not replaced silently
    assert plan_path.read_bytes() == before
    assert main(args + ["--overwrite"]) == 0
