"""Opinion models against closed forms, the classic models they generalise, and gradcheck."""

from __future__ import annotations

import pytest
import torch

from lpm.dynamics import BiasedAssimilation, BoundedConfidence, Deffuant, DeGroot, FriedkinJohnsen
from lpm.errors import ConfigError
from lpm.state import PopulationState, Traits
from lpm.testing import (
    assert_batch_consistent,
    assert_permutation_equivariant,
    degroot_closed_form,
    friedkin_johnsen_fixed_point,
    hegselmann_krause_step,
    small_graph,
    step_context,
)
from tests.helpers import gradcheck_parameters, make_state


def uniform_state(x: torch.Tensor, **traits) -> PopulationState:
    batch, n, _ = x.shape
    t = Traits.uniform(n, batch=batch, dtype=x.dtype, device=x.device, **traits)
    return PopulationState.create(x, torch.zeros(batch, n, 2, dtype=x.dtype, device=x.device), traits=t)


def test_degroot_matches_matrix_power(device):
    graph = small_graph(30, 3.0, seed=0, weighted=True).to(device)
    x0 = torch.rand(1, 30, 2, dtype=torch.float64, device=device) * 2 - 1
    model = DeGroot(self_weight=0.3).double().to(device)
    state = uniform_state(x0)
    for _ in range(25):
        state = state.replace(opinion=model.next_opinion(state, graph))
    expected = degroot_closed_form(graph.to("cpu"), x0[0].cpu(), float(model.self_weight.detach()), 25)
    torch.testing.assert_close(state.opinion[0].cpu(), expected, atol=1e-12, rtol=1e-10)


def test_friedkin_johnsen_converges_to_fixed_point(device):
    graph = small_graph(30, 3.0, seed=1).to(device)
    gen = torch.Generator().manual_seed(1)
    x0 = (torch.rand(1, 30, 1, generator=gen, dtype=torch.float64) * 2 - 1).to(device)
    stubborn = torch.rand(1, 30, generator=gen, dtype=torch.float64).to(device)
    traits = Traits(torch.ones_like(stubborn), stubborn, torch.ones_like(stubborn), torch.ones_like(stubborn))
    state = PopulationState.create(x0, torch.zeros(1, 30, 2, dtype=torch.float64, device=device), traits=traits)
    model = FriedkinJohnsen(anchoring=0.6).double().to(device)
    for _ in range(400):
        state = state.replace(opinion=model.next_opinion(state, graph))
    expected = friedkin_johnsen_fixed_point(graph.to("cpu"), x0[0].cpu(), float(model.anchoring.detach()) * stubborn[0].cpu())
    # contraction factor <= 1 - min(anchor) per step; after 400 steps the residual is < 1e-10
    torch.testing.assert_close(state.opinion[0].cpu(), expected, atol=1e-9, rtol=0)


def test_bounded_confidence_is_classic_hk_in_the_limit(device):
    """rate -> 1 and tau -> 0 recover the hard Hegselmann-Krause step (opinions away from the boundary)."""
    graph = small_graph(40, 4.0, seed=2).to(device)
    x = torch.rand(1, 40, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64).to(device) * 2 - 1
    state = uniform_state(x)
    eps = 0.4
    model = BoundedConfidence(eps=eps, rate=1 - 1e-12, tau=1e-7).double().to(device)
    out = model.next_opinion(state, graph)
    expected = hegselmann_krause_step(graph.to("cpu"), x[0].cpu(), eps)
    torch.testing.assert_close(out[0].cpu(), expected, atol=1e-9, rtol=0)


def test_bounded_confidence_stays_in_range_and_contracts():
    graph = small_graph(50, 5.0, seed=3)
    state = make_state(50, seed=3)
    model = BoundedConfidence(eps=0.5, rate=0.9, tau=0.05).double()
    var0 = state.opinion.var(1)
    for _ in range(50):
        state = state.replace(opinion=model.next_opinion(state, graph))
    assert state.opinion.abs().max() <= 1.0
    assert torch.all(state.opinion.var(1) < var0)


def test_deffuant_moves_each_agent_toward_its_drawn_followee():
    graph = small_graph(20, 3.0, seed=4)
    state = uniform_state(torch.rand(1, 20, 1, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 2 - 1)
    uniform = torch.rand(1, 20, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    model = Deffuant(eps=0.5, rate=0.4, tau=1e-7).double()
    out = model.next_opinion(state, graph, None, uniform)
    rowptr, col = graph.rowptr.long(), graph.col.long()
    x = state.opinion[0, :, 0]
    for i in range(20):  # explicit per-agent reference on a tiny case
        deg = int(rowptr[i + 1] - rowptr[i])
        if deg == 0:
            assert out[0, i, 0] == x[i]
            continue
        j = int(col[rowptr[i] + int(uniform[0, i] * deg)])
        move = float(model.rate.detach()) * (x[j] - x[i]) if abs(x[j] - x[i]) < 0.5 else 0.0
        assert abs(float(out.detach()[0, i, 0]) - float(x[i] + move)) < 1e-9


def test_biased_assimilation_repels_distant_opinions():
    """Two agents following each other at -0.9 and 0.9 (distance > rho) are pushed apart to the bounds."""
    from lpm.graph import Graph

    graph = Graph.from_edge_index(torch.tensor([[0, 1], [1, 0]]), 2)
    state = uniform_state(torch.tensor([[[-0.6], [0.6]]], dtype=torch.float64))
    model = BiasedAssimilation(eps=0.3, rho=1.0, repulsion=1.0, rate=0.5, tau=0.01).double()
    for _ in range(20):
        state = state.replace(opinion=model.next_opinion(state, graph))
    torch.testing.assert_close(state.opinion[0, :, 0], torch.tensor([-1.0, 1.0], dtype=torch.float64))


@pytest.mark.parametrize("factory", [
    lambda: DeGroot(0.4), lambda: FriedkinJohnsen(0.3), lambda: BoundedConfidence(0.6, 0.5, tau=0.2),
    lambda: Deffuant(0.6, 0.5, tau=0.2), lambda: BiasedAssimilation(0.4, 1.0, 0.5, 0.5, tau=0.2),
])
@pytest.mark.parametrize("gated", [False, True])
def test_opinion_gradcheck(factory, gated):
    graph = small_graph(8, 2.0, seed=6, weighted=True)
    state = make_state(8, seed=6)
    seen = torch.rand(2, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(7)) if gated else None
    ctx = step_context(state, t=3, seed=8, seen=seen)  # Deffuant draws its partners from ctx.rng
    assert gradcheck_parameters(factory(), lambda call: call(state, graph, ctx).state["opinion"])


@pytest.mark.parametrize("factory", [lambda: DeGroot(0.4), lambda: BoundedConfidence(0.6), lambda: BiasedAssimilation()])
def test_opinion_permutation_and_batch_invariance(factory):
    graph = small_graph(30, 3.0, seed=9)
    model = factory().double()
    state = make_state(30, batch=3, seed=9)
    assert_permutation_equivariant(lambda s, g: model.next_opinion(s, g), state, graph)
    assert_batch_consistent(lambda s: model.next_opinion(s, graph), state)


@pytest.mark.parametrize("bad", [
    lambda: DeGroot(self_weight=1.5), lambda: BoundedConfidence(eps=-0.1), lambda: BoundedConfidence(tau=0),
    lambda: Deffuant(rate=0.0), lambda: BiasedAssimilation(eps=0.8, rho=0.5),
])
def test_opinion_rejects_bad_config(bad):
    with pytest.raises(ConfigError, match="Expected"):
        bad()
