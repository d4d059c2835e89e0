"""Personas reproduce their marginal tables, render text, and embed interests at O(topics) model calls."""

from __future__ import annotations

import hashlib
import math

import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from lpm.archetypes import marginals
from lpm.archetypes.personas import VOCABULARY, Personas
from lpm.errors import ConfigError, DataFormatError

N = 200_000  # a binomial share p is estimated within sd sqrt(p(1-p)/N) <= 0.0011


class HashEmbedder:
    """A deterministic stand-in for MiniLM: a seeded random unit vector per text; counts texts embedded."""

    dim = 384

    def __init__(self) -> None:
        self.embedded = 0

    def embed(self, texts):
        self.embedded += len(texts)
        rows = [torch.randn(self.dim, generator=torch.Generator().manual_seed(
            int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little") % 2**62)) for t in texts]
        return F.normalize(torch.stack(rows), dim=1)


@pytest.fixture(scope="module")
def population() -> Personas:
    return Personas.sample(N, seed=7)


def _assert_matches(counts: torch.Tensor, probs, what: str) -> None:
    """Chi-square goodness of fit at the 0.1% level and every share within 5 binomial sd.

    With a fixed seed the test is deterministic; a correct sampler fails it with probability ~1e-3
    over seeds, a share off by 0.01 (about 9 sd at N = 200k) fails it surely.
    """
    counts = counts.double()
    n = float(counts.sum())
    expected = torch.tensor(probs, dtype=torch.float64) / sum(probs) * n
    _, p_value = stats.chisquare(counts.numpy(), expected.numpy())
    assert p_value > 1e-3, (what, counts.tolist(), expected.tolist(), p_value)
    share, target = counts / n, expected / n
    assert ((share - target).abs() <= 5 * (target * (1 - target) / n).sqrt()).all(), what


@pytest.mark.parametrize("name", list(marginals.CATEGORICAL))
def test_categorical_marginals_are_reproduced(population: Personas, name: str) -> None:
    labels, probs = marginals.CATEGORICAL[name]
    _assert_matches(torch.bincount(getattr(population, name), minlength=len(labels)), probs, name)


def test_roles_follow_their_table_given_activity(population: Personas) -> None:
    _assert_matches(torch.bincount(population.role, minlength=4), marginals.role_marginal(), "role")
    for level, row in enumerate(marginals.ROLE_GIVEN_ACTIVITY):
        members = population.role[population.activity == level]
        _assert_matches(torch.bincount(members, minlength=4), row, f"role | activity={level}")
    assert math.isclose(sum(marginals.role_marginal()), 1.0)


def test_interest_counts_and_topic_inclusion(population: Personas) -> None:
    counts, probs = marginals.INTEREST_COUNT
    per_user = population.interests.sum(1)
    _assert_matches(torch.bincount(per_user, minlength=4)[1:], probs, "interest count")
    inclusion = population.interests.double().mean(0)
    exact = torch.tensor(marginals.interest_inclusion(), dtype=torch.float64)
    assert math.isclose(float(exact.sum()), sum(c * p for c, p in zip(counts, probs)), rel_tol=1e-12)
    assert ((inclusion - exact).abs() <= 5 * (exact * (1 - exact) / N).sqrt()).all()


def test_sampling_is_seeded_and_explicit() -> None:
    a, b = Personas.sample(5000, seed=3), Personas.sample(5000, seed=3)
    c = Personas.sample(5000, generator=torch.Generator().manual_seed(3))
    for name in ("age", "gender", "leaning", "education", "activity", "role", "interests"):
        assert torch.equal(getattr(a, name), getattr(b, name)) and torch.equal(getattr(a, name), getattr(c, name))
    assert not torch.equal(a.interests, Personas.sample(5000, seed=4).interests)
    with pytest.raises(ConfigError, match="exactly one"):
        Personas.sample(10)
    with pytest.raises(ConfigError, match="num_agents"):
        Personas.sample(0, seed=0)


def _one(age=0, gender=0, leaning=1, education=1, activity=1, role=3, topics=(1, 4)) -> Personas:
    interests = torch.zeros(1, len(marginals.TOPICS), dtype=torch.bool)
    interests[0, list(topics)] = True
    codes = dict(age=age, gender=gender, leaning=leaning, education=education, activity=activity, role=role)
    return Personas(**{k: torch.tensor([v]) for k, v in codes.items()}, interests=interests)


def test_persona_text_rendering() -> None:
    assert _one().text(0) == (
        "An 18-29-year-old woman, politically moderate, with some college education. "
        "Interested in: health, medicine and vaccines; sports. Rarely posts about political or social issues. "
        "A bystander: mostly reads and scrolls past, seldom engages.")
    text = _one(age=3, gender=1, leaning=2, education=2, activity=3, role=0, topics=(0,)).text(0)
    assert text.startswith("A 65+-year-old man, politically conservative, with a bachelor's degree or more.")
    assert "Interested in: politics and elections." in text and "A spreader:" in text
    pop = Personas.sample(50, seed=0)
    assert pop.texts(torch.tensor([3, 1])) == [pop.text(3), pop.text(1)]
    assert pop.summary(0).endswith(VOCABULARY["role"][int(pop.role[0])])
    with pytest.raises(ConfigError):
        pop.text(50)


def test_interest_embeddings_cost_one_call_per_topic_not_per_user() -> None:
    pop = Personas.sample(3000, seed=1)
    embedder = HashEmbedder()
    emb = pop.interest_embeddings(embedder, dtype=torch.float64)
    assert emb.shape == (3000, 384) and embedder.embedded == len(marginals.TOPICS)
    topics = embedder.embed(list(marginals.TOPICS)).double()
    expected = F.normalize(pop.interests.double() @ topics, dim=1)
    torch.testing.assert_close(emb, expected)


def test_interest_coordinates_and_similarity_are_exact() -> None:
    pop = Personas.sample(400, seed=2)
    embedder = HashEmbedder()
    emb = pop.interest_embeddings(embedder, dtype=torch.float64)
    coords = pop.interest_coordinates(embedder, dtype=torch.float64)
    assert coords.shape == (400, len(marginals.TOPICS))
    torch.testing.assert_close(coords @ coords.T, emb @ emb.T, atol=1e-12, rtol=0)  # same geometry
    texts = ["Vaccine X alters your DNA", "The game went to overtime"]
    sim = pop.interest_similarity(texts, embedder, dtype=torch.float64)
    expected = emb @ F.normalize(embedder.embed(texts).double(), dim=1).T
    torch.testing.assert_close(sim, expected, atol=1e-12, rtol=0)


def test_distinct_rows_and_table_round_trip() -> None:
    pop = Personas.sample(20_000, seed=5)
    first, inverse, counts = pop.distinct()
    assert int(counts.sum()) == 20_000 and first.numel() < 20_000
    again = pop.select(first).select(inverse)
    for name in ("age", "gender", "leaning", "education", "activity", "role", "interests"):
        assert torch.equal(getattr(again, name), getattr(pop, name))
    frame = pop.to_frame()
    assert len(frame) == 20_000 and set(frame["role"].cat.categories) == set(VOCABULARY["role"])
    back = Personas.from_frame(frame)
    assert torch.equal(back.interests, pop.interests) and torch.equal(back.education, pop.education)
    frame["leaning"] = frame["leaning"].astype(str).replace("moderate", "centrist")
    with pytest.raises(DataFormatError, match="leaning"):
        Personas.from_frame(frame)
