"""The fused backward of the second-order emotion update (:mod:`lpm.kernels.cpu.emotion`): the same
forward bits as the plain chain, gradients equal to autograd's and to finite differences, and the
inputs it leaves to autograd."""

from __future__ import annotations

import pytest
import torch

from lpm.dynamics import EmotionContagion, Shock
from lpm.kernels import cpu
from lpm.kernels.cpu.emotion import fused_emotion_update
from lpm.state import PopulationState
from lpm.testing import small_graph

DT = 0.37


def make_chain(susceptibility, baseline, shock):
    """The update as :class:`lpm.dynamics.EmotionContagion` writes it, independently of it."""

    def chain(e, v, pull, weight, coupling, decay, momentum, gain, drive):
        force = coupling * susceptibility[..., None] * pull / (1 + weight)
        force = force - decay * (e - (baseline if baseline is not None else e.new_zeros(())))
        if shock is not None:
            force = force + gain * shock
        if drive is not None:
            force = force + drive
        velocity = momentum * v + DT * force
        return e + velocity, velocity

    return chain


def inputs(batch, n, dim, dtype, gen, *, shock_kind, with_drive, batch_traits):
    def rand(*shape, low=-1.0, high=1.0):
        return (torch.rand(*shape, generator=gen, dtype=torch.float64) * (high - low) + low).to(dtype)

    state = [rand(batch, n, dim), rand(batch, n, dim), rand(batch, n, dim), rand(batch, n, 1, low=0.0, high=3.0)]
    params = [rand((), low=0.2, high=0.9) for _ in range(3)]  # coupling, decay, momentum
    shock = {"none": None, "per_agent": rand(n, dim), "impulse": rand(dim)}[shock_kind]
    gain = None if shock is None else rand((), low=0.5, high=1.5)
    drive = rand(batch, n, dim) if with_drive else None
    susceptibility = rand(batch, n, low=0.0) if batch_traits else rand(n, low=0.0)
    baseline = rand(dim) if shock_kind == "per_agent" else None
    return state, params, gain, drive, susceptibility, shock, baseline


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shock_kind", ["none", "per_agent", "impulse"])
@pytest.mark.parametrize("with_drive, batch_traits", [(False, False), (True, True)])
def test_forward_bits_and_gradients_match_autograd(dtype, shock_kind, with_drive, batch_traits):
    gen = torch.Generator().manual_seed(3)
    state, params, gain, drive, susceptibility, shock, baseline = inputs(
        3, 40, 2, dtype, gen, shock_kind=shock_kind, with_drive=with_drive, batch_traits=batch_traits)
    chain = make_chain(susceptibility, baseline, shock)
    tol = dict(atol=1e-12, rtol=1e-10) if dtype == torch.float64 else dict(atol=2e-5, rtol=2e-5)
    proj = [torch.rand(3, 40, 2, generator=gen, dtype=torch.float64).to(dtype) for _ in range(2)]
    results = []
    for fused in (True, False):
        leaves = [t.clone().requires_grad_() for t in state + params]
        extra = [t.clone().requires_grad_() for t in (gain, drive) if t is not None]
        g, d = (extra.pop(0) if gain is not None else None), (extra.pop(0) if drive is not None else None)
        args = (*leaves, g, d)
        if fused:
            out = fused_emotion_update(chain, *leaves[:4], susceptibility, *leaves[4:], g, shock, baseline, d, DT)
            assert out is not None
        else:
            out = chain(*args)
        loss = (out[0] * proj[0]).sum() + (out[1] * proj[1]).sum()
        wrt = [t for t in args if t is not None]
        results.append(([o.detach() for o in out], torch.autograd.grad(loss, wrt)))
    (out_fused, grads_fused), (out_ref, grads_ref) = results
    for a, b in zip(out_fused, out_ref):
        assert torch.equal(a, b)  # the same chain, op for op
    for a, b in zip(grads_fused, grads_ref):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, **tol)


