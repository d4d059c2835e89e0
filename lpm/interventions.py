"""Interventions: time-scheduled, composable, differentiable in strength and timing.

Each intervention turns the time ``t`` into *effects* the dynamics read in the step:

* ``reshare_logit``  ``(B, N, C)``-broadcastable offset of the reshare logit (labels, rebuttals, prebunking);
* ``exposure_scale`` ``(B, 1, C)`` multiplier of how visible an item is in feeds (downranking);
* ``source_gate``    ``(B, N)`` multiplier of whether an agent's posts reach anyone (suspension);
* ``edge_scale``     ``(B, E)`` multiplier per follow edge (edge blocking), kept factored as
  :class:`EdgeGates` while only edge blocking sets it;
* ``emotion_drive``  ``(B, N, E)`` added to the emotion force (guidance messages);
* ``opinion_rate`` / ``opinion_pull`` ``(B, N, T)``: pulls of opinions toward targets, as the sums
  ``sum_k r_k`` and ``sum_k r_k target_k`` over the active pulls, so the update
  ``x + sum_k r_k (target_k - x) = x + pull - rate * x`` combines concurrent messages exactly
  (rational guidance);
* ``personalization`` ``(B, 1, 1)`` added to the feed ranker's personalization (recommender changes).

Timing enters through a smooth step ``sigmoid((t - at) / width)``, so the gradient of an outcome with
respect to a start time exists; strengths are stored unconstrained behind softplus/sigmoid.
Effects compose: logits and drives add, scales and gates multiply.

Every intervention can be restricted to some scenarios of the batch (``scenarios``: a ``(B,)``
bool mask), which is how :func:`lpm.counterfactual` runs several arms in one batch.
"""

from __future__ import annotations

import math
import numbers
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from lpm import kernels
# the effect types live below dynamics and interventions; re-exported here, where users look for them
from lpm.effects import EdgeGates, Effects, Shape, dense_edge_scale, smooth_elapsed, smooth_step  # noqa: F401
from lpm.errors import ConfigError
from lpm.params import positive, softplus, unit_interval

__all__ = [
    "Effects",
    "EdgeGates",
    "Intervention",
    "FactCheckLabel",
    "Rebuttal",
    "Downranking",
    "Suspension",
    "EdgeBlocking",
    "Prebunking",
    "GuidanceMessage",
    "RecommenderChange",
    "InterventionPlan",
    "smooth_step",
    "smooth_elapsed",
]


def _agent_mask(agents: Sequence[int] | Tensor, num_agents: int, name: str) -> Tensor:
    index = torch.as_tensor(agents, dtype=torch.int64).reshape(-1)
    if index.numel() == 0:
        raise ConfigError(f"Expected at least one agent for {name} (got none)")
    if int(index.min()) < 0 or int(index.max()) >= num_agents:
        raise ConfigError(f"Expected {name} agent ids in [0, {num_agents}) (got [{int(index.min())}, {int(index.max())}])")
    mask = torch.zeros(num_agents)
    mask[index] = 1.0
    return mask


def _reached_by(sources: Sequence[int], graph, name: str) -> Tensor:
    """``(N,)`` float mask of the accounts ``sources`` and their followers (who see their posts)."""
    official = _agent_mask(sources, graph.num_nodes, name)
    followers = kernels.neighbor_sum(graph, official.to(graph.device).view(1, -1, 1))[0, :, 0].cpu() > 0
    return (followers | (official > 0)).float()


class Intervention(nn.Module):
    """Base class: a start time ``at`` (hours, learnable), a smooth-step ``width``, a scenario mask."""

    def __init__(self, at: float, width: float = 0.25, scenarios: Optional[Tensor] = None) -> None:
        super().__init__()
        if not width > 0:
            raise ConfigError(f"Expected a positive smooth-step width in hours (got {width})")
        try:
            start = float(at) if not isinstance(at, bool) else math.nan
        except (TypeError, ValueError):
            start = math.nan
        if not math.isfinite(start):  # a NaN start never switches on: the intervention would be a silent no-op
            raise ConfigError(f"Expected a finite start time 'at' in hours for {type(self).__name__} (got {at!r})")
        self.at = nn.Parameter(torch.tensor(start))
        self.width = float(width)
        self.register_buffer("scenarios", None if scenarios is None else scenarios.to(torch.bool))

    def restricted_to(self, scenarios: Tensor) -> "Intervention":
        """This intervention, active only in the scenarios where ``scenarios (B,)`` is true."""
        self.scenarios = scenarios.to(torch.bool)
        return self

    def on(self, time_h: float, batch: int, like: Tensor) -> Tensor:
        """``(B, 1)`` how much the intervention is on at ``time_h`` in each scenario, in [0, 1]."""
        step = smooth_step(time_h, self.at, self.width).to(like.dtype)
        mask = like.new_ones(batch) if self.scenarios is None else self.scenarios.to(like.dtype)
        if mask.numel() != batch:
            raise ConfigError(f"Expected a scenario mask of length {batch} (got {mask.numel()})")
        return (mask * step)[:, None]

    def apply(self, effects: Effects, time_h: float, shape: "Shape") -> None:  # pragma: no cover - abstract
        raise NotImplementedError


