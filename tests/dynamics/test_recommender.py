"""Recommender feeds: the candidate graph, ranker weights, mixing, and the polarization they cause."""

from __future__ import annotations

import pytest
import torch

import lpm
from lpm import metrics
from lpm.dynamics import BoundedConfidence, Feed, FriedkinJohnsen, Hawkes
from lpm.errors import ConfigError
from lpm.testing import small_graph
from tests.helpers import make_state


def test_candidate_graph_is_uniform_over_other_agents_and_batch_free():
    feed = Feed(0.6, candidates=8)
    graph = feed.candidate_graph(50, t=3, device=torch.device("cpu"))
    assert graph.num_edges <= 50 * 8 and torch.all(graph.in_degree() <= 8)
    assert not torch.any(graph.col.long() == graph.row)  # never yourself
    counts = torch.zeros(50)
    for t in range(400):
        counts += torch.bincount(feed.candidate_graph(50, t, torch.device("cpu")).col.long(), minlength=50)
    share = counts / counts.sum()
    assert float((share - 1 / 50).abs().max()) < 0.006  # 160k draws: s.e. of each share ~3.5e-4
    assert torch.equal(feed.candidate_graph(50, 3, torch.device("cpu")).col, graph.col)
    assert Feed(1.0).candidate_graph(50, 3, torch.device("cpu")) is None


def test_personalized_ranker_weights_and_mix():
    kernel = Feed(ranker="interest", personalization=2.0).double().ranker_kernel()
    d = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    gamma = float(kernel.gamma.detach())
    torch.testing.assert_close(kernel.weight(d, torch.zeros(3, dtype=torch.long)), torch.exp(-gamma * d))
    assert Feed(ranker="chronological").ranker_kernel() is None
    feed = Feed(0.25).double()
    a = float(feed.in_network.detach())
    base, inside, outside = (torch.full((2,), v, dtype=torch.float64) for v in (0.0, 1.0, -2.0))
    torch.testing.assert_close(feed.mix(base, inside, outside), torch.full((2,), a - 2 * (1 - a), dtype=torch.float64))


def test_feed_gradcheck_through_a_step():
    graph = small_graph(10, 3.0, seed=1)
    state = make_state(10, batch=1, seed=1)
    rng = lpm.rng.CounterRNG.from_seed(0, 1)

    class Step(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = lpm.Model(opinion=BoundedConfidence(0.6, 0.5, tau=0.2),
                                   feed=Feed(0.6, "personalized", personalization=1.5, candidates=3), dt=0.5).double()

        def forward(self) -> torch.Tensor:
            return self.model.step(state, graph, 2, rng)[0].opinion

    step = Step()
    names = [n for n, _ in step.named_parameters()]
    assert {"model.feed.raw_in_network", "model.feed.raw_personalization"} <= set(names)
    values = tuple(p.detach().clone().requires_grad_() for p in step.parameters())
    fn = lambda *params: torch.func.functional_call(step, dict(zip(names, params)), ())  # noqa: E731
    assert torch.autograd.gradcheck(fn, values)
    grads = torch.autograd.grad(fn(*values).sum(), values)
    assert all(float(g.abs()) > 0 for g in grads), "every feed and opinion parameter must get a gradient"


def homophilous_population(n: int = 4000):
    graph, block = lpm.Graph.sbm_homophily(n, 2, 10.0, 0.8, seed=0)
    x = (block.double() * 2 - 1) * 0.4 + 0.3 * torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    state = lpm.PopulationState.create(x.clamp(-1, 1).view(1, -1, 1).float(), torch.zeros(1, n, 2),
                                       traits=lpm.Traits.uniform(n, stubbornness=0.3))
    return graph, block, state


def run_feed(graph, state, ranker: str, gamma: float):
    model = lpm.Model(opinion=FriedkinJohnsen(0.5), activity=Hawkes(mu=0.3, alpha=0.3, rhythm_amplitude=None),
                      feed=Feed(0.5, ranker, personalization=gamma), dt=0.5)
    with torch.no_grad():
        return lpm.simulate(model, state, graph, steps=96, seed=0, record={}).final.opinion


def test_personalized_feed_polarizes_a_homophilous_network():
    """Stubborn agents on a two-community SBM (80% of follows within): ranking agreeable posts up keeps
    the communities apart. Polarization grows with personalization; the echo-chamber index is
    higher than under the chronological feed at moderate personalization."""
    graph, block, state = homophilous_population()
    chrono = run_feed(graph, state, "chronological", 1.0)
    variance, between = [metrics.polarization_variance(chrono)], [metrics.between_group_distance(chrono, block)]
    for gamma in (3.0, 10.0):
        x = run_feed(graph, state, "personalized", gamma)
        variance.append(metrics.polarization_variance(x))
        between.append(metrics.between_group_distance(x, block))
    assert variance == sorted(variance) and between == sorted(between)
    assert float(variance[-1]) > 1.3 * float(variance[0])
    echo_chrono = float(metrics.echo_chamber_index(chrono, graph))
    echo_personal = float(metrics.echo_chamber_index(run_feed(graph, state, "personalized", 10.0), graph))
    assert echo_personal > echo_chrono


def test_feed_rejects_bad_config():
    with pytest.raises(ConfigError, match="ranker"):
        Feed(ranker="viral")
    with pytest.raises(ConfigError, match="in_network"):
        Feed(in_network=0.0)
    with pytest.raises(ConfigError, match="candidates"):
        Feed(candidates=0)
    with pytest.raises(ConfigError, match="activity model"):
        lpm.Model(opinion=BoundedConfidence(), feed=Feed(ranker="hot"))
