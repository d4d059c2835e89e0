"""Emotion dynamics: decay and shocks in closed form, momentum as a linear recurrence, gradcheck."""

from __future__ import annotations

import pytest
import torch

from lpm.dynamics import EmotionContagion, Shock
from lpm.errors import ConfigError
from lpm.testing import assert_permutation_equivariant, small_graph, step_context
from tests.helpers import gradcheck_parameters, make_state

DT = 0.25


def run(model, state, graph, steps, seen=None, t0=0):
    for t in range(t0, t0 + steps):
        e, v = model.next_emotion(state, graph, t * DT, DT, seen)
        state = state.replace(emotion=e, emotion_velocity=v)
    return state


def test_first_order_decay_and_shock_closed_form():
    """With nothing seen: e_t = e* + (e_0 - e*) (1 - dt decay)^t, e* = baseline + gain * impulse / decay."""
    graph = small_graph(20, 3.0, seed=0)
    state = make_state(20, seed=0)
    model = EmotionContagion(coupling=1.0, decay=0.3, baseline=[0.1, -0.2],
                             shocks=[Shock(0.0, 1e9, impulse=[-0.5, 0.4])]).double()
    seen = torch.zeros(2, 20, dtype=torch.float64)
    out = run(model, state, graph, 30, seen)
    decay, gain = float(model.decay.detach()), float(model.shock_gain.detach())
    fixed = model.baseline + gain * torch.tensor([-0.5, 0.4], dtype=torch.float64) / decay
    expected = fixed + (state.emotion - fixed) * (1 - DT * decay) ** 30
    torch.testing.assert_close(out.emotion, expected, atol=1e-12, rtol=1e-10)


def test_second_order_is_the_linear_recurrence():
    graph = small_graph(10, 2.0, seed=1)
    state = make_state(10, seed=1)
    model = EmotionContagion(decay=0.5, order=2, momentum=0.7).double()
    out = run(model, state, graph, 40, torch.zeros(2, 10, dtype=torch.float64))
    m, d = float(model.momentum.detach()), float(model.decay.detach())
    # [e, v]' = M [e, v] with v' = m v - dt d e, e' = e + v'
    transition = torch.tensor([[1 - DT * d, m], [-DT * d, m]], dtype=torch.float64)
    ev = torch.stack([state.emotion, state.emotion_velocity], -1)[..., None]
    expected = (torch.linalg.matrix_power(transition, 40) @ ev)[..., 0, 0]
    torch.testing.assert_close(out.emotion, expected, atol=1e-12, rtol=1e-10)
    # momentum overshoots: emotions cross the (zero) baseline, which first-order decay never does
    seen = torch.zeros(2, 10, dtype=torch.float64)
    crossed_second = crossed_first = False
    s2 = s1 = state
    first = EmotionContagion(decay=0.5, order=1).double()
    for _ in range(20):
        s2, s1 = run(model, s2, graph, 1, seen), run(first, s1, graph, 1, seen)
        crossed_second |= bool(torch.any(torch.sign(s2.emotion) != torch.sign(state.emotion)))
        crossed_first |= bool(torch.any(torch.sign(s1.emotion) != torch.sign(state.emotion)))
    assert crossed_second and not crossed_first


def test_contagion_pulls_toward_consensus_without_decay():
    graph = small_graph(60, 5.0, seed=2, isolated=0)
    state = make_state(60, seed=2)
    model = EmotionContagion(coupling=2.0, decay=1e-9).double()
    out = run(model, state, graph, 200)
    assert torch.all(out.emotion.var(1) < 0.05 * state.emotion.var(1))


def test_shock_targets_only_hit_targets():
    graph = small_graph(20, 3.0, seed=3)
    state = make_state(20, seed=3)
    targets = torch.zeros(20, dtype=torch.bool)
    targets[:5] = True
    base = EmotionContagion(decay=0.2).double()
    shocked = EmotionContagion(decay=0.2, shocks=[Shock(0.0, 2.0, [-1.0, 1.0], targets=targets)]).double()
    seen = torch.zeros(2, 20, dtype=torch.float64)
    a, b = run(base, state, graph, 4, seen), run(shocked, state, graph, 4, seen)
    assert torch.equal(a.emotion[:, 5:], b.emotion[:, 5:])
    assert torch.all(b.emotion[:, :5, 0] < a.emotion[:, :5, 0]) and torch.all(b.emotion[:, :5, 1] > a.emotion[:, :5, 1])
    # outside the window the shock is off
    late = run(shocked, state, graph, 4, seen, t0=100)
    assert torch.equal(run(base, state, graph, 4, seen, t0=100).emotion, late.emotion)


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("gated", [False, True])
def test_emotion_gradcheck(order, gated):
    graph = small_graph(8, 2.0, seed=4, weighted=True)
    state = make_state(8, seed=4)
    velocity = 0.1 * torch.randn(state.emotion.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    state = state.replace(emotion_velocity=velocity)  # with zero velocity the momentum has no gradient
    seen = torch.rand(2, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(6)) if gated else None
    model = EmotionContagion(0.7, 0.2, order=order, shocks=[Shock(0.0, 5.0, [0.3, -0.2])])
    ctx = step_context(state, time_h=1.0, dt=DT, seen=seen)
    assert gradcheck_parameters(model, lambda call: torch.cat(list(call(state, graph, ctx).state.values()), -1))


def test_emotion_permutation_equivariant():
    graph = small_graph(30, 3.0, seed=5)
    model = EmotionContagion(order=2).double()
    assert_permutation_equivariant(lambda s, g: model.next_emotion(s, g, 0.0, DT)[0], make_state(30, seed=5), graph)


@pytest.mark.parametrize("bad", [
    lambda: EmotionContagion(order=3), lambda: EmotionContagion(coupling=0.0), lambda: EmotionContagion(momentum=1.0),
    lambda: Shock(0.0, 0.0, [1.0]), lambda: Shock(0.0, 1.0, []), lambda: Shock(0.0, 1.0, [1.0], targets=torch.zeros(3)),
])
def test_emotion_rejects_bad_config(bad):
    with pytest.raises(ConfigError, match="Expected"):
        bad()
