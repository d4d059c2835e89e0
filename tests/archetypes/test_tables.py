"""Decision tables: one request per new (archetype, context); gathers by archetype equal per-agent
loops; gradients of simulated observables reach the behaviour head."""

from __future__ import annotations

import hashlib
from typing import Sequence

import pytest
import torch
import torch.nn.functional as F

import lpm
from lpm import observables, relax
from lpm.archetypes import ArchetypeDrive, ArchetypeScaled, Decision, DecisionTable, Usage
from lpm.archetypes.decision import EMOTIONS
from lpm.dynamics import Cascade, Item, init_cascade_state
from lpm.errors import BackendError, ConfigError
from lpm.interventions import Effects, FactCheckLabel, Shape
from lpm.rng import CounterRNG
from tests.helpers import make_state

PERSONAS = [f"persona number {k}, with opinions of its own" for k in range(4)]
CONTEXTS = ["a claim about vaccines", "a rebuttal by health authorities", "a fact-check label"]


def _unit(text: str) -> float:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:6], "little") / 2.0**48


class CountingBackend:
    """A deterministic fake backend: numbers from a hash of the request; counts what it is asked."""

    name, model, prompt_version = "fake", "hash", "v1"

    def __init__(self) -> None:
        self.usage = Usage()
        self.requests: list[tuple[str, str]] = []

    def decide(self, requests: Sequence[tuple[str, str]]) -> list[Decision]:
        self.requests.extend(requests)
        self.usage.add(Usage(calls=len(requests)))
        out = []
        for persona, context in requests:
            u = [_unit(f"{persona}|{context}|{j}") for j in range(4)]
            out.append(Decision(0.02 + 0.5 * u[0], 2 * u[1] - 1, (2 * u[2] - 1, 2 * u[3] - 1),
                                f"reaction {int(8 * u[0])} to {context[:12]}"))
        return out


class SmallEmbedder:
    """Seeded random unit vectors of width 8 (a cheap stand-in for MiniLM)."""

    def __init__(self, dim: int = 8) -> None:
        self.dim, self.embedded = dim, 0

    def embed(self, texts):
        self.embedded += len(texts)
        rows = [torch.randn(self.dim, generator=torch.Generator().manual_seed(int(_unit(t) * 2**40))) for t in texts]
        return F.normalize(torch.stack(rows), dim=1)


@pytest.fixture
def table() -> DecisionTable:
    return DecisionTable.build(PERSONAS, CONTEXTS, CountingBackend(), SmallEmbedder())


def test_build_asks_each_pair_once(table: DecisionTable) -> None:
    k, c = len(PERSONAS), len(CONTEXTS)
    assert table.share_probability.shape == (k, c) and table.stance_shift.shape == (k, c)
    assert table.emotion_impulse.shape == (k, c, len(EMOTIONS)) and table.reaction_embeddings.shape == (k, c, 8)
    assert len(table.backend.requests) == k * c and set(table.backend.requests) == {(p, x) for p in PERSONAS for x in CONTEXTS}
    reference = CountingBackend().decide([(PERSONAS[2], CONTEXTS[1])])[0]
    assert table.share_probability[2, 1].item() == pytest.approx(reference.share_probability)
    assert table.reactions[2][1] == reference.reaction
    torch.testing.assert_close(table.reaction_embeddings[2, 1], SmallEmbedder().embed([reference.reaction])[0])
    assert torch.isfinite(table.share_logit).all()


def test_extend_asks_only_for_new_pairs(table: DecisionTable) -> None:
    backend = table.backend
    before = len(backend.requests)
    bigger = table.extend([CONTEXTS[0], "a guidance message", CONTEXTS[2], "a guidance message", "a new rumour"])
    asked = backend.requests[before:]
    assert len(asked) == 2 * len(PERSONAS)  # K per genuinely new context, nothing for the old ones
    assert {x for _, x in asked} == {"a guidance message", "a new rumour"}
    assert bigger.contexts == tuple(CONTEXTS) + ("a guidance message", "a new rumour")
    torch.testing.assert_close(bigger.share_probability[:, :3], table.share_probability)
    assert table.num_contexts == 3  # the original is unchanged
    assert bigger.extend(CONTEXTS) is bigger and len(backend.requests) == before + len(asked)
    sub = bigger.select(["a new rumour", CONTEXTS[0]])
    torch.testing.assert_close(sub.stance_shift, bigger.stance_shift[:, [4, 0]])
    with pytest.raises(ConfigError, match="context of the table"):
        bigger.select(["never asked"])


