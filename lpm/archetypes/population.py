"""Personas shape the initial population: opinions by leaning and topic, posting rates, susceptibility.

:func:`persona_state` replaces, in a :class:`~lpm.state.PopulationState`, what the personas say about
each agent and keeps the rest (emotions, cascade state, confidence):

* **Opinions** ``(B, N, T)``. Each opinion topic ``t`` is linked (:class:`OpinionTopic`) to an
  interest topic of :data:`~lpm.archetypes.marginals.TOPICS` and a *partisan direction* ``d_t`` in
  [-1, 1]: the side of the topic's positive pole that conservatives lean to (+1), liberals (-1) or
  neither (0). An agent's opinion is ``clamp(gain * (d_t * lean + noise), -1, 1)`` with ``lean`` =
  -0.5 / 0 / +0.5 for liberal / moderate / conservative and ``noise ~ N(0, spread^2)``, where
  ``gain`` is :attr:`PersonaPriors.interest_gain` for agents interested in the topic, else 1
  (interested users hold more extreme views: an assumption). Moderates and topics with ``d_t = 0``
  are centred on 0. The leaning shares come from [Gallup21] (:data:`~lpm.archetypes.marginals.LEANING`).
* **Posting rate** (``traits.baseline_rate``, the Hawkes baseline multiplier):
  :meth:`~lpm.archetypes.personas.Personas.posting_rate`, by the reported activity level of
  [Pew20] (never / rarely / sometimes / often), mean 1 over the population.
* **Susceptibility and stubbornness** (``traits``): a Beta-like draw (Kumaraswamy(2, 2), as
  :meth:`lpm.state.Traits.sample`) shifted by role: spreaders more susceptible, verifiers more
  stubborn (:attr:`PersonaPriors.role_susceptibility`, :attr:`PersonaPriors.role_stubbornness`;
  assumptions, since no survey measures either, in the spirit of [Grinberg19]'s concentration of
  spreading in a few).

Every number that is an assumption is a field of :class:`PersonaPriors`, so a calibration can move it.
Opinions and traits are drawn from a generator seeded per call; the same personas and seed give the
same state.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from lpm.archetypes import marginals
from lpm.archetypes.personas import VOCABULARY, Personas
from lpm.errors import ConfigError
from lpm.state import PopulationState

__all__ = ["OpinionTopic", "PersonaPriors", "persona_state", "opinion_means"]


@dataclass(frozen=True)
class OpinionTopic:
    """What an opinion dimension is about, for personas.

    Args:
        interest: the interest topic it belongs to, one of :data:`~lpm.archetypes.marginals.TOPICS`.
        direction: partisan direction in [-1, 1]: +1 when conservatives lean to the positive pole,
            -1 liberals, 0 neither.
    """

    interest: str = "politics and elections"
    direction: float = 1.0

    def __post_init__(self) -> None:
        if self.interest not in marginals.TOPICS:
            raise ConfigError(f"Expected an interest topic among {list(marginals.TOPICS)} (got {self.interest!r})")
        if not -1.0 <= float(self.direction) <= 1.0:
            raise ConfigError(f"Expected a direction in [-1, 1] (got {self.direction})")


@dataclass(frozen=True)
class PersonaPriors:
    """The assumed numbers of :func:`persona_state` (see the module docstring).

    Attributes:
        leaning_opinion: mean opinion on a direction-+1 topic per leaning (liberal, moderate, conservative).
        opinion_spread: standard deviation of an agent's opinion around its leaning's mean.
        interest_gain: how much further from 0 the opinions of users interested in the topic spread.
        role_susceptibility, role_stubbornness: added to the Kumaraswamy(2, 2) draw per role
            (spreader, commentator, verifier, bystander), then clamped to [0, 1].
    """

    leaning_opinion: tuple[float, float, float] = (-0.5, 0.0, 0.5)
    opinion_spread: float = 0.25
    interest_gain: float = 1.5
    role_susceptibility: tuple[float, float, float, float] = (0.2, 0.05, -0.25, 0.0)
    role_stubbornness: tuple[float, float, float, float] = (0.1, 0.15, 0.25, -0.1)

    def __post_init__(self) -> None:
        if len(self.leaning_opinion) != len(VOCABULARY["leaning"]) or not all(-1 <= v <= 1 for v in self.leaning_opinion):
            raise ConfigError(f"Expected leaning_opinion as {len(VOCABULARY['leaning'])} values in [-1, 1] "
                              f"(got {self.leaning_opinion})")
        if not (self.opinion_spread >= 0 and self.interest_gain >= 0):
            raise ConfigError(f"Expected opinion_spread >= 0 and interest_gain >= 0 (got {self.opinion_spread}, "
                              f"{self.interest_gain})")
        for name in ("role_susceptibility", "role_stubbornness"):
            if len(getattr(self, name)) != len(marginals.ROLES):
                raise ConfigError(f"Expected {name} as one value per role {marginals.ROLES} (got {getattr(self, name)})")


def opinion_means(personas: Personas, topics: Sequence[OpinionTopic], priors: PersonaPriors = PersonaPriors()) -> Tensor:
    """``(N, T)`` each agent's expected opinion per topic: ``direction_t * leaning_opinion[leaning_i]``."""
    lean = torch.tensor(priors.leaning_opinion, dtype=torch.float64)[personas.leaning]
    direction = torch.tensor([float(t.direction) for t in topics], dtype=torch.float64)
    return lean[:, None] * direction[None, :]


