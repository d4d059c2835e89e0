"""Small builders shared by the tests."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.func import functional_call

from lpm.state import PopulationState, Traits


def make_state(num_agents: int, *, batch: int = 2, topics: int = 2, emotions: int = 2, seed: int = 0,
               dtype=torch.float64, device="cpu", traits: Traits | None = None) -> PopulationState:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, num_agents, topics, generator=gen, dtype=dtype) * 1.8 - 0.9
    e = torch.randn(batch, num_agents, emotions, generator=gen, dtype=dtype) * 0.3
    activity = torch.rand(batch, num_agents, generator=gen, dtype=dtype)
    if traits is None:
        traits = Traits.sample(num_agents, seed=seed, batch=batch, dtype=dtype)
    return PopulationState.create(x.to(device), e.to(device), activity=activity.to(device), traits=traits.to(device))


def gradcheck_parameters(module: nn.Module, fn: Callable[[Callable[..., object]], torch.Tensor]) -> bool:
    """gradcheck of ``fn(call)`` with respect to every learnable parameter of ``module`` (float64).

    ``call(*args)`` runs ``module(*args)`` with the parameters under test swapped in.
    """
    module = module.double()
    names = [n for n, _ in module.named_parameters()]
    values = tuple(p.detach().clone().requires_grad_() for _, p in module.named_parameters())

    def wrapped(*params: torch.Tensor) -> torch.Tensor:
        overrides = dict(zip(names, params))
        return fn(lambda *args: functional_call(module, overrides, args))

    grads = torch.autograd.grad(wrapped(*values).sum(), values, allow_unused=True)
    for name, grad in zip(names, grads):  # an unused parameter would pass gradcheck trivially
        assert grad is not None and float(grad.abs().max()) > 0, f"no gradient reaches {name}"
    return torch.autograd.gradcheck(wrapped, values, atol=1e-6, rtol=1e-4)


def assert_gradients_match_finite_differences(module: nn.Module, loss: Callable[[], torch.Tensor], *,
                                              h: float = 1e-5, rtol: float = 1e-5) -> int:
    """Autograd vs central differences for every element of every parameter of ``module``.

    Each parameter must receive a non-zero, finite gradient. In float64, central differences have
    truncation error O(h^2) ~ 1e-10 and rounding error ~ 1e-16 |loss| / h ~ 1e-9, far inside
    ``rtol * max(1, |numeric|)``. Returns the number of elements checked.
    """
    module.zero_grad()
    loss().backward()
    checked = 0
    for name, param in module.named_parameters():
        if not param.requires_grad:  # frozen on purpose by the caller
            continue
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().max() > 1e-9, f"no gradient reaches {name}"
        flat = param.data.view(-1)
        for index in range(param.numel()):
            flat[index] += h
            up = float(loss())
            flat[index] -= 2 * h
            down = float(loss())
            flat[index] += h
            numeric = (up - down) / (2 * h)
            analytic = float(param.grad.view(-1)[index])
            assert abs(analytic - numeric) <= rtol * max(1.0, abs(numeric)), (name, index, analytic, numeric)
            checked += 1
    return checked


def assert_cascade_gradients_match_finite_differences(cascade: nn.Module, graph, loss_of_run: Callable, record: dict,
                                                      *, estimator=None, levels: bool = False, seed: int = 6) -> int:
    """:func:`assert_gradients_match_finite_differences` for a cascade model: 8 steps of 0.25 h in two
    scenarios from a random state (seed ``seed``), ``loss_of_run(run)`` of the recorded run, with the
    interest, arousal and alignment weights frozen (their gradients are tested in ``test_cascade``).
    Returns the number of parameter elements checked."""
    import lpm
    from lpm import relax
    from lpm.dynamics import init_cascade_state

    model = lpm.Model(cascade=cascade, dt=0.25).double()
    for name in ("interest_weight", "arousal_weight", "alignment_weight"):
        getattr(model.cascade, name).requires_grad_(False)
    state = init_cascade_state(make_state(graph.num_nodes, batch=2, seed=seed), cascade.num_items, levels=levels)
    estimator = relax.Expected() if estimator is None else estimator

    def loss():
        return loss_of_run(lpm.simulate(model, state, graph, steps=8, seed=[3, 4], estimator=estimator, record=record))

    return assert_gradients_match_finite_differences(model.cascade, loss)
