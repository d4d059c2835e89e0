"""The engine interface: every component follows one protocol, and a new one joins a model by
writing one class and naming it in ``Model(extra=...)``."""

from __future__ import annotations

import math
from typing import Optional

import pytest
import torch
from torch import Tensor

import lpm
from lpm import relax
from lpm.dynamics import BoundedConfidence, Cascade, EmotionContagion, Hawkes, Item, LinearThreshold
from lpm.dynamics.base import positive, softplus
from lpm.engine import Dynamics, DynamicsModule, StepContext, Updates
from lpm.errors import ConfigError, StateError
from lpm.graph import Graph
from lpm.rng import CounterRNG
from lpm.state import PopulationState
from lpm.testing import small_graph
from tests.helpers import make_state


class Fatigue(DynamicsModule):
    """Posting wears agents out: after the other components, activity traces decay by a further
    ``exp(-rate * dt / resilience_i)`` per step (a new dynamics module, written here in full)."""

    def __init__(self, rate: float = 0.3, resilience: Optional[Tensor] = None) -> None:
        super().__init__()
        self.raw_rate = positive("rate", rate)
        self.register_buffer("resilience", resilience)

    @property
    def rate(self) -> Tensor:
        return softplus(self.raw_rate)

    def check(self, state: PopulationState) -> None:
        if self.resilience is not None and self.resilience.numel() != state.num_agents:
            raise StateError(f"Expected a resilience for {state.num_agents} agents (got {self.resilience.numel()})")

    def forward(self, state: PopulationState, graph: Graph, ctx: StepContext) -> Updates:
        activity = ctx.updates.get("activity", state.activity)  # on top of this step's Hawkes update
        decay = self.rate * ctx.dt
        if self.resilience is not None:
            decay = decay / self.resilience.to(activity.dtype)
        return Updates(state={"activity": activity * torch.exp(-decay)})


def _state(n: int = 30) -> PopulationState:
    state = make_state(n, batch=2, seed=3)
    activity = torch.rand(2, n, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    return state.replace(activity=activity)


def test_fatigue_alone_is_exponential_decay():
    graph, state = small_graph(30, seed=1), _state()
    model = lpm.Model(extra={"fatigue": Fatigue(rate=0.3)}, dt=0.5).double()
    rate = float(model.fatigue.rate)  # 0.3 up to the float32 round trip of its raw parameter
    with torch.no_grad():
        final = lpm.simulate(model, state, graph, steps=10, seed=0, record={}).final
    torch.testing.assert_close(final.activity, state.activity * math.exp(-rate * 0.5 * 10), rtol=1e-12, atol=0)
    torch.testing.assert_close(final.opinion, state.opinion, rtol=0, atol=0)  # nothing else moves


def test_fatigue_composes_with_hawkes_in_the_same_step():
    """One step from the same state and draws: the same posts, and the Hawkes trace times the decay."""
    graph, state = small_graph(30, seed=1), _state()
    hawkes = Hawkes(mu=0.5, alpha=0.8, beta=1.2)
    plain = lpm.Model(activity=hawkes, dt=0.5).double()
    tired = lpm.Model(activity=hawkes, extra={"fatigue": Fatigue(rate=0.3)}, dt=0.5).double()
    rng = CounterRNG.from_seed(7, 2)
    with torch.no_grad():
        a, events_a = plain.step(state, graph, 3, rng, relax.Hard())
        b, events_b = tired.step(state, graph, 3, rng, relax.Hard())
    assert torch.equal(events_a.posts, events_b.posts) and float(events_a.posts.sum()) > 0
    rate = float(tired.fatigue.rate)
    torch.testing.assert_close(b.activity, a.activity * math.exp(-rate * 0.5), rtol=1e-12, atol=0)
    assert [name for name, _ in tired.components] == ["activity", "fatigue"]


def test_extra_component_is_registered_checked_and_trained():
    graph, state = small_graph(30, seed=1), _state()
    fatigue = Fatigue(rate=0.3)
    model = lpm.Model(activity=Hawkes(), extra={"fatigue": fatigue}, dt=0.5).double()
    assert "fatigue.raw_rate" in dict(model.named_parameters())
    assert model.with_interventions([]).extra == {"fatigue": fatigue}
    out = lpm.simulate(model, state, graph, steps=5, seed=0, estimator=relax.RelaxedBernoulli(0.5),
                       record={"activity": lpm.observables.activity_mean})
    out["activity"][-1].sum().backward()
    assert float(fatigue.raw_rate.grad) < 0  # more fatigue, less activity
    wrong = lpm.Model(extra={"fatigue": Fatigue(resilience=torch.ones(29, dtype=torch.float64))}).double()
    with pytest.raises(StateError, match="resilience for 30 agents .got 29"):
        lpm.simulate(wrong, state, graph, steps=1, seed=0)


def test_model_rejects_extra_components_it_cannot_hold():
    with pytest.raises(ConfigError, match="free identifiers"):
        lpm.Model(extra={"opinion": Fatigue()})
    with pytest.raises(ConfigError, match="free identifiers"):
        lpm.Model(extra={"not a name": Fatigue()})
    with pytest.raises(ConfigError, match="lpm.engine.Dynamics"):
        lpm.Model(extra={"fatigue": torch.nn.Linear(2, 2)})


def test_every_builtin_component_follows_the_protocol_in_step_order():
    items = [Item(source=0)]
    model = lpm.Model(opinion=BoundedConfidence(), emotion=EmotionContagion(), activity=Hawkes(),
                      cascade=Cascade(items), extra={"fatigue": Fatigue()})
    assert [name for name, _ in model.components] == ["activity", "opinion", "emotion", "cascade", "fatigue"]
    assert all(isinstance(component, Dynamics) for _, component in model.components)
    assert isinstance(LinearThreshold(items), Dynamics)


def test_cascade_check_names_missing_cascade_state():
    state = make_state(10, batch=1)
    cascade = Cascade([Item(source=0), Item(source=1)])
    with pytest.raises(StateError, match="cascade state for 2 items .got none"):
        cascade.check(state)
    ready = cascade.init_state(state)
    cascade.check(ready)
    assert ready.num_items == 2 and ready.cascade.parent.dtype == torch.int64
    with pytest.raises(StateError, match="cascade state for 2 items .got 1"):
        cascade.check(lpm.dynamics.init_cascade_state(state, 1))
