"""Levers: the parameters of interventions a plan may choose, within a budget, by gradient.

A lever owns learnable parameters and turns them into ordinary :mod:`lpm.interventions` (which stay
the one home of what interventions do): :class:`TargetedPrebunking` chooses *whom* to prebunk with a
scoring policy over agent features and a budgeted soft top-k; :class:`LabelTiming` chooses *when* a
fact-check label starts; :class:`DownrankSchedule` chooses *how hard* and *from when* a claim is
downranked, at a cost in the exposures of everything else. ``interventions(hard=True)`` gives the
plan as it would be carried out (hard top-k, exact schedule), which is what validation runs.

Soft top-k with an exact budget: ``m_i = sigmoid((s_i - tau) / T)`` with ``tau`` solved (bisection)
so that ``sum_i m_i = k`` to float precision. Its gradient is the implicit one of that constraint,
``dm_i/ds_j = w_i (delta_ij - w_j / sum w) / T`` with ``w = m (1 - m)``: the budget holds along
every gradient step, and ``T -> 0`` gives hard top-k (a test checks both).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

from lpm.errors import ConfigError
from lpm.graph import Graph
from lpm.interventions import Downranking, FactCheckLabel, GuidanceMessage, Intervention, Prebunking
from lpm.state import PopulationState

__all__ = ["soft_top_k", "hard_top_k", "AgentFeatures", "agent_features", "Lever", "TargetedPrebunking",
           "LabelTiming", "DownrankSchedule", "GuidancePlan"]


def _check_budget(scores: Tensor, k: float) -> None:
    if scores.dim() != 1 or scores.numel() == 0:
        raise ConfigError(f"Expected scores of shape (N,) with N >= 1 (got {tuple(scores.shape)})")
    if not 0 < k < scores.numel():
        raise ConfigError(f"Expected a budget k in (0, N={scores.numel()}) agents (got {k})")


def hard_top_k(scores: Tensor, k: float) -> Tensor:
    """``(N,)`` 0/1 selection of the ``round(k)`` highest ``scores (N,)`` (ties by index)."""
    _check_budget(scores, k)
    chosen = torch.zeros_like(scores, dtype=torch.float32)
    chosen[torch.argsort(scores.detach(), descending=True, stable=True)[: int(round(k))]] = 1.0
    return chosen.to(scores.dtype)


def soft_top_k(scores: Tensor, k: float, temperature: float) -> Tensor:
    """``(N,)`` soft selection in (0, 1) of ``scores (N,)`` summing to ``k`` (module docstring).

    Args:
        scores: agent scores; the gradient of the selection reaches them.
        k: how many agents, ``0 < k < N`` (a share times N; need not be an integer).
        temperature: ``T > 0`` in units of the scores; small is close to hard top-k.
    """
    _check_budget(scores, k)
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ConfigError(f"Expected a positive finite top-k temperature (got {temperature})")
    s = scores.detach().double()
    lo, hi = float(s.min()) - 40.0 * temperature, float(s.max()) + 40.0 * temperature
    for _ in range(200):  # sum of sigmoids is monotone in tau: bisection to float64 resolution
        tau = 0.5 * (lo + hi)
        if float(torch.sigmoid((s - tau) / temperature).sum()) > k:
            lo = tau
        else:
            hi = tau
        if hi - lo < 1e-12 * max(1.0, abs(tau)):
            break
    tau = 0.5 * (lo + hi)
    soft = torch.sigmoid((s - tau) / temperature)
    weight = (soft * (1 - soft)).to(scores.dtype)
    # tau as a function of the scores to first order (implicit function theorem): the same forward
    # value, and the gradient that keeps sum(m) = k
    moved = scores - scores.detach()
    tau_t = tau + (weight * moved).sum() / weight.sum().clamp_min(1e-30)
    return torch.sigmoid((scores - tau_t) / temperature)


@dataclass(frozen=True)
class AgentFeatures:
    """Standardised per-agent features a targeting policy scores.

    Shapes:
        values: ``(N, F)`` float64, each column mean 0 and SD 1 (constant columns stay 0).
        raw: ``(N, F)`` float64, before standardising (for reports: e.g. follower deciles).
    """

    names: tuple[str, ...]
    values: Tensor
    raw: Tensor

    def __post_init__(self) -> None:
        if self.values.dim() != 2 or self.values.shape != self.raw.shape or self.values.size(1) != len(self.names):
            raise ConfigError(f"Expected values and raw of shape (N, {len(self.names)}) (got "
                              f"{tuple(self.values.shape)} and {tuple(self.raw.shape)})")

    @property
    def num_agents(self) -> int:
        return self.values.size(0)


def agent_features(graph: Graph, population: PopulationState, *, topic: int = 0, stance: float = 1.0,
                   groups: Optional[Tensor] = None) -> AgentFeatures:
    """What a platform knows about each account before a claim appears.

    Features: ``log_followers`` (``log1p`` of followers), ``log_followees``, ``activity`` (log of the
    posting-rate multiplier), ``susceptibility``, ``alignment`` (opinion on ``topic`` times the
    claim's ``stance``: who is inclined to believe it), and one indicator per group of ``groups``
    (e.g. archetype membership, ``(N,)`` int64).

    Args:
        graph: the follower graph.
        population: the initial state of one scenario (``B = 1``).
    """
    if population.batch_size != 1 or population.num_agents != graph.num_nodes:
        raise ConfigError(f"Expected a population of one scenario over the graph's {graph.num_nodes} agents "
                          f"(got batch {population.batch_size}, {population.num_agents} agents)")
    if not 0 <= topic < population.opinion.size(-1):
        raise ConfigError(f"Expected a topic in [0, {population.opinion.size(-1)}) (got {topic})")
    traits = population.traits
    columns = {
        "log_followers": torch.log1p(graph.out_degree().double().cpu()),
        "log_followees": torch.log1p(graph.in_degree().double().cpu()),
        "activity": torch.log(traits.baseline_rate[0].double().cpu().clamp_min(1e-12)),
        "susceptibility": traits.susceptibility[0].double().cpu(),
        "alignment": population.opinion[0, :, topic].double().cpu() * float(stance),
    }
    if groups is not None:
        if groups.shape != (graph.num_nodes,):
            raise ConfigError(f"Expected groups of shape ({graph.num_nodes},) (got {tuple(groups.shape)})")
        for g in torch.unique(groups).tolist():
            columns[f"group_{g}"] = (groups.cpu() == g).double()
    raw = torch.stack(list(columns.values()), 1)
    sd = raw.std(0)
    values = (raw - raw.mean(0)) / torch.where(sd > 0, sd, torch.ones_like(sd))
    return AgentFeatures(tuple(columns), values, raw)


class Lever(nn.Module):
    """A budgeted choice over one intervention's parameters (module docstring).

    Subclasses implement :meth:`interventions`, :meth:`values` (the chosen parameters in their
    units), :meth:`search_space` and :meth:`set_values` (for gradient-free search over the same
    parameters), and may add a :meth:`cost` in units of the objective.
    """

    name: str = "lever"

    def interventions(self, hard: bool = False) -> list[Intervention]:  # pragma: no cover - abstract
        raise NotImplementedError

    def values(self) -> dict[str, float | list[float]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def search_space(self) -> dict[str, tuple[float, float]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def set_values(self, values: Mapping[str, float]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def grid(self) -> list[dict[str, float]]:  # pragma: no cover - abstract
        """Hand-designed options (what an analyst would try without an optimiser)."""
        raise NotImplementedError

    def cost(self, outcome: Mapping[str, Tensor]) -> Tensor:
        """``(B,)`` cost of the plan given the run's outcomes (none by default)."""
        any_value = next(iter(outcome.values()))
        return any_value.new_zeros(any_value.shape)


def _bind(intervention: Intervention, name: str, value: Tensor) -> None:
    """Replace the intervention's own parameter ``name`` by ``value``, a function of the lever's
    parameters, so that the run's gradient reaches the lever (the intervention reads it as before)."""
    delattr(intervention, name)
    setattr(intervention, name, value)


def _three(lo: float, hi: float) -> tuple[float, float, float]:
    """Earliest, middle and latest allowed values (just inside the open interval)."""
    pad = 1e-3 * (hi - lo)
    return lo + pad, 0.5 * (lo + hi), hi - pad


def _bounded(raw: Tensor, lo: float, hi: float) -> Tensor:
    return lo + (hi - lo) * torch.sigmoid(raw)


def _unbounded(value: float, lo: float, hi: float, name: str) -> float:
    if not lo < value < hi:
        raise ConfigError(f"Expected {name} in the open interval ({lo}, {hi}) (got {value})")
    u = (value - lo) / (hi - lo)
    return math.log(u) - math.log1p(-u)


class TargetedPrebunking(Lever):
    """Prebunk a budgeted share of agents chosen by a learned linear score of their features.

    ``score_i = features_i . weights``; the soft top-k of the scores at the budget is the prebunked
    share of each agent while optimising, the hard top-k when the plan is carried out.

    Args:
        features: :func:`agent_features` of the population.
        share: the budget, a share of agents in (0, 1).
        items: the items prebunked against (default: item 0).
        at: when (hours; before the claim appears by default).
        strength: logit drop of a prebunked agent's reshare (:class:`~lpm.interventions.Prebunking`).
        temperature: soft top-k temperature in score units (scores have SD ~1).
        weights: initial policy weights ``(F,)``; only their direction counts (default: equal).
    """

    name = "prebunk"

    def __init__(self, features: AgentFeatures, share: float, *, items: Sequence[int] = (0,), at: float = -1.0,
                 strength: float = 1.0, temperature: float = 0.1, weights: Optional[Sequence[float]] = None) -> None:
        super().__init__()
        if not 0 < share < 1:
            raise ConfigError(f"Expected a prebunking budget share in (0, 1) (got {share})")
        self.features, self.share, self.items = features, float(share), tuple(items)
        self.at, self.strength, self.temperature = float(at), float(strength), float(temperature)
        initial = torch.full((len(features.names),), len(features.names) ** -0.5, dtype=torch.float64) if weights is None \
            else torch.as_tensor(weights, dtype=torch.float64)
        if initial.shape != (len(features.names),):
            raise ConfigError(f"Expected {len(features.names)} policy weights for {list(features.names)} "
                              f"(got shape {tuple(initial.shape)})")
        self.weights = nn.Parameter(initial.clone())

    @property
    def budget_agents(self) -> float:
        return self.share * self.features.num_agents

    def scores(self) -> Tensor:
        """``(N,)`` the policy's score of each agent: features times the unit weight direction, so
        the scores have SD ~1 and ``temperature`` alone sets how hard the soft selection is."""
        return self.features.values @ (self.weights / self.weights.norm().clamp_min(1e-12))

    def selection(self, hard: bool = False) -> Tensor:
        """``(N,)`` the prebunked share of each agent (exactly the budget in total)."""
        scores = self.scores()
        if hard:
            return hard_top_k(scores.detach(), self.budget_agents)
        return soft_top_k(scores, self.budget_agents, self.temperature)

    def interventions(self, hard: bool = False) -> list[Intervention]:
        target = self.selection(hard)
        return [Prebunking(list(self.items), self.features.num_agents, at=self.at, share=self.share,
                           strength=self.strength, target=target)]

    def values(self) -> dict[str, float | list[float]]:
        return {f"prebunk.weight.{n}": float(w) for n, w in zip(self.features.names, self.weights.detach())}

    def search_space(self) -> dict[str, tuple[float, float]]:
        return {f"prebunk.weight.{n}": (-1.0, 1.0) for n in self.features.names}

    def grid(self) -> list[dict[str, float]]:
        """Target the top of one feature, for each feature and sign (e.g. the most-followed)."""
        options = []
        for name in self.features.names:
            for sign in (1.0, -1.0):
                options.append({f"prebunk.weight.{n}": (sign if n == name else 0.0) for n in self.features.names})
        return options

    def set_values(self, values: Mapping[str, float]) -> None:
        with torch.no_grad():
            for i, n in enumerate(self.features.names):
                key = f"prebunk.weight.{n}"
                if key in values:
                    self.weights[i] = float(values[key])


class LabelTiming(Lever):
    """When a fact-check label on ``item`` starts, between ``earliest_h`` and ``latest_h``.

    ``earliest_h`` is how fast fact-checkers can rate a claim (the lever cannot beat it).
    """

    name = "label"

    def __init__(self, *, item: int = 0, earliest_h: float = 1.0, latest_h: float = 24.0, at: float = 12.0,
                 strength: float = 0.5) -> None:
        super().__init__()
        if not earliest_h < latest_h:
            raise ConfigError(f"Expected earliest_h < latest_h (got {earliest_h}, {latest_h})")
        self.item, self.earliest_h, self.latest_h, self.strength = int(item), float(earliest_h), float(latest_h), float(strength)
        self.raw_at = nn.Parameter(torch.tensor(_unbounded(float(at), self.earliest_h, self.latest_h, "label at")))

    def at_h(self) -> Tensor:
        return _bounded(self.raw_at, self.earliest_h, self.latest_h)

    def interventions(self, hard: bool = False) -> list[Intervention]:
        label = FactCheckLabel(self.item, at=float(self.at_h().detach()), strength=self.strength)
        if not hard:
            _bind(label, "at", self.at_h())
        return [label]

    def values(self) -> dict[str, float | list[float]]:
        return {"label.at_h": float(self.at_h().detach())}

    def search_space(self) -> dict[str, tuple[float, float]]:
        return {"label.at_h": (self.earliest_h, self.latest_h)}

    def grid(self) -> list[dict[str, float]]:
        return [{"label.at_h": at} for at in _three(self.earliest_h, self.latest_h)]

    def set_values(self, values: Mapping[str, float]) -> None:
        if "label.at_h" in values:
            at = min(max(float(values["label.at_h"]), self.earliest_h + 1e-6), self.latest_h - 1e-6)
            with torch.no_grad():
                self.raw_at.fill_(_unbounded(at, self.earliest_h, self.latest_h, "label at"))


class DownrankSchedule(Lever):
    """Downrank ``item`` in feeds by ``factor`` in [0, max_factor] from ``at`` (hours).

    Cost: ``engagement_cost`` per unit of downranking factor-hours over the horizon, in units of the
    objective (agents): platforms lose engagement on everything near a downranked claim, so the
    optimum is not "downrank everything" (an explicit price, stated by the user).
    """

    name = "downrank"

    def __init__(self, *, item: int = 0, factor: float = 0.3, max_factor: float = 0.9, at: float = 2.0,
                 earliest_h: float = 0.0, latest_h: float = 36.0, horizon_h: float = 36.0,
                 engagement_cost: float = 0.0) -> None:
        super().__init__()
        self.item, self.max_factor = int(item), float(max_factor)
        self.earliest_h, self.latest_h, self.horizon_h = float(earliest_h), float(latest_h), float(horizon_h)
        if engagement_cost < 0:
            raise ConfigError(f"Expected engagement_cost >= 0 (got {engagement_cost})")
        self.engagement_cost = float(engagement_cost)
        self.raw_factor = nn.Parameter(torch.tensor(_unbounded(float(factor), 0.0, self.max_factor, "downrank factor")))
        self.raw_at = nn.Parameter(torch.tensor(_unbounded(float(at), self.earliest_h, self.latest_h, "downrank at")))

    def factor(self) -> Tensor:
        return _bounded(self.raw_factor, 0.0, self.max_factor)

    def at_h(self) -> Tensor:
        return _bounded(self.raw_at, self.earliest_h, self.latest_h)

    def interventions(self, hard: bool = False) -> list[Intervention]:
        down = Downranking(self.item, at=float(self.at_h().detach()), factor=float(self.factor().detach()))
        if not hard:
            _bind(down, "at", self.at_h())
            factor = self.factor()
            _bind(down, "raw_factor", torch.log(factor) - torch.log1p(-factor))
        return [down]

    def cost(self, outcome: Mapping[str, Tensor]) -> Tensor:
        any_value = next(iter(outcome.values()))
        hours = (self.horizon_h - self.at_h()).clamp_min(0.0)
        return any_value.new_ones(any_value.shape) * (self.engagement_cost * self.factor() * hours).to(any_value.dtype)

    def values(self) -> dict[str, float | list[float]]:
        return {"downrank.factor": float(self.factor().detach()), "downrank.at_h": float(self.at_h().detach())}

    def search_space(self) -> dict[str, tuple[float, float]]:
        return {"downrank.factor": (0.0, self.max_factor), "downrank.at_h": (self.earliest_h, self.latest_h)}

    def grid(self) -> list[dict[str, float]]:
        return [{"downrank.factor": f, "downrank.at_h": at} for f in (0.0, self.max_factor / 3, 2 * self.max_factor / 3,
                                                                      self.max_factor)
                for at in _three(self.earliest_h, self.latest_h)]

    def set_values(self, values: Mapping[str, float]) -> None:
        with torch.no_grad():
            if "downrank.factor" in values:
                f = min(max(float(values["downrank.factor"]), 1e-6), self.max_factor - 1e-6)
                self.raw_factor.fill_(_unbounded(f, 0.0, self.max_factor, "downrank factor"))
            if "downrank.at_h" in values:
                at = min(max(float(values["downrank.at_h"]), self.earliest_h + 1e-6), self.latest_h - 1e-6)
                self.raw_at.fill_(_unbounded(at, self.earliest_h, self.latest_h, "downrank at"))


class GuidancePlan(Lever):
    """Official guidance in a crisis: when it goes out, its tone mix and where its weight falls.

    Two :class:`~lpm.interventions.GuidanceMessage` posts by ``sources`` at the same time, an
    empathetic one of strength ``strength * mix`` and a rational one of ``strength * (1 - mix)``
    (the total is the budget). ``region_focus`` in (0, 1) is the share of the message's dose spent
    on the followers inside ``region`` (the rest on those outside), at a fixed total dose over the
    followers reached: 0.5 of each is spent where it falls if ``region_focus`` equals the region's
    share of the reached.

    Args:
        sources: the official accounts.
        graph: the follower graph.
        region: ``(N,)`` bool, the agents in the hit region.
        strength: the total message strength (the budget).
        earliest_h, latest_h, at: bounds and initial value of the send time (hours).
    """

    name = "guidance"

    def __init__(self, sources: Sequence[int], graph: Graph, region: Tensor, *, strength: float = 1.0,
                 earliest_h: float = 0.0, latest_h: float = 48.0, at: float = 24.0, tone_mix: float = 0.5,
                 region_focus: float = 0.5, decay: float = 0.2) -> None:
        super().__init__()
        if region.shape != (graph.num_nodes,):
            raise ConfigError(f"Expected a region mask of shape ({graph.num_nodes},) (got {tuple(region.shape)})")
        if not strength > 0:
            raise ConfigError(f"Expected a positive guidance strength budget (got {strength})")
        self.sources, self.graph, self.strength, self.decay = list(sources), graph, float(strength), float(decay)
        self.earliest_h, self.latest_h = float(earliest_h), float(latest_h)
        probe = GuidanceMessage(self.sources, graph, at=0.0)
        reached = probe.reached.double()
        inside = reached * region.double().to(reached.device)
        if float(inside.sum()) == 0 or float((reached - inside).sum()) == 0:
            raise ConfigError(f"Expected the sources to reach followers inside and outside the region (got "
                              f"{int(inside.sum())} inside, {int((reached - inside).sum())} outside)")
        self.register_buffer("reached_inside", inside)
        self.register_buffer("reached_outside", reached - inside)
        self.raw_at = nn.Parameter(torch.tensor(_unbounded(float(at), self.earliest_h, self.latest_h, "guidance at")))
        self.raw_mix = nn.Parameter(torch.tensor(_unbounded(float(tone_mix), 0.0, 1.0, "tone_mix")))
        self.raw_focus = nn.Parameter(torch.tensor(_unbounded(float(region_focus), 0.0, 1.0, "region_focus")))

    def at_h(self) -> Tensor:
        return _bounded(self.raw_at, self.earliest_h, self.latest_h)

    def dose(self) -> Tensor:
        """``(N,)`` how much of the message each agent receives (mean 1 over the reached)."""
        focus = torch.sigmoid(self.raw_focus)
        total = self.reached_inside.sum() + self.reached_outside.sum()
        return total * (focus * self.reached_inside / self.reached_inside.sum()
                        + (1 - focus) * self.reached_outside / self.reached_outside.sum())

    def interventions(self, hard: bool = False) -> list[Intervention]:
        mix = torch.sigmoid(self.raw_mix).clamp(1e-4, 1 - 1e-4)
        out = []
        for tone, share in (("empathetic", mix), ("rational", 1 - mix)):
            level = self.strength * share
            message = GuidanceMessage(self.sources, self.graph, at=float(self.at_h().detach()), tone=tone,
                                      strength=float(level.detach()), decay=self.decay)
            dose = self.dose()
            if hard:
                dose = dose.detach()
            else:
                _bind(message, "at", self.at_h())
                _bind(message, "raw_strength", level + torch.log(-torch.expm1(-level)))  # softplus^-1
            message.reached = dose  # the run casts it to its dtype (a float32 cast here would round the gradient away)
            out.append(message)
        return out

    def values(self) -> dict[str, float | list[float]]:
        return {"guidance.at_h": float(self.at_h().detach()), "guidance.tone_mix": float(torch.sigmoid(self.raw_mix)),
                "guidance.region_focus": float(torch.sigmoid(self.raw_focus))}

    def search_space(self) -> dict[str, tuple[float, float]]:
        return {"guidance.at_h": (self.earliest_h, self.latest_h), "guidance.tone_mix": (0.0, 1.0),
                "guidance.region_focus": (0.0, 1.0)}

    def grid(self) -> list[dict[str, float]]:
        natural = float(self.reached_inside.sum() / (self.reached_inside.sum() + self.reached_outside.sum()))
        return [{"guidance.at_h": at, "guidance.tone_mix": mix, "guidance.region_focus": focus}
                for at in _three(self.earliest_h, self.latest_h) for mix in (0.001, 0.5, 0.999)
                for focus in (natural, 0.999)]

    def set_values(self, values: Mapping[str, float]) -> None:
        with torch.no_grad():
            if "guidance.at_h" in values:
                at = min(max(float(values["guidance.at_h"]), self.earliest_h + 1e-6), self.latest_h - 1e-6)
                self.raw_at.fill_(_unbounded(at, self.earliest_h, self.latest_h, "guidance at"))
            for key, raw in (("guidance.tone_mix", self.raw_mix), ("guidance.region_focus", self.raw_focus)):
                if key in values:
                    raw.fill_(_unbounded(min(max(float(values[key]), 1e-6), 1 - 1e-6), 0.0, 1.0, key))