def test_a_short_answer_is_an_error(table: DecisionTable) -> None:
    class Short(CountingBackend):
        def decide(self, requests):
            return super().decide(requests)[:-1]

    with pytest.raises(BackendError, match="decisions"):
        DecisionTable.build(PERSONAS, CONTEXTS, Short(), SmallEmbedder())


def _drive(table: DecisionTable, n: int = 12, seed: int = 0, items=None) -> ArchetypeDrive:
    gen = torch.Generator().manual_seed(seed)
    items = items or [Item(source=0, text=CONTEXTS[0], stance=1.0, topic=0),
                      Item(source=3, text=CONTEXTS[1], stance=-1.0, topic=1),
                      Item(source=5, text=CONTEXTS[2], stance=0.5, topic=0)]
    drive = ArchetypeDrive(table, torch.randint(0, len(PERSONAS), (n,), generator=gen), items,
                           opinion_rate=0.7, emotion_rate=0.4)
    with torch.no_grad():  # a trained-looking head, so offsets are part of what is compared
        drive.head.linear.weight.normal_(0, 0.5, generator=gen)
        drive.head.linear.bias.normal_(0, 0.1, generator=gen)
    return drive.double()


def test_untrained_head_leaves_the_decisions_unchanged(table: DecisionTable) -> None:
    drive = ArchetypeDrive(table, torch.zeros(5, dtype=torch.int64), [Item(source=0, text=CONTEXTS[1])])
    share, stance, impulse = drive.tables()
    torch.testing.assert_close(share, table.share_logit[:, 1:2])
    torch.testing.assert_close(drive(), table.share_logit[:, 1:2])
    torch.testing.assert_close(stance, table.stance_shift[:, 1:2])
    torch.testing.assert_close(impulse, table.emotion_impulse[:, 1:2])
    with pytest.raises(ConfigError, match="context of the table"):
        ArchetypeDrive(table, torch.zeros(5, dtype=torch.int64), [Item(source=0, text="unknown text")])
    with pytest.raises(ConfigError, match="archetypes in"):
        ArchetypeDrive(table, torch.full((5,), 9), [Item(source=0, text=CONTEXTS[1])])


def test_cascade_prior_gathers_by_archetype(table: DecisionTable) -> None:
    drive = _drive(table)
    cascade = Cascade(drive_items(), transmissibility=0.2, prior=drive, archetype=drive.archetype).double()
    state = init_cascade_state(make_state(12, batch=2, topics=2), 3)
    logits = cascade.reshare_logit(state)
    prior = drive()
    base = torch.logit(torch.tensor(0.2, dtype=torch.float64))
    for b in range(2):
        for i in range(12):  # the explicit per-agent loop
            for c in range(3):
                expected = base + prior[int(drive.archetype[i]), c]
                torch.testing.assert_close(logits[b, i, c], expected)
    with pytest.raises(ConfigError, match="prior"):
        Cascade(drive_items()[:2], prior=drive, archetype=drive.archetype)


def drive_items():
    return [Item(source=0, text=CONTEXTS[0], stance=1.0, topic=0), Item(source=3, text=CONTEXTS[1], stance=-1.0, topic=1),
            Item(source=5, text=CONTEXTS[2], stance=0.5, topic=0)]


def test_drive_apply_equals_a_per_agent_loop(table: DecisionTable) -> None:
    drive = _drive(table, items=drive_items())
    gen = torch.Generator().manual_seed(1)
    opinion = torch.rand(2, 12, 2, generator=gen, dtype=torch.float64) * 2 - 1
    emotion = torch.randn(2, 12, 2, generator=gen, dtype=torch.float64)
    new = torch.rand(2, 12, 3, generator=gen, dtype=torch.float64) * (torch.rand(2, 12, 3, generator=gen) < 0.5)
    got_opinion, got_emotion = drive.apply(opinion, emotion, new)
    with torch.no_grad():
        _, stance, impulse = drive.tables()
    rate_o, rate_e = float(drive.opinion_rate.detach()), float(drive.emotion_rate.detach())
    topics, stances = [0, 1, 0], [1.0, -1.0, 0.5]
    for b in range(2):
        for i in range(12):
            a = int(drive.archetype[i])
            for t in range(2):
                push = sum(float(new[b, i, c]) * float(stance[a, c]) * stances[c] for c in range(3) if topics[c] == t)
                step = torch.tanh(torch.tensor(rate_o * push, dtype=torch.float64))
                x = opinion[b, i, t]
                torch.testing.assert_close(got_opinion[b, i, t], x + step - step.abs() * x)
            kick = sum(float(new[b, i, c]) * impulse[a, c] for c in range(3))
            torch.testing.assert_close(got_emotion[b, i], emotion[b, i] + rate_e * kick)
    assert got_opinion.abs().max() <= 1  # saturating: opinions stay in [-1, 1]
    unexposed = new.sum(-1) == 0
    torch.testing.assert_close(got_opinion[unexposed], opinion[unexposed])


