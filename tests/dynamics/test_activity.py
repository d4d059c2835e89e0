"""Hawkes activity: stationary rate in closed form, branching ratio, rhythm and bursts, gradcheck."""

from __future__ import annotations

import math

import pytest
import torch

from lpm import relax
from lpm.dynamics import Burst, Hawkes
from lpm.errors import ConfigError
from lpm.graph import Graph
from lpm.rng import CounterRNG
from lpm.state import PopulationState, Traits
from lpm.testing import hawkes_stationary_rate, small_graph, step_context
from tests.helpers import gradcheck_parameters, make_state


def regular_follow_graph(n: int, k: int, seed: int) -> Graph:
    """Every agent follows k random others (so every agent has followees)."""
    gen = torch.Generator().manual_seed(seed)
    dst = torch.arange(n).repeat_interleave(k)
    src = (dst + 1 + torch.randint(0, n - 1, (n * k,), generator=gen)) % n
    return Graph.from_edge_index(torch.stack([src, dst]), n)


def test_branching_ratio_is_the_kernel_sum():
    model = Hawkes(alpha=0.4, beta=1.3).double()
    dt = 0.2
    alpha, beta = float(model.alpha.detach()), float(model.beta.detach())
    numeric = sum(alpha * dt * math.exp(-beta * dt * k) for k in range(2000))
    assert abs(float(model.branching_ratio(dt)) - numeric) < 1e-12
    assert abs(float(Hawkes(alpha=0.4, beta=1.3).double().branching_ratio(1e-5)) - 0.4 / 1.3) < 1e-4


def test_stationary_rate_matches_closed_form(device):
    """Mean posts per hour -> mu / (1 - n) on a graph where everyone has followees."""
    n, dt, steps, burn_in = 20000, 1.0 / 6.0, 3000, 300
    graph = regular_follow_graph(n, 10, seed=0).to(device)
    model = Hawkes(mu=0.01, alpha=0.5, beta=1.0, rhythm_amplitude=None).double().to(device)
    traits = Traits.uniform(n, dtype=torch.float64, device=device)
    state = PopulationState.create(torch.zeros(1, n, 1, dtype=torch.float64, device=device),
                                   torch.zeros(1, n, 2, dtype=torch.float64, device=device), traits=traits)
    rng = CounterRNG.from_seed(0, 1, device)
    total = 0.0
    with torch.no_grad():
        for t in range(steps):
            uniform = rng.uniform(t, 0, (n,), torch.float64)
            posts, trace, _ = model.draw_posts(state, graph, t * dt, dt, relax.Hard(), uniform)
            state = state.replace(activity=trace)
            if t >= burn_in:
                total += float(posts.sum())
    rate = total / (n * (steps - burn_in) * dt)
    expected = hawkes_stationary_rate(float(model.mu), float(model.branching_ratio(dt)))
    # Bernoulli-vs-Poisson bias ~ lambda dt / 2 ~ 0.2%; sampling error ~ 0.5% (2.4e5 events, clustered)
    assert abs(rate / expected - 1) < 0.03, (rate, expected)


def test_rhythm_and_bursts_modulate_baseline():
    model = Hawkes(mu=0.1, rhythm_amplitude=0.5, peak_hour=20.0, bursts=[Burst(30.0, 2.0, 4.0)]).double()
    amp = float(torch.sigmoid(model.raw_rhythm_amplitude).detach())
    assert abs(float(model.exogenous_factor(20.0)) - (1 + amp)) < 1e-12
    assert abs(float(model.exogenous_factor(8.0)) - (1 - amp)) < 1e-12
    assert abs(float(model.exogenous_factor(44.0)) - (1 + amp)) < 1e-12  # 24 h later
    inside = float(model.exogenous_factor(31.0))
    assert abs(inside - 4.0 * (1 + amp * math.cos(2 * math.pi * (31.0 - 20.0) / 24))) < 1e-12
    # mean over a day is 1
    day = sum(float(Hawkes(rhythm_amplitude=0.7).exogenous_factor(h / 10)) for h in range(240)) / 240
    assert abs(day - 1) < 1e-6


def test_isolated_agents_post_at_baseline():
    graph = small_graph(20, 3.0, seed=1, isolated=3)
    state = make_state(20, seed=1)
    model = Hawkes(mu=0.2, alpha=5.0, rhythm_amplitude=None).double()
    rate = model.intensity(state, graph, 0.0)
    torch.testing.assert_close(rate[:, -3:], float(model.mu.detach()) * state.traits.baseline_rate[:, -3:])


def test_hawkes_gradcheck():
    """Pathwise gradients through the relaxed events and the trace (straight-through is biased by
    design and checked in test_relax; its pathwise part is the intensity, which this covers too)."""
    estimator = relax.RelaxedBernoulli(0.5)
    graph = small_graph(8, 2.0, seed=2, weighted=True)
    state = make_state(8, seed=2)
    model = Hawkes(mu=0.5, alpha=0.8, beta=1.2, rhythm_amplitude=0.3)
    ctx = step_context(state, t=6, dt=0.5, seed=3, estimator=estimator)

    def fn(call):
        out = call(state, graph, ctx)
        return torch.cat([out.posts, out.state["activity"]], -1)

    assert gradcheck_parameters(model, fn)


@pytest.mark.parametrize("bad", [lambda: Hawkes(mu=0.0), lambda: Hawkes(beta=-1.0), lambda: Hawkes(rhythm_amplitude=1.0),
                                 lambda: Burst(0.0, -1.0, 2.0), lambda: Burst(0.0, 1.0, -2.0)])
def test_hawkes_rejects_bad_config(bad):
    with pytest.raises(ConfigError, match="Expected"):
        bad()
