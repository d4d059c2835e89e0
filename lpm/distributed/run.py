"""Simulating one population split across ranks: restrict the inputs, step, reduce the observables.

Each rank runs the ordinary :meth:`lpm.Model.step` on its agents' state and a
:class:`~lpm.distributed.PartitionedGraph`; the hot ops exchange halo states, and draws are keyed
by global agent id (:class:`~lpm.distributed.rng.AgentRNG`), so the ranks together compute the
single-process trajectory. Observables are sums over agents, added across ranks; a loss built from
them is the same number on every rank, and :func:`sync_gradients` adds the ranks' parameter gradients
into the single-process gradient.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Callable, Mapping, Optional

import torch
import torch.distributed as dist
from torch import Tensor, nn

from lpm.dynamics.emotion import EmotionContagion
from lpm.errors import ConfigError, StateError
from lpm.model import Model, StepEvents
from lpm.relax import Estimator, StraightThrough
from lpm.rng import CounterRNG
from lpm.simulate import Trajectory
from lpm.state import PopulationState

from .halo import PartitionedGraph
from .rng import AgentRNG

__all__ = ["Total", "TOTALS", "local_state", "localize_model", "gather_agents", "simulate_partitioned",
           "sync_gradients", "all_reduce_sum"]


class _ReplicatedSum(torch.autograd.Function):
    """Sum over ranks; the result is used identically on every rank, so each rank's part has gradient
    ``d loss / d sum`` (the identity backward); :func:`sync_gradients` adds the ranks' shares."""

    @staticmethod
    def forward(ctx, x: Tensor, group) -> Tensor:
        out = x.detach().clone().contiguous()
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad, None


def all_reduce_sum(x: Tensor, group=None) -> Tensor:
    """``sum over ranks of x``, differentiable (see :func:`sync_gradients` for the gradients)."""
    return _ReplicatedSum.apply(x, group)


@dataclass(frozen=True)
class Total:
    """An observable additive over agents: ``fn(state, events)`` is the ``(B, ...)`` sum over this rank's
    agents; the ranks' sums are added, and divided by the population size when ``mean``."""

    fn: Callable[[PopulationState, StepEvents], Tensor]
    mean: bool = True


def _posts(state: PopulationState, events: StepEvents) -> Tensor:
    return state.activity.new_zeros(state.batch_size) if events.posts is None else events.posts.sum(1)


#: The additive ones among :data:`lpm.observables.DEFAULT` (polarization, a sorted statistic, and the
#: variance are not sums over agents), plus the mean Hawkes trace.
TOTALS: Mapping[str, Total] = {
    "opinion_mean": Total(lambda s, e: s.opinion.sum(1)),
    "emotion_mean": Total(lambda s, e: s.emotion.sum(1)),
    "negative_share": Total(lambda s, e: torch.sigmoid((-s.emotion[..., 0] - 0.1) / 0.02).sum(1)),
    "posts": Total(_posts, mean=False),
    "activity_mean": Total(lambda s, e: s.activity.sum(1)),
}


def local_state(state: PopulationState, agents: Tensor) -> PopulationState:
    """The agents ``agents`` (global ids) of a whole population's state, in that order.

    Raises:
        StateError: a state with cascade items (per-item tensors are not split across ranks here).
    """
    if state.cascade is not None:
        raise StateError("Expected a state without cascade items on a partitioned population (got one)")
    index = agents.to(state.device)
    return PopulationState.from_flat([t.index_select(1, index) for t in state.flat()], like=state)


def localize_model(model: Model, agents: Tensor, num_agents: int) -> Model:
    """A copy of ``model`` for the agents ``agents`` of ``num_agents``: per-agent buffers (first
    dimension ``num_agents``) and shock targets are restricted to them; parameters are copied as they
    are (replicated on every rank).

    Raises:
        ConfigError: a parameter with one entry per agent (it would have to be split, not replicated).
    """
    local = copy.deepcopy(model)
    index = agents.long()
    for module in local.modules():
        for name, param in module.named_parameters(recurse=False):
            if param.dim() >= 1 and param.size(0) == num_agents:
                raise ConfigError(f"Expected replicated parameters on a partitioned population (got {name!r} "
                                  f"with one entry per agent)")
        for name, buffer in list(module._buffers.items()):
            if buffer is not None and buffer.dim() >= 1 and buffer.size(0) == num_agents:
                module._buffers[name] = buffer.index_select(0, index.to(buffer.device))
        if isinstance(module, EmotionContagion):
            module.shocks = tuple(shock if shock.targets is None else
                                  dataclasses.replace(shock, targets=shock.targets[index.to(shock.targets.device)])
                                  for shock in module.shocks)
    return local


