"""The stance model: fixed config, the evidence intervention, the stance link and the batched model of
the three veracities."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

from lpm.calibration.common import SeriesModel
from lpm.dynamics.activity import Hawkes
from lpm.dynamics.base import inverse_softplus, logit, softplus
from lpm.dynamics.emotion import EmotionContagion
from lpm.dynamics.opinion import DeGroot
from lpm.errors import ConfigError
from lpm.graph import Graph
from lpm.interventions import Effects, Intervention, Shape
from lpm.model import Model, StepEvents
from lpm.simulate import simulate
from lpm.state import PopulationState, Traits
from lpm.targets_series import STANCES, ExpectedEvents, binned_counts

KIND = "stance"

#: Scenario order of the batch, and the belief that evidence about each veracity pulls toward.
VERACITIES = ("true", "false", "unverified")
_TRUTH = (1.0, -1.0, 0.0)

LEARNABLE = ("support_bias", "deny_bias", "query_bias", "belief_slope", "arousal_slope", "arousal_decay",
             "coupling", "initial_belief", "evidence_rate_true", "evidence_rate_false", "evidence_rate_unverified")

#: The thread-memory parameter's name in a fitted-parameter file (fitted after :data:`LEARNABLE`).
MEMORY = "thread_concentration"

DEFAULT_INIT = {"support_bias": -1.5, "deny_bias": -2.5, "query_bias": -2.5, "belief_slope": 1.0,
                "arousal_slope": 1.0, "arousal_decay": 0.5, "coupling": 0.3, "initial_belief": 0.2,
                "evidence_rate_true": 0.05, "evidence_rate_false": 0.05, "evidence_rate_unverified": 0.05}


@dataclass(frozen=True)
class StanceConfig:
    """Fixed settings of the stance model (stored in the fitted file's meta).

    Args:
        agents: repliers per veracity scenario.
        dt: step length in hours; every bin edge must be a multiple of it.
        edges_h: time-bin edges in hours since the source; replies after the last edge are not used.
        reached_share: share of users aroused by the source post itself.
        belief_spread: standard deviation of initial beliefs in ``atanh`` units.
        self_weight: DeGroot weight on one's own belief per step.
        mu, alpha, beta: Hawkes reply rate (per hour), excitation and decay (1/h).
        observe_replies: annotated replies per thread whose stances condition the forecast of the
            thread's later replies (0: no thread memory).
    """

    agents: int = 300
    dt: float = 0.25
    edges_h: tuple[float, ...] = (0.0, 0.25, 1.0, 3.0, 6.0, 12.0, 24.0, 72.0)
    reached_share: float = 0.5
    belief_spread: float = 1.0
    self_weight: float = 0.98
    mu: float = 0.1
    alpha: float = 0.5
    beta: float = 1.0
    observe_replies: int = 5

    def __post_init__(self) -> None:
        object.__setattr__(self, "edges_h", tuple(float(e) for e in self.edges_h))
        if self.agents < 2:
            raise ConfigError(f"Expected at least 2 agents (got {self.agents})")
        if not self.dt > 0:
            raise ConfigError(f"Expected a positive step dt in hours (got {self.dt})")
        edges = self.edges_h
        if len(edges) < 2 or edges[0] != 0.0 or any(b <= a for a, b in zip(edges, edges[1:])):
            raise ConfigError(f"Expected increasing bin edges starting at 0 (got {list(edges)})")
        off = [e for e in edges if abs(e / self.dt - round(e / self.dt)) > 1e-9]
        if off:
            raise ConfigError(f"Expected bin edges that are multiples of dt={self.dt} (got {off})")
        if not 0.0 < self.reached_share <= 1.0:
            raise ConfigError(f"Expected reached_share in (0, 1] (got {self.reached_share})")
        if int(self.observe_replies) != self.observe_replies or self.observe_replies < 0:
            raise ConfigError(f"Expected a whole number observe_replies >= 0 (got {self.observe_replies})")

    @property
    def steps(self) -> int:
        return int(round(self.edges_h[-1] / self.dt))

    @property
    def bins(self) -> int:
        return len(self.edges_h) - 1


class Evidence(Intervention):
    """Evidence and corrections: from the source post on, every belief moves toward the truth of its
    scenario's rumour, a share ``1 - exp(-rate_v dt)`` of the way per step.

    Args:
        rates: evidence rate per hour for each scenario's veracity, ``(B,)`` in :data:`VERACITIES` order.
        truth: the belief evidence points to per scenario, ``(B,)``.
        dt: step length in hours.
    """

    def __init__(self, rates: Sequence[float], truth: Sequence[float], dt: float) -> None:
        super().__init__(at=0.0)
        self.at.requires_grad_(False)  # evidence starts with the source post
        self.raw_rates = nn.Parameter(torch.tensor([inverse_softplus(r) for r in rates]))
        self.register_buffer("truth", torch.tensor(list(truth)))
        self.dt = float(dt)
        #: ``(B, N)`` multipliers of each agent's evidence rate, or ``None`` (all 1). A plain attribute, not a
        #: buffer: a model that computes it from its own parameters sets it before each simulation.
        self.agent_scale: Optional[Tensor] = None

    @property
    def rates(self) -> Tensor:
        return softplus(self.raw_rates)

    def apply(self, effects: Effects, time_h: float, shape: Shape) -> None:
        if self.raw_rates.numel() != shape.batch:
            raise ConfigError(f"Expected one evidence rate per scenario ({shape.batch}) (got {self.raw_rates.numel()})")
        if self.agent_scale is None:
            rate = -torch.expm1(-self.rates * self.dt).to(shape.like.dtype)[:, None, None]  # (B, 1, 1)
        else:
            if tuple(self.agent_scale.shape) != (shape.batch, shape.agents):
                raise ConfigError(f"Expected an evidence scale of shape {(shape.batch, shape.agents)} "
                                  f"(got {tuple(self.agent_scale.shape)})")
            scaled = self.rates[:, None].to(shape.like.dtype) * self.agent_scale.to(shape.like.dtype)
            rate = -torch.expm1(-scaled * self.dt)[..., None]  # (B, N, 1)
        effects.add("opinion_rate", rate)
        effects.add("opinion_pull", rate * self.truth.to(shape.like.dtype)[:, None, None])


class StanceLink(nn.Module):
    """Observable: expected replies per stance in the step, ``(B, 4)`` in :data:`STANCES` order.

    ``sum_i posts_i softmax(a + b x_i (1, -1, 0, 0) + k u_i (1, 1, 1, 0))`` with belief ``x``
    (opinion topic 0) and arousal ``u`` (emotion dimension 0).
    """

    def __init__(self, support_bias: float, deny_bias: float, query_bias: float, belief_slope: float,
                 arousal_slope: float) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.tensor([support_bias, deny_bias, query_bias]))
        self.raw_belief_slope = nn.Parameter(torch.tensor(inverse_softplus(belief_slope)))
        self.raw_arousal_slope = nn.Parameter(torch.tensor(inverse_softplus(arousal_slope)))
        self.register_buffer("belief_sign", torch.tensor([1.0, -1.0, 0.0, 0.0]))
        self.register_buffer("arousal_sign", torch.tensor([1.0, 1.0, 1.0, 0.0]))

    @property
    def belief_slope(self) -> Tensor:
        return softplus(self.raw_belief_slope)

    @property
    def arousal_slope(self) -> Tensor:
        return softplus(self.raw_arousal_slope)

    def probabilities(self, belief: Tensor, arousal: Tensor) -> Tensor:
        """``(..., 4)`` stance probabilities for beliefs and arousals of shape ``(...)``."""
        dtype = belief.dtype
        bias = torch.cat([self.bias, self.bias.new_zeros(1)]).to(dtype)  # comment is the reference stance
        logits = (bias + self.belief_slope.to(dtype) * belief[..., None] * self.belief_sign.to(dtype)
                  + self.arousal_slope.to(dtype) * arousal[..., None] * self.arousal_sign.to(dtype))
        return torch.softmax(logits, dim=-1)

    def forward(self, state: PopulationState, events: StepEvents) -> Tensor:
        if events.posts is None:
            return state.opinion.new_zeros(state.batch_size, len(STANCES))
        probs = self.probabilities(state.opinion[..., 0], state.emotion[..., 0])  # (B, N, 4)
        return (events.posts[..., None] * probs).sum(1)


class StanceModel(SeriesModel, nn.Module):
    """Repliers of each veracity (the batch), their beliefs, arousal and replies (module docstring)."""

    def __init__(self, config: StanceConfig, params: Optional[Mapping[str, float]] = None, *, seed: int = 0) -> None:
        super().__init__()
        # a fitted file also holds the thread memory's concentration, which acts after the population model
        values = {**DEFAULT_INIT, **{k: v for k, v in (params or {}).items() if k != MEMORY}}
        unknown = sorted(set(values) - set(LEARNABLE))
        if unknown:
            raise ConfigError(f"Expected stance parameters among {list(LEARNABLE)} (got {unknown})")
        if not -1.0 < values["initial_belief"] < 1.0:
            raise ConfigError(f"Expected initial_belief in (-1, 1) (got {values['initial_belief']})")
        self.config = config
        n = config.agents
        self.graph = Graph.holme_kim(n, min(3, n - 1), 0.3, seed=seed)
        gen = torch.Generator().manual_seed(seed + 202)
        self.register_buffer("belief_noise", torch.randn(n, generator=gen, dtype=torch.float64) * config.belief_spread)
        self.register_buffer("reached", (torch.rand(n, generator=gen, dtype=torch.float64) < config.reached_share).double())
        traits = Traits.sample(n, seed=seed + 1, batch=1, dtype=torch.float64)
        for name in ("susceptibility", "stubbornness", "confidence", "baseline_rate"):
            self.register_buffer(f"trait_{name}", getattr(traits, name).clone())
        self.raw_initial_belief = nn.Parameter(torch.tensor(0.5 * logit(0.5 * (values["initial_belief"] + 1))))  # atanh
        emotion = EmotionContagion(values["coupling"], values["arousal_decay"], order=1)
        emotion.raw_shock_gain.requires_grad_(False)  # no exogenous shock: the source's arousal is the initial state
        opinion = DeGroot(config.self_weight)
        opinion.raw_self_weight.requires_grad_(False)
        activity = Hawkes(config.mu, config.alpha, config.beta, rhythm_amplitude=None)
        for fixed in (activity.raw_mu, activity.raw_alpha, activity.raw_beta):
            fixed.requires_grad_(False)
        rates = [values[f"evidence_rate_{v}"] for v in VERACITIES]
        self.model = Model(opinion=opinion, emotion=emotion, activity=activity,
                           interventions=[Evidence(rates, _TRUTH, config.dt)], dt=config.dt)
        self.link = StanceLink(values["support_bias"], values["deny_bias"], values["query_bias"],
                               values["belief_slope"], values["arousal_slope"])
        self._graphs: dict[str, Graph] = {}

    @property
    def evidence(self) -> Evidence:
        return self.model.interventions.interventions[0]

    def raw_parameters(self) -> dict[str, nn.Parameter]:
        """``{name: unconstrained parameter}``; the biases and evidence rates share a tensor each,
        so their entries are fitted together (``learn`` selects whole tensors)."""
        return {"support_bias": self.link.bias, "deny_bias": self.link.bias, "query_bias": self.link.bias,
                "belief_slope": self.link.raw_belief_slope, "arousal_slope": self.link.raw_arousal_slope,
                "arousal_decay": self.model.emotion.raw_decay, "coupling": self.model.emotion.raw_coupling,
                "initial_belief": self.raw_initial_belief,
                **{f"evidence_rate_{v}": self.evidence.raw_rates for v in VERACITIES}}

    def values(self) -> dict[str, Tensor]:
        """``{name: constrained value}`` (0-dim tensors, differentiable)."""
        rates = self.evidence.rates
        return {"support_bias": self.link.bias[0], "deny_bias": self.link.bias[1], "query_bias": self.link.bias[2],
                "belief_slope": self.link.belief_slope, "arousal_slope": self.link.arousal_slope,
                "arousal_decay": self.model.emotion.decay, "coupling": self.model.emotion.coupling,
                "initial_belief": torch.tanh(self.raw_initial_belief),
                **{f"evidence_rate_{v}": rates[i] for i, v in enumerate(VERACITIES)}}

    def initial_state(self, belief_offset: Optional[Tensor] = None, arousal_scale: Optional[Tensor] = None
                      ) -> PopulationState:
        """Beliefs at the source post, arousal of the users it reached, one scenario per veracity.

        ``belief_offset`` ``(N,)`` (added in ``atanh`` units) and ``arousal_scale`` ``(N,)`` (multiplies
        the reached users' arousal) let a subclass shape individuals (see :mod:`lpm.calibration.stance_archetypes`).
        """
        like = self.raw_initial_belief
        batch, n = len(VERACITIES), self.config.agents
        raw = self.raw_initial_belief + self.belief_noise.to(like.dtype)
        belief = torch.tanh(raw if belief_offset is None else raw + belief_offset.to(like.dtype))  # (N,)
        opinion = belief.expand(batch, n)[..., None]
        reached = self.reached.to(like.dtype)
        if arousal_scale is not None:
            reached = reached * arousal_scale.to(like.dtype)
        arousal = reached.expand(batch, n)[..., None]
        traits = Traits(*[getattr(self, f"trait_{f.name}").to(like.dtype).expand(batch, n)
                          for f in dataclasses.fields(Traits)])
        return PopulationState.create(opinion, arousal.contiguous(), traits=traits)

    def simulate_counts(self, seed: int = 0) -> Tensor:
        """Expected replies per veracity, time bin and stance. Shapes: ``(3, K, 4)``."""
        state = self.initial_state()
        trajectory = simulate(self.model, state, self.graph_on(state.device), steps=self.config.steps, seed=seed,
                              estimator=ExpectedEvents(), record={"stance": self.link})
        per_step = trajectory["stance"][1:].transpose(0, 1)  # (B, S, 4); row 0 is the initial state
        # the replies of step t were written during [t dt, (t + 1) dt): bin them at the mid-point
        times = (torch.arange(self.config.steps, dtype=per_step.dtype, device=per_step.device) + 0.5) * self.config.dt
        return binned_counts(times, per_step, self.config.edges_h)
