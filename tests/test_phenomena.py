"""Phenomena a social-media model must reproduce (generated graphs, fixed seeds, tolerant bounds)."""

from __future__ import annotations

import torch

import lpm
from lpm import metrics, relax
from lpm.dynamics import Cascade, Item


def cascade_sizes(graph: lpm.Graph, p: float, sources: list[int]) -> torch.Tensor:
    model = lpm.Model(cascade=Cascade.independent_cascade([Item(source=s) for s in sources], p, record_trees=False),
                      dt=1.0)
    with torch.no_grad():
        traj = lpm.simulate(model, lpm.PopulationState.sample(graph.num_nodes, seed=0), graph, steps=60, seed=0,
                            record={}, estimator=relax.Hard())
    assert float(traj.final.frontier.sum()) == 0, "cascades must have stopped"
    return traj.final.reshared.sum(1)[0]


def test_cascade_sizes_are_heavy_tailed_near_the_critical_point():
    graph = lpm.Graph.barabasi_albert(3000, 2, seed=0)
    degree = graph.out_degree().double()
    critical = float(degree.mean() / ((degree**2).mean() - degree.mean()))  # 1 / (kappa - 1), mean field
    sources = torch.randint(0, 3000, (1000,), generator=torch.Generator().manual_seed(0)).tolist()
    near = cascade_sizes(graph, 1.6 * critical, sources)  # finite-size critical point sits above mean field
    # no goodness-of-fit bootstrap: a 3000-agent graph cuts the tail off, so the p-value is small
    fit = metrics.fit_power_law(near.numpy(), resamples=0)
    assert 1.5 <= fit.alpha <= 3.5, fit
    assert fit.vs_exponential.favours() == "power_law", fit  # heavier than any exponential tail
    assert fit.n_tail >= 100 and float(near.max()) >= 30 * fit.x_min, fit  # over more than 1.5 decades
    below = cascade_sizes(graph, 0.3 * critical, sources)
    assert float(below.max()) < 0.1 * float(near.max())  # subcritical: no heavy tail


def test_friendship_paradox_on_scale_free_graphs():
    assert metrics.friendship_paradox(lpm.Graph.holme_kim(5000, 3, 0.3, seed=1)) > 1.5