def _item_index(item: int, name: str) -> int:
    """An item index checked where it is given (its upper bound is known only when the model runs)."""
    if isinstance(item, bool) or not isinstance(item, numbers.Integral) or item < 0:
        raise ConfigError(f"Expected an item index >= 0 for {name} (got {item!r})")
    return int(item)


def _check_agents(target: Tensor, shape: Shape, name: str) -> None:
    """A per-agent mask built for ``num_agents`` must match the simulated population."""
    if target.numel() != shape.agents:
        raise ConfigError(f"Expected {name} built for the {shape.agents} agents simulated (got num_agents="
                          f"{target.numel()})")


def _item_onehot(item: int, shape: Shape) -> Tensor:
    if not 0 <= item < shape.items:
        raise ConfigError(f"Expected an item index in [0, {shape.items}) (got {item})")
    onehot = shape.like.new_zeros(shape.items)
    onehot[item] = 1.0
    return onehot


class FactCheckLabel(Intervention):
    """A fact-check label on ``item`` from ``at``: the reshare logit of everyone drops by ``strength``.

    Labels reduce sharing intentions of false headlines by roughly 10-30% in experiments
    (Pennycook et al. 2020, Management Science; Clayton et al. 2020); the default strength
    ``0.5`` in logit units is ~ a 35% cut at low base rates.
    """

    def __init__(self, item: int, at: float, strength: float = 0.5, width: float = 0.25, scenarios=None) -> None:
        super().__init__(at, width, scenarios)
        self.item = _item_index(item, "FactCheckLabel")
        self.raw_strength = positive("strength", strength)

    def apply(self, effects: Effects, time_h: float, shape: Shape) -> None:
        on = self.on(time_h, shape.batch, shape.like)  # (B, 1)
        offset = -softplus(self.raw_strength) * on[..., None] * _item_onehot(self.item, shape)  # (B, 1, C)
        effects.add("reshare_logit", offset)


class Rebuttal(Intervention):
    """Rebuttal posts about ``item`` by official accounts ``sources``: ``count`` posts, ``every_h`` apart
    from ``at``. Their followers' reshare logit for the item drops by ``strength`` per post, each
    post's effect decaying at rate ``decay`` per hour."""

    def __init__(self, item: int, sources: Sequence[int], graph, at: float, *,
                 every_h: float = 6.0, count: int = 1, strength: float = 1.0, decay: float = 0.05,
                 width: float = 0.25, scenarios=None) -> None:
        super().__init__(at, width, scenarios)
        if count < 1 or every_h <= 0:
            raise ConfigError(f"Expected count >= 1 and every_h > 0 (got {count}, {every_h})")
        self.item, self.count, self.every_h, self.decay = int(item), int(count), float(every_h), float(decay)
        self.raw_strength = positive("strength", strength)
        self.register_buffer("reached", _reached_by(sources, graph, "Rebuttal sources"))

    def apply(self, effects: Effects, time_h: float, shape: Shape) -> None:
        total = 0.0
        for k in range(self.count):  # a handful of posts
            start = self.at + k * self.every_h
            elapsed = smooth_elapsed(time_h, start, self.width)
            total = total + smooth_step(time_h, start, self.width) * torch.exp(-self.decay * elapsed)
        mask = shape.like.new_ones(shape.batch) if self.scenarios is None else self.scenarios.to(shape.like.dtype)
        strength = softplus(self.raw_strength) * total
        offset = -(strength * mask)[:, None, None] * self.reached.to(shape.like.dtype)[None, :, None]
        effects.add("reshare_logit", offset * _item_onehot(self.item, shape))