def test_gradcheck():
    gen = torch.Generator().manual_seed(4)
    state, params, gain, drive, susceptibility, shock, baseline = inputs(
        2, 6, 2, torch.float64, gen, shock_kind="per_agent", with_drive=True, batch_traits=True)
    chain = make_chain(susceptibility, baseline, shock)
    drive = drive[:1]  # broadcast over the batch: its gradient is summed

    def fn(e, v, pull, weight, coupling, decay, momentum, gain, drive):
        out = fused_emotion_update(chain, e, v, pull, weight, susceptibility, coupling, decay, momentum, gain, shock,
                                   baseline, drive, DT)
        return torch.cat(out, -1)

    leaves = [t.clone().requires_grad_() for t in (*state, *params, gain, drive)]
    assert torch.autograd.gradcheck(fn, leaves)


def test_left_to_autograd_where_it_does_not_apply():
    gen = torch.Generator().manual_seed(5)
    state, params, _, _, susceptibility, _, _ = inputs(1, 10, 2, torch.float64, gen, shock_kind="none",
                                                       with_drive=False, batch_traits=False)
    chain = make_chain(susceptibility, None, None)
    leaves = [t.clone().requires_grad_() for t in params]
    assert fused_emotion_update(chain, *state, susceptibility, *params, None, None, None, None, DT) is None  # no grad
    with torch.no_grad():
        assert fused_emotion_update(chain, *state, susceptibility, *leaves, None, None, None, None, DT) is None
    with cpu.disabled():
        assert fused_emotion_update(chain, *state, susceptibility, *leaves, None, None, None, None, DT) is None
    learnt = susceptibility.clone().requires_grad_()
    assert fused_emotion_update(chain, *state, learnt, *leaves, None, None, None, None, DT) is None
    wider = torch.rand(2, 1, 10, 2, dtype=torch.float64)  # would broadcast the state to another shape
    assert fused_emotion_update(chain, *state, susceptibility, *leaves, None, None, None, wider, DT) is None
    assert fused_emotion_update(chain, *state, susceptibility, *leaves, None, None, None, None, DT) is not None


def test_emotion_contagion_during_a_shock_is_unchanged():
    """EmotionContagion through the dispatch, inside a shock's window with a baseline and a drive:
    the same next state with and without the fast path, and the same parameter gradients."""
    graph = small_graph(50, 4.0, seed=8)
    gen = torch.Generator().manual_seed(9)
    targets = torch.rand(50, generator=gen) < 0.5
    state = PopulationState.sample(50, seed=1, batch=2, topics=1, emotions=2).to(dtype=torch.float64)
    state = state.replace(emotion_velocity=torch.rand(2, 50, 2, generator=gen, dtype=torch.float64) - 0.5)
    seen = (torch.rand(2, 50, generator=gen, dtype=torch.float64) < 0.4).double().requires_grad_()
    drive = torch.rand(2, 50, 2, generator=gen, dtype=torch.float64)
    results = []
    for enabled in (True, False):
        module = EmotionContagion(0.6, 0.15, order=2, momentum=0.3, baseline=(0.1, -0.2),
                                  shocks=[Shock(1.0, 5.0, (-0.6, 0.8), targets)]).double()
        source = seen.detach().clone().requires_grad_()
        with torch.enable_grad() if enabled else cpu.disabled():
            e, v = module.next_emotion(state, graph, 2.0, 1.0 / 3.0, source, drive)
            loss = (e * drive).sum() + v.pow(2).sum()
            grads = torch.autograd.grad(loss, [source, *module.parameters()])
        results.append(((e.detach(), v.detach()), grads))
    (out_fast, grads_fast), (out_ref, grads_ref) = results
    for a, b in zip(out_fast, out_ref):
        assert torch.equal(a, b)
    assert grads_ref[-1].abs() > 0  # the shock's gain learns
    for a, b in zip(grads_fast, grads_ref):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)