def _model(table: DecisionTable, n: int, seed: int = 0) -> lpm.Model:
    drive = _drive(table, n=n, seed=seed, items=[Item(source=(0, 1), text=CONTEXTS[0], stance=1.0, topic=0)])
    cascade = Cascade([Item(source=(0, 1), text=CONTEXTS[0], stance=1.0, topic=0)], transmissibility=0.5,
                      prior=drive, archetype=drive.archetype, alignment_weight=0.8, attention=0.6, record_trees=False)
    return lpm.Model(cascade=cascade, archetype_drive=drive, dt=0.5).double()


def test_model_step_applies_the_drive_to_new_exposures(table: DecisionTable) -> None:
    graph = lpm.Graph.holme_kim(40, 3, 0.3, seed=1)
    model = _model(table, 40)
    state = init_cascade_state(make_state(40, batch=2, topics=1), 1)
    rng = CounterRNG.from_seed(0, 2)
    mid, _ = model.step(state, graph, 0, rng, relax.Hard())
    after, _ = model.step(mid, graph, 1, rng, relax.Hard())
    new = after.exposures - mid.exposures
    assert bool((new > 0).any())
    opinion, emotion = model.archetype_drive.apply(mid.opinion, mid.emotion, new)
    torch.testing.assert_close(after.opinion, opinion)
    torch.testing.assert_close(after.emotion, emotion)
    with pytest.raises(ConfigError, match="cascade"):
        lpm.Model(emotion=lpm.dynamics.EmotionContagion(), archetype_drive=model.archetype_drive)
    assert model.with_interventions([]).archetype_drive is model.archetype_drive


def test_gradient_of_simulated_reshares_reaches_the_head(table: DecisionTable) -> None:
    graph = lpm.Graph.holme_kim(60, 3, 0.3, seed=2)
    model = _model(table, 60, seed=3)
    state = make_state(60, batch=2, topics=1)
    head = model.archetype_drive.head.linear

    def loss() -> torch.Tensor:
        out = lpm.simulate(model, state, graph, steps=10, seed=[5, 6], estimator=relax.RelaxedBernoulli(0.5),
                           record=dict(observables.CASCADE))
        final = out.final
        return out["reshares"][-1].sum() + final.opinion.sum() + final.emotion.sum()

    model.zero_grad()
    loss().backward()
    grad = head.weight.grad.clone()
    assert torch.isfinite(grad).all() and grad.abs().max() > 1e-6
    assert all(float(grad[row].abs().max()) > 0 for row in range(grad.shape[0]))  # every behaviour channel
    h = 1e-6
    for row, col in ((0, 2), (1, 5)):  # reshare-logit and stance channels, float64 central differences
        with torch.no_grad():
            head.weight[row, col] += h
            up = float(loss())
            head.weight[row, col] -= 2 * h
            down = float(loss())
            head.weight[row, col] += h
        numeric = (up - down) / (2 * h)
        assert abs(numeric - float(grad[row, col])) <= 1e-4 * max(1.0, abs(numeric)), (row, col, numeric, float(grad[row, col]))


def test_archetype_scaled_intervention(table: DecisionTable) -> None:
    scale = torch.tensor([0.0, 0.5, 1.0, 2.0])
    label = ArchetypeScaled(FactCheckLabel(0, at=0.0, width=0.1), scale)
    shape = Shape(batch=2, agents=4, items=1, edges=0, emotions=2, topics=1, like=torch.zeros((), dtype=torch.float64))
    plain, scaled = Effects(), Effects()
    FactCheckLabel(0, at=0.0, width=0.1).double().apply(plain, 5.0, shape)
    label.double().apply(scaled, 5.0, shape)
    torch.testing.assert_close(scaled.reshare_logit, plain.reshare_logit * scale.double()[None, :, None])
    label.restricted_to(torch.tensor([True, False]))
    masked = Effects()
    label.apply(masked, 5.0, shape)
    assert masked.reshare_logit[1].abs().max() == 0 and masked.reshare_logit[0, 3].abs().max() > 0
    assert [n for n, _ in label.named_parameters()] == ["inner.at", "inner.raw_strength"]