class Downranking(Intervention):
    """The ranker shows ``item`` less from ``at``: its feed exposure is multiplied by ``1 - factor``."""

    def __init__(self, item: int, at: float, factor: float = 0.5, width: float = 0.25, scenarios=None) -> None:
        super().__init__(at, width, scenarios)
        self.item = _item_index(item, type(self).__name__)
        self.raw_factor = unit_interval("factor", factor)

    def apply(self, effects: Effects, time_h: float, shape: Shape) -> None:
        cut = torch.sigmoid(self.raw_factor) * self.on(time_h, shape.batch, shape.like)  # (B, 1)
        effects.scale("exposure_scale", 1 - cut[..., None] * _item_onehot(self.item, shape))  # (B, 1, C)


class Suspension(Intervention):
    """Accounts ``agents`` are suspended from ``at``: they no longer post or reshare anything."""

    def __init__(self, agents: Sequence[int], num_agents: int, at: float, width: float = 0.25, scenarios=None) -> None:
        super().__init__(at, width, scenarios)
        self.register_buffer("target", _agent_mask(agents, num_agents, "Suspension"))

    def apply(self, effects: Effects, time_h: float, shape: Shape) -> None:
        _check_agents(self.target, shape, "Suspension")
        on = self.on(time_h, shape.batch, shape.like)  # (B, 1)
        effects.scale("source_gate", 1 - on * self.target.to(shape.like.dtype)[None])


class EdgeBlocking(Intervention):
    """From ``at``, a share of the follow edges out of accounts ``agents`` stop carrying their posts.

    Unlike suspension the accounts stay and keep resharing; only the blocked edges go quiet
    (edges chosen by a fixed hash, the same in every scenario).
    """

    def __init__(self, agents: Sequence[int], graph, at: float, share: float = 1.0, width: float = 0.25,
                 scenarios=None) -> None:
        super().__init__(at, width, scenarios)
        if not 0 < share <= 1:
            raise ConfigError(f"Expected a blocked share in (0, 1] (got {share})")
        target = _agent_mask(agents, graph.num_nodes, "EdgeBlocking") > 0
        from_target = kernels.gather_followees(graph, target.to(graph.device)[None])[0].cpu()  # (E,)
        chosen = (torch.arange(graph.num_edges) * 2654435761 % 1000).float() / 1000.0 < share
        self.register_buffer("blocked", (from_target & chosen).float())

    def apply(self, effects: Effects, time_h: float, shape: Shape) -> None:
        if self.blocked.numel() != shape.edges:
            raise ConfigError(f"Expected a graph with {self.blocked.numel()} edges (got {shape.edges})")
        on = self.on(time_h, shape.batch, shape.like)  # (B, 1)
        effects.scale("edge_scale", EdgeGates((on,), (self.blocked.to(shape.like.dtype),)))


class Prebunking(Intervention):
    """A share of agents is inoculated at ``at`` (Roozenbeek & van der Linden 2019): their reshare
    logit for the ``items`` drops by ``strength``. Targeted agents are the first ``share`` by a fixed
    hash of their index (reproducible, independent of the graph), or those of ``target``.

    Args:
        target: ``(num_agents,)`` how much each agent is prebunked, in [0, 1] (a chosen set as 0/1,
            or a soft selection from :func:`lpm.levers.soft_top_k` whose gradient reaches the
            scores that chose it); replaces ``share``.
    """

    def __init__(self, items: Sequence[int], num_agents: int, at: float, share: float = 0.1,
                 strength: float = 1.0, width: float = 0.25, scenarios=None, target: Optional[Tensor] = None) -> None:
        super().__init__(at, width, scenarios)
        if not 0 < share <= 1:
            raise ConfigError(f"Expected a prebunked share in (0, 1] (got {share})")
        self.items = tuple(_item_index(i, "Prebunking") for i in items)
        self.raw_strength = positive("strength", strength)
        if target is None:
            rank = (torch.arange(num_agents) * 2654435761 % 1_000_003).float() / 1_000_003
            target = (rank < share).float()
        elif target.shape != (num_agents,) or not bool(((target >= 0) & (target <= 1)).all()):
            raise ConfigError(f"Expected a prebunking target of shape ({num_agents},) in [0, 1] (got shape "
                              f"{tuple(target.shape)}, range [{float(target.min()):.3g}, {float(target.max()):.3g}])")
        self.register_buffer("target", target)

    def apply(self, effects: Effects, time_h: float, shape: Shape) -> None:
        _check_agents(self.target, shape, "Prebunking")
        items = sum(_item_onehot(i, shape) for i in self.items)
        on = self.on(time_h, shape.batch, shape.like)  # (B, 1)
        offset = -softplus(self.raw_strength) * on[..., None] * self.target.to(shape.like.dtype)[None, :, None]
        effects.add("reshare_logit", offset * items)


