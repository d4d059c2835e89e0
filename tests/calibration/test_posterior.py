"""Parameter posteriors: the Laplace machinery against closed forms, the saved file, planted-parameter
coverage of the cascade posterior, and counterfactuals that draw parameters from a posterior."""

from __future__ import annotations

import json
import math

import pytest
import torch

from lpm.calibration.posterior import GaussianPosterior, gauss_newton, load_posterior, posterior_path
from lpm.errors import DataFormatError, NumericalError


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # small tensors on a shared 2-core machine: intra-op threads cost more than they give
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_gauss_newton_is_exact_for_linear_gaussian_statistics():
    """With ``s(z) = A z + c`` the posterior is Gaussian with a closed form (conjugate normal model):
    precision ``A' S^-1 A + P0``, mean ``cov (A' S^-1 (s_obs - c) + P0 m0)``."""
    g = torch.Generator().manual_seed(3)
    k, p = 6, 3
    a = torch.randn(k, p, generator=g, dtype=torch.float64)
    c = torch.randn(k, generator=g, dtype=torch.float64)
    root = torch.randn(k, k, generator=g, dtype=torch.float64)
    noise = root @ root.T / k + 0.1 * torch.eye(k, dtype=torch.float64)
    observed = torch.randn(k, generator=g, dtype=torch.float64)
    m0, sd0 = torch.randn(p, generator=g, dtype=torch.float64), 2.0
    z = torch.zeros(p, dtype=torch.float64)

    def statistics(jacobian: bool):
        return a @ z + c, (a if jacobian else None)

    def put(value):
        z.copy_(value)

    mode, cov, history = gauss_newton(statistics, lambda: z.clone(), put, observed, noise, prior_mean=m0,
                                      prior_sd=sd0, iterations=20)
    inv = torch.linalg.inv(noise)
    precision = a.T @ inv @ a + torch.eye(p, dtype=torch.float64) / sd0**2
    expected_cov = torch.linalg.inv(precision)
    expected_mean = expected_cov @ (a.T @ inv @ (observed - c) + m0 / sd0**2)
    torch.testing.assert_close(mode, expected_mean, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(cov, expected_cov, rtol=1e-9, atol=1e-12)
    assert history == sorted(history, reverse=True)  # accepted steps never increase the objective
    torch.testing.assert_close(z, mode)  # parameters left at the mode


def _posterior(kind: str = "cascades") -> GaussianPosterior:
    cov = torch.tensor([[0.04, 0.01], [0.01, 0.09]], dtype=torch.float64)
    return GaussianPosterior(kind, ("transmissibility", "audience"), ("logit", "log"),
                             torch.tensor([math.log(0.01 / 0.99), math.log(3000.0)], dtype=torch.float64), cov,
                             fixed={"feed_tail": 1.5})


def test_draws_follow_the_gaussian_in_unconstrained_coordinates():
    posterior = _posterior()
    draws = posterior.draw(20_000, seed=1)
    z = torch.tensor([[math.log(d["transmissibility"] / (1 - d["transmissibility"])), math.log(d["audience"])]
                      for d in draws], dtype=torch.float64)
    # 20k draws: the sample mean's SE is sd / 141 (<= 0.0022), the sample variance's ~1% relative
    torch.testing.assert_close(z.mean(0), posterior.mean, rtol=0, atol=0.01)
    torch.testing.assert_close(torch.cov(z.T), posterior.covariance, rtol=0.05, atol=1e-3)
    assert all(d["feed_tail"] == 1.5 for d in draws[:10])
    low, high = posterior.interval(0.8)["audience"]
    inside = sum(low <= d["audience"] <= high for d in draws) / len(draws)
    assert inside == pytest.approx(0.8, abs=0.01)  # binomial SE 0.0028


def test_posterior_file_round_trips_and_bad_files_are_typed_errors(tmp_path):
    posterior = _posterior()
    path = posterior.save(posterior_path(tmp_path / "fit.json"))
    assert path.name == "fit.posterior.json"
    loaded = load_posterior(path, kind="cascades")
    torch.testing.assert_close(loaded.covariance, posterior.covariance)
    assert loaded.draw(3, seed=5) == posterior.draw(3, seed=5)
    with pytest.raises(DataFormatError, match="for 'stance'"):
        load_posterior(path, kind="stance")
    payload = json.loads(path.read_text())
    payload["covariance"] = [[1.0, 2.0], [2.0, 1.0]]  # not positive definite
    path.write_text(json.dumps(payload))
    with pytest.raises(DataFormatError, match="positive definite"):
        load_posterior(path)
    path.write_text("{not json")
    with pytest.raises(DataFormatError, match="posterior JSON"):
        load_posterior(path)
    with pytest.raises(NumericalError, match="finite"):
        GaussianPosterior("cascades", ("audience",), ("log",), torch.tensor([float("nan")], dtype=torch.float64),
                          torch.eye(1, dtype=torch.float64))


def test_cascade_posterior_covers_planted_parameters():
    """80% credible intervals hold the planted values in 70-90% of 20 recovery runs (pooled over the
    three free parameters: 60 intervals, binomial SD 5 points at a true 80%)."""
    from lpm.calibration.cascade_recovery import planted_coverage
    from lpm.calibration.cascade_world import DEFAULTS, CascadeWorld

    world = CascadeWorld(agents=600, items=8, resharer_audience=False)
    truth = {k: v for k, v in dict(DEFAULTS, transmissibility=0.012, audience=3000.0).items() if k in world.params}
    result = planted_coverage(world, truth, ["transmissibility", "audience", "audience_spread"], runs=20)
    assert 0.7 <= result["pooled"] <= 0.9, result
    for name, share in result["coverage"].items():
        assert share >= 0.55, (name, result)  # no parameter far off its own nominal 80%


def _cascade_counterfactual_setup():
    import lpm
    from lpm.dynamics import Cascade, Item
    from lpm.interventions import FactCheckLabel

    graph = lpm.Graph.holme_kim(800, 4, 0.3, seed=4)
    top = int(graph.out_degree().argmax())
    model = lpm.Model(cascade=Cascade([Item(source=top)], transmissibility=0.05, attention=0.5, audience=200.0), dt=0.5)
    arms = {"none": [], "label@2h": [FactCheckLabel(0, at=2.0, strength=2.0)]}
    return graph, model, arms, lpm.PopulationState.sample(graph.num_nodes, seed=0)


def test_counterfactual_draws_one_parameter_set_per_seed():
    """Seed s of every arm under posterior draw s equals a plain run of the model set to draw s."""
    import lpm
    from lpm.calibration.cascade_world import apply_params
    from lpm.uncertainty import interval_widening

    graph, model, arms, population = _cascade_counterfactual_setup()
    posterior = GaussianPosterior("cascades", ("transmissibility", "audience"), ("logit", "log"),
                                  torch.tensor([math.log(0.05 / 0.95), math.log(200.0)], dtype=torch.float64),
                                  torch.diag(torch.tensor([0.3, 0.5], dtype=torch.float64)) ** 2)
    seeds = [3, 8, 11]
    result = lpm.counterfactual(model, population, graph, arms, steps=16, seeds=seeds, posterior=posterior,
                                posterior_seed=2)
    point = lpm.counterfactual(model, population, graph, arms, steps=16, seeds=seeds)
    assert result.fixed_parameters.table.equals(point.table)
    draws = posterior.draw(len(seeds), 2)
    assert len({d["audience"] for d in draws}) == len(seeds)
    for seed, values in zip(seeds, draws):
        alone = _copy_with(model, values, apply_params)
        reference = lpm.counterfactual(alone, population, graph, arms, steps=16, seeds=[seed, 999])
        mine = result.table[result.table.seed == seed].reset_index(drop=True)
        theirs = reference.table[reference.table.seed == seed].reset_index(drop=True)
        assert mine.equals(theirs), (seed, mine, theirs)
    # scenario a * S + s of the trajectory is arm a, seed s, as without a posterior
    a, s = 1, 2
    reshares = result.trajectory["reshares"][-1, a * len(seeds) + s, 0]
    row = result.table[(result.table.arm == "label@2h") & (result.table.seed == seeds[s])]
    assert float(reshares) == float(row.final_reshares.iloc[0])
    table = interval_widening(result, "final_reshares")
    assert list(table.arm) == ["none", "label@2h"] and "widening" in table


def _copy_with(model, values, apply_params):
    import copy

    model = copy.deepcopy(model)
    apply_params(model, values)
    return model