def persona_state(state: PopulationState, personas: Personas, topics: Sequence[OpinionTopic] | None = None, *,
                  priors: PersonaPriors = PersonaPriors(), seed: int = 0) -> PopulationState:
    """``state`` with opinions, anchors, posting rates, susceptibility and stubbornness set by the personas.

    Args:
        state: the population (B scenarios of N agents, T opinion topics).
        personas: N personas, in agent order.
        topics: one :class:`OpinionTopic` per opinion dimension; default: every dimension political
            (``OpinionTopic()``).
        priors: the assumed numbers.
        seed: seed of the opinion and trait draws.

    Shapes:
        state.opinion ``(B, N, T)`` -> the same shapes; every scenario of the batch gets the same draws.

    Raises:
        ConfigError: personas for another N, or a number of topics other than T.
    """
    if not isinstance(personas, Personas) or personas.num_agents != state.num_agents:
        got = personas.num_agents if isinstance(personas, Personas) else type(personas).__name__
        raise ConfigError(f"Expected personas for the state's {state.num_agents} agents (got {got})")
    t = state.opinion.shape[-1]
    topics = tuple(topics) if topics is not None else tuple(OpinionTopic() for _ in range(t))
    if len(topics) != t or not all(isinstance(x, OpinionTopic) for x in topics):
        raise ConfigError(f"Expected {t} OpinionTopic values, one per opinion dimension (got {len(topics)})")
    n, b = state.num_agents, state.batch_size
    gen = torch.Generator().manual_seed(int(seed))
    noise = torch.randn(n, t, generator=gen, dtype=torch.float64) * priors.opinion_spread
    interested = personas.interests[:, [marginals.TOPICS.index(x.interest) for x in topics]]  # (N, T)
    gain = torch.where(interested, torch.tensor(priors.interest_gain, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
    opinion = (gain * (opinion_means(personas, topics, priors) + noise)).clamp(-1.0, 1.0)
    u = torch.rand(2, n, generator=gen, dtype=torch.float64)
    kumaraswamy = (1 - (1 - u) ** 0.5) ** 0.5  # Beta(2, 2)-like, mean ~0.53, as Traits.sample
    susceptibility = (kumaraswamy[0] + torch.tensor(priors.role_susceptibility, dtype=torch.float64)[personas.role])
    stubbornness = (kumaraswamy[1] + torch.tensor(priors.role_stubbornness, dtype=torch.float64)[personas.role])
    like = state.opinion

    def per_agent(x: Tensor) -> Tensor:
        return x.clamp(0.0, 1.0).to(dtype=like.dtype, device=like.device).expand(b, n).contiguous()

    traits = dataclasses.replace(
        state.traits,
        susceptibility=per_agent(susceptibility),
        stubbornness=per_agent(stubbornness),
        baseline_rate=personas.posting_rate(torch.float64).to(dtype=like.dtype, device=like.device).expand(b, n).contiguous(),
    )
    x = opinion.to(dtype=like.dtype, device=like.device).expand(b, n, t).contiguous()
    return state.replace(opinion=x, opinion_anchor=x, traits=traits)