class GuidanceMessage(Intervention):
    """A guidance message by official accounts ``sources`` at ``at``, reaching their followers.

    ``tone="empathetic"`` acknowledges fear: it drives valence up and arousal down;
    ``tone="rational"`` gives facts: it pulls opinions on ``topic`` toward ``stance`` and calms
    arousal less. Effects decay at rate ``decay`` per hour after the message.
    """

    def __init__(self, sources: Sequence[int], graph, at: float, *, tone: str = "empathetic",
                 strength: float = 1.0, decay: float = 0.2, topic: int = 0, stance: float = 0.0,
                 width: float = 0.25, scenarios=None) -> None:
        super().__init__(at, width, scenarios)
        if tone not in ("empathetic", "rational"):
            raise ConfigError(f"Expected tone 'empathetic' or 'rational' (got {tone!r})")
        self.tone, self.decay, self.topic, self.stance = tone, float(decay), int(topic), float(stance)
        self.raw_strength = positive("strength", strength)
        self.register_buffer("reached", _reached_by(sources, graph, "GuidanceMessage sources"))
        # (valence, arousal) impulse: empathetic calms and lifts; rational calms a little
        impulse = [0.6, -0.6] if tone == "empathetic" else [0.2, -0.3]
        self.register_buffer("impulse", torch.tensor(impulse, dtype=torch.float64), persistent=False)

    def apply(self, effects: Effects, time_h: float, shape: Shape) -> None:
        on = self.on(time_h, shape.batch, shape.like) * torch.exp(-self.decay * smooth_elapsed(time_h, self.at, self.width))
        level = softplus(self.raw_strength) * on  # (B, 1)
        reached = self.reached.to(shape.like.dtype)[None, :]  # (1, N)
        impulse = self.impulse.to(shape.like.dtype)
        impulse = torch.nn.functional.pad(impulse, (0, max(0, shape.emotions - 2)))[: shape.emotions]
        effects.add("emotion_drive", (level * reached)[..., None] * impulse)
        if self.tone == "rational" and shape.topics > self.topic:
            rate = (0.1 * level * reached)[..., None] * _topic_onehot(self.topic, shape)  # (B, N, T)
            effects.add("opinion_rate", rate)
            effects.add("opinion_pull", rate * self.stance)


class RecommenderChange(Intervention):
    """From ``at``, the platform's ranker personalizes more: ``personalization`` is added to the feed
    ranker's ``gamma`` (0 = chronological), so posts close to the reader's opinion are ranked up.
    Needs a model with a :class:`~lpm.dynamics.recommender.Feed`."""

    def __init__(self, at: float, personalization: float = 10.0, width: float = 0.25, scenarios=None) -> None:
        super().__init__(at, width, scenarios)
        self.raw_personalization = positive("personalization", personalization)

    def apply(self, effects: Effects, time_h: float, shape: Shape) -> None:
        on = self.on(time_h, shape.batch, shape.like)  # (B, 1)
        effects.add("personalization", (softplus(self.raw_personalization) * on)[..., None])


def _topic_onehot(topic: int, shape: Shape) -> Tensor:
    onehot = shape.like.new_zeros(shape.topics)
    onehot[topic] = 1.0
    return onehot


class InterventionPlan(nn.Module):
    """A set of interventions applied together; learnable strengths and start times included."""

    def __init__(self, interventions: Sequence[Intervention] = ()) -> None:
        super().__init__()
        for item in interventions:
            if not isinstance(item, Intervention):
                raise ConfigError(f"Expected lpm.interventions.Intervention objects (got {type(item).__name__})")
        self.interventions = nn.ModuleList(interventions)

    def __len__(self) -> int:
        return len(self.interventions)

    def effects(self, time_h: float, shape: Shape) -> Effects:
        effects = Effects()
        for intervention in self.interventions:
            intervention.apply(effects, time_h, shape)
        return effects
