"""Personas shape the initial state: opinion marginals by leaning, topic and interest against the
clipped-normal closed form, posting rates by reported activity, susceptibility and stubbornness by role."""

from __future__ import annotations

import math

import pytest
import torch

from lpm.archetypes import marginals
from lpm.archetypes.personas import VOCABULARY, Personas
from lpm.archetypes.population import OpinionTopic, PersonaPriors, opinion_means, persona_state
from lpm.errors import ConfigError
from lpm.state import PopulationState

N = 200_000
HEALTH = "health, medicine and vaccines"


def _clipped_normal_mean(mu: float, sigma: float) -> float:
    """E[clamp(X, -1, 1)] for X ~ N(mu, sigma^2)."""
    cdf = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))  # noqa: E731
    pdf = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    a, b = (-1 - mu) / sigma, (1 - mu) / sigma
    return mu * (cdf(b) - cdf(a)) + sigma * (pdf(a) - pdf(b)) - cdf(a) + (1 - cdf(b))


@pytest.fixture(scope="module")
def shaped() -> tuple[Personas, PopulationState]:
    personas = Personas.sample(N, seed=3)
    state = PopulationState.sample(N, seed=1, batch=2, topics=2)
    topics = [OpinionTopic(HEALTH, 1.0), OpinionTopic("sports", 0.0)]
    return personas, persona_state(state, personas, topics, seed=5)


def test_opinions_follow_leaning_direction_and_interest(shaped) -> None:
    personas, state = shaped
    priors = PersonaPriors()
    x = state.opinion[0].double()
    interested = personas.interests[:, marginals.TOPICS.index(HEALTH)]
    for code, lean in enumerate(priors.leaning_opinion):
        for wants in (False, True):
            rows = (personas.leaning == code) & (interested == wants)
            gain = priors.interest_gain if wants else 1.0
            expected = _clipped_normal_mean(gain * lean, gain * priors.opinion_spread)
            sample = x[rows, 0]
            assert abs(float(sample.mean()) - expected) < 4 * float(sample.std()) / math.sqrt(rows.sum()) + 1e-9
            # the sports opinion has no partisan direction: centred on 0 for every leaning
            assert abs(float(x[rows, 1].mean())) < 4 * float(x[rows, 1].std()) / math.sqrt(rows.sum())
    # interested moderates spread wider by the gain (clipping is negligible at 1.5 * 0.25)
    moderate = personas.leaning == VOCABULARY["leaning"].index("moderate")
    ratio = float(x[moderate & interested, 0].std() / x[moderate & ~interested, 0].std())
    assert ratio == pytest.approx(priors.interest_gain, rel=0.03)
    assert torch.equal(state.opinion_anchor, state.opinion) and torch.equal(state.opinion[0], state.opinion[1])
    assert opinion_means(personas, [OpinionTopic(HEALTH, -1.0)])[personas.leaning == 0].unique().tolist() == [0.5]


def test_posting_rates_follow_reported_activity(shaped) -> None:
    personas, state = shaped
    rate = state.traits.baseline_rate[0].double()
    levels = [float(rate[personas.activity == a].unique()) for a in range(len(marginals.ACTIVITY[0]))]
    assert levels == sorted(levels) and levels[-1] / levels[0] == pytest.approx(20.0)  # often 4.0 vs never 0.2
    expected_mean = sum(p * lv for p, lv in zip(marginals.ACTIVITY[1], levels))
    assert expected_mean == pytest.approx(1.0, abs=1e-6)  # normalised over the [Pew20] shares
    assert float(rate.mean()) == pytest.approx(1.0, abs=0.02)


def test_susceptibility_and_stubbornness_by_role(shaped) -> None:
    personas, state = shaped
    s, b = state.traits.susceptibility[0].double(), state.traits.stubbornness[0].double()
    assert float(s.min()) >= 0 and float(s.max()) <= 1 and float(b.min()) >= 0 and float(b.max()) <= 1
    by_role = {role: (float(s[personas.role == r].mean()), float(b[personas.role == r].mean()))
               for r, role in enumerate(marginals.ROLES)}
    assert by_role["spreader"][0] > by_role["bystander"][0] > by_role["verifier"][0]
    assert by_role["verifier"][1] > by_role["commentator"][1] > by_role["bystander"][1]
    # bystanders: shift 0 on susceptibility, so the Kumaraswamy(2, 2) mean 2 B(1.5, 2) = 0.5333
    assert by_role["bystander"][0] == pytest.approx(2 * math.gamma(1.5) * math.gamma(2) / math.gamma(3.5), abs=0.005)
    state.validate()


def test_same_seed_same_state_and_bad_input() -> None:
    personas = Personas.sample(500, seed=0)
    state = PopulationState.sample(500, seed=0)
    a, b = persona_state(state, personas, seed=2), persona_state(state, personas, seed=2)
    assert torch.equal(a.opinion, b.opinion) and torch.equal(a.traits.susceptibility, b.traits.susceptibility)
    assert not torch.equal(a.opinion, persona_state(state, personas, seed=3).opinion)
    with pytest.raises(ConfigError, match="500 agents"):
        persona_state(state, Personas.sample(400, seed=0))
    with pytest.raises(ConfigError, match="1 OpinionTopic"):
        persona_state(state, personas, [OpinionTopic(), OpinionTopic()])
    with pytest.raises(ConfigError, match="interest topic"):
        OpinionTopic("knitting")
    with pytest.raises(ConfigError, match="direction"):
        OpinionTopic(HEALTH, 2.0)