def gather_agents(x: Tensor, graph: PartitionedGraph) -> Tensor:
    """The whole population's ``x`` on every rank, from each rank's agents (for checks and small
    runs: it moves every agent's row to every rank). Not differentiable.

    Shapes:
        x: ``(B, n, ...)`` this rank's agents; returns ``(B, N, ...)`` in global order.
    """
    layout = graph.layout
    sizes = [torch.zeros((), dtype=torch.int64) for _ in range(layout.parts)]
    dist.all_gather(sizes, torch.tensor(layout.num_local), group=graph.group)
    width = int(max(sizes))
    pad = x.new_zeros((x.size(0), width, *x.shape[2:]))
    pad[:, : x.size(1)] = x.detach()
    ids = torch.full((width,), -1, dtype=torch.int64)
    ids[: layout.num_local] = layout.agents.cpu()
    rows = [torch.empty_like(pad) for _ in sizes]
    all_ids = [torch.empty_like(ids) for _ in sizes]
    dist.all_gather(rows, pad.contiguous(), group=graph.group)
    dist.all_gather(all_ids, ids, group=graph.group)
    out = x.new_zeros((x.size(0), layout.num_agents, *x.shape[2:]))
    for part, (block, agent) in enumerate(zip(rows, all_ids)):
        count = int(sizes[part])
        out[:, agent[:count].to(x.device)] = block[:, :count]
    return out


def simulate_partitioned(model: Model, state: PopulationState, graph: PartitionedGraph, *, steps: int, seed,
                         record: Optional[Mapping[str, Total]] = None,
                         estimator: Estimator = StraightThrough()) -> Trajectory:
    """:func:`lpm.simulate` for this rank's share of a partitioned population (call on every rank).

    Args:
        model: this rank's model (:func:`localize_model`), same parameters on every rank.
        state: this rank's agents' state (:func:`local_state`).
        graph: this rank's :class:`PartitionedGraph`.
        steps: number of steps.
        seed: as for :func:`lpm.simulate` (an int or ``B`` seeds); the same on every rank.
        record: additive observables (default :data:`TOTALS`), reduced over ranks each step.
        estimator: how discrete events are sampled and differentiated.

    Returns:
        A :class:`~lpm.simulate.Trajectory` whose observables cover the whole population (the same on
        every rank) and whose ``final`` state is this rank's agents'.

    Raises:
        ConfigError, StateError: mismatched graph, state or model.

    Shapes:
        state: ``(B, n, ...)`` with ``n = graph.num_nodes``; observables ``(steps + 1, B, ...)``.
    """
    if not isinstance(graph, PartitionedGraph):
        raise ConfigError(f"Expected a PartitionedGraph (got {type(graph).__name__})")
    if not isinstance(model, Model):
        raise ConfigError(f"Expected 'model' to be lpm.Model (got {type(model).__name__})")
    if not isinstance(state, PopulationState) or state.num_agents != graph.num_nodes:
        found = state.num_agents if isinstance(state, PopulationState) else type(state).__name__
        raise StateError(f"Expected this rank's state of {graph.num_nodes} agents (got {found})")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ConfigError(f"Expected 'steps' to be a non-negative int (got {steps!r})")
    record = TOTALS if record is None else record
    state = model.init_state(state)
    model.check(state)
    state.validate()
    base = CounterRNG.from_seed(seed, state.batch_size, state.device)
    rng = AgentRNG(base.seeds, graph.agents.to(state.device))
    total = graph.layout.num_agents

    def observe(s: PopulationState, events: StepEvents) -> list[Tensor]:
        out = []
        for spec in record.values():
            value = all_reduce_sum(spec.fn(s, events), graph.group)
            out.append(value / total if spec.mean else value)
        return out

    rows = [observe(state, StepEvents())]
    for t in range(steps):
        state, events = model.step(state, graph, t, rng, estimator)
        rows.append(observe(state, events))
    values = {name: torch.stack([row[k] for row in rows]) for k, name in enumerate(record)}
    times = torch.arange(steps + 1, dtype=torch.float64) * model.dt
    return Trajectory(times_h=times, values=values, final=state, dt=model.dt)


def sync_gradients(module: nn.Module, group=None) -> None:
    """Add every parameter's gradient over the ranks (after ``backward`` of a loss built from
    :func:`all_reduce_sum` or :func:`simulate_partitioned`'s observables): each rank then holds the
    gradient of the single-process run."""
    for param in module.parameters():
        if param.grad is not None:
            dist.all_reduce(param.grad, group=group)
