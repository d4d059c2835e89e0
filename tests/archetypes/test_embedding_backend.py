"""The offline embedding backend, with the real packaged all-MiniLM-L6-v2: deterministic, in range, and
monotone where the anchors are unambiguous."""

from __future__ import annotations

import importlib.util

import pytest

if importlib.util.find_spec("sentence_transformers") is None or importlib.util.find_spec("all_minilm_l6_v2") is None:
    pytest.skip("needs the embed extra (pip install 'lpm[embed]')", allow_module_level=True)

from lpm.archetypes import EMOTIONS, Decision, EmbeddingBackend, make_backend  # noqa: E402
from lpm.archetypes.personas import Personas  # noqa: E402
from lpm.embed import TextEmbedder  # noqa: E402
from lpm.errors import ConfigError  # noqa: E402

ALARMING = ("BREAKING: the government is secretly putting microchips in vaccines to track your children! "
            "Share before they delete this!")
BLAND = "The city council approved the updated schedule for street cleaning next month."
GOOD = "Local team wins the championship after a thrilling final; fans celebrate all night."


def _persona(role: int, activity: int) -> str:
    import torch

    from lpm.archetypes import marginals

    interests = torch.zeros(1, len(marginals.TOPICS), dtype=torch.bool)
    interests[0, [0, 1]] = True
    codes = dict(age=1, gender=0, leaning=1, education=1, activity=activity, role=role)
    return Personas(**{k: torch.tensor([v]) for k, v in codes.items()}, interests=interests).text(0)


SPREADER, COMMENTATOR, VERIFIER, BYSTANDER = _persona(0, 3), _persona(1, 2), _persona(2, 2), _persona(3, 0)
PERSONAS = [SPREADER, COMMENTATOR, VERIFIER, BYSTANDER]


@pytest.fixture(scope="module")
def embedder() -> TextEmbedder:
    return TextEmbedder()


@pytest.fixture(scope="module")
def decisions(embedder: TextEmbedder) -> dict[tuple[str, str], Decision]:
    backend = EmbeddingBackend(embedder)
    requests = [(p, c) for c in (ALARMING, BLAND, GOOD) for p in PERSONAS]
    return dict(zip(requests, backend.decide(requests)))


def test_identity_and_usage(embedder: TextEmbedder) -> None:
    backend = make_backend("embedding", embedder=embedder)
    assert isinstance(backend, EmbeddingBackend)
    assert backend.name == "embedding" and backend.model == "all-MiniLM-L6-v2" and "anchors" in backend.prompt_version
    backend.decide([(SPREADER, BLAND), (VERIFIER, BLAND), (SPREADER, GOOD)])
    assert (backend.usage.calls, backend.usage.prompt_tokens, backend.usage.completion_tokens) == (3, 0, 0)
    assert backend.decide([]) == []


def test_in_range_and_deterministic(embedder: TextEmbedder, decisions) -> None:
    for d in decisions.values():
        assert 0 <= d.share_probability <= 1 and -1 <= d.stance_shift <= 1
        assert len(d.emotion_impulse) == len(EMOTIONS) and all(-1 <= v <= 1 for v in d.emotion_impulse)
        assert d.reaction.strip() and len(d.reaction) <= 300
    # a fresh embedder, requests one by one (other padding in every batch): the same decisions
    other = EmbeddingBackend(TextEmbedder())
    for request, decision in list(decisions.items())[:4]:
        assert other.decide([request]) == [decision]


def test_monotone_on_clear_cases(decisions) -> None:
    def get(persona, context):
        return decisions[(persona, context)]

    for persona in PERSONAS:
        alarming, bland, good = get(persona, ALARMING), get(persona, BLAND), get(persona, GOOD)
        assert alarming.emotion_impulse[1] > bland.emotion_impulse[1] + 0.3  # arousal: alarming rumour >> notice
        assert alarming.emotion_impulse[0] < 0 < good.emotion_impulse[0]  # valence: bad vs good news
        assert alarming.share_probability > bland.share_probability
    for context in (ALARMING, BLAND, GOOD):
        # different archetypes, different answers: the spreader shares more than the bystander,
        # the verifier believes an unsourced rumour less than the spreader
        assert get(SPREADER, context).share_probability > get(BYSTANDER, context).share_probability
    assert get(VERIFIER, ALARMING).stance_shift < get(SPREADER, ALARMING).stance_shift
    assert get(SPREADER, ALARMING).reaction != get(BYSTANDER, BLAND).reaction


def test_bad_requests_are_config_errors(embedder: TextEmbedder) -> None:
    backend = EmbeddingBackend(embedder)
    for bad in ([("persona", "")], [("only one",)], ["not a pair"]):
        with pytest.raises(ConfigError, match="request 0"):
            backend.decide(bad)
    assert backend.usage.calls == 0
