"""A decision backend without an LLM: similarities of sentence embeddings to labelled anchor statements.

This is a heuristic, not a model of people. It reads a persona and a piece of content the way a
bag of associations would: content that resembles the "alarming" anchors gets high arousal, a
persona whose sentences resemble the "reshares quickly" anchors gets a higher share probability.
It cannot follow negation ("the claim is false" resembles "false claim"), irony or facts, and its
numbers are not calibrated to any survey. It exists so that the whole pipeline (archetypes ->
decisions -> dynamics) runs offline and deterministically, as the default when no LLM endpoint is
configured, and as a baseline that an LLM backend should beat.

How a decision is computed, for a persona ``p`` and a context ``c`` (all embeddings are unit
all-MiniLM-L6-v2 vectors; ``cos`` is their dot product):

* An *axis* is a pair of anchor sets (:data:`ANCHORS`). Its raw score for a text ``x`` is
  ``mean_j cos(x, pos_j) - mean_j cos(x, neg_j)``, and its z-score that divided by
  :data:`SCALE` = 0.1 (MiniLM differences between opposing anchor sets mostly fall in +-0.3).
* Context axes, scored on the whole context: ``share`` (must-see vs routine), ``credibility``
  (sourced and verified vs rumour), ``valence`` (good vs bad news), ``arousal`` (alarming vs calm).
* Persona axes, scored per sentence of the persona text, keeping the sentence whose score has the
  largest magnitude (one sentence usually carries the role): ``sharing`` (reshares a lot vs
  scrolls past) and ``credulity`` (passes things on unchecked vs checks sources).
* Relevance: the largest cosine between a persona sentence and the context (interest match),
  standardised as ``(cos - 0.2) / SCALE``.

The fields are monotone transforms of these z-scores, with the gains written out in
:meth:`EmbeddingBackend.score`:

* ``share_probability = sigmoid(-3.2 + 0.4 share + 0.3 arousal + 0.4 sharing + 0.3 relevance)``:
  increasing in each; about 0.04 at all-zero scores, in line with the prompt's "0.01 to 0.1 is common".
* ``stance_shift = 0.35 tanh(0.5 (0.6 credibility + 0.4 credulity))``: credible content and
  credulous personas move toward the content; within the prompt's "rarely more than 0.3".
* ``emotion_impulse``: valence ``tanh(0.5 valence) (0.6 + 0.4 sigmoid(relevance))`` and arousal
  ``tanh(0.5 arousal + 0.15 sharing + 0.2 relevance)``; both increasing in the context axis.
* ``reaction``: a one-line template from the three numbers (e.g. "Sharing this right away. I
  believe it. This makes me angry and worried."), so its embedding varies with the decision.

Numbers are rounded to 4 decimals, so the same request gives the same decision whatever else is in
the batch (embedding batches differ in padding, which moves the last float bits).
"""

from __future__ import annotations

import math
import re
from typing import Optional, Sequence

import torch
from torch import Tensor

from lpm.archetypes.decision import EMOTIONS, PROMPT_VERSION, Decision, Usage, parse_decision
from lpm.errors import BackendError, ConfigError

__all__ = ["ANCHORS", "ANCHOR_VERSION", "SCALE", "EmbeddingBackend"]

#: Part of the cache key: bump when an anchor, a gain or a template changes.
ANCHOR_VERSION = "anchors-v1"

#: Divides raw axis scores into z-scores.
SCALE = 0.1

#: Anchor statements per axis: ``(positive, negative)``.
ANCHORS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # context axes
    "share": (
        ("Everyone needs to see this, share it now!", "This is huge news, spread the word.",
         "I have to repost this right away.", "Breaking: you won't believe what just happened."),
        ("This is routine and not worth sharing.", "A boring everyday update nobody cares about.",
         "Nothing new here, just scroll past.", "An ordinary notice with no news in it."),
    ),
    "credibility": (
        ("Scientists confirmed this with evidence.", "Official data from public health authorities.",
         "A verified, accurate report citing its sources.", "Experts explain the facts calmly and clearly."),
        ("A hoax: a baseless conspiracy theory.", "Unverified rumour from an anonymous account, no proof.",
         "A secret they don't want you to know!", "Misinformation spreading online."),
    ),
    "valence": (
        ("Wonderful, hopeful and reassuring news.", "Something good happened, people are happy and safe.",
         "A heartwarming success everyone celebrates."),
        ("Terrible, frightening and dangerous news.", "Something bad happened, people are hurt and afraid.",
         "A disgusting outrage that makes people angry."),
    ),
    "arousal": (
        ("Shocking! Urgent alarming danger, act now!", "Outrageous and terrifying, people are furious and panicking.",
         "Emergency: a threat to your health and your children."),
        ("A calm, routine, uneventful update.", "Quiet, relaxing and ordinary, nothing to worry about.",
         "A dull scheduled announcement of minor details."),
    ),
    # persona axes
    "sharing": (
        ("Reshares striking posts quickly to many followers.", "Posts constantly and spreads everything they see.",
         "Very active online, always sharing and commenting."),
        ("Never posts and rarely engages online.", "Mostly reads quietly and scrolls past.",
         "Keeps to themselves and does not share things."),
    ),
    "credulity": (
        ("Shares dramatic posts without checking whether they are true.", "Believes what they read online.",
         "Easily convinced by viral claims."),
        ("Checks sources and fact-checks claims before believing them.", "Skeptical of viral claims and asks for evidence.",
         "Trusts scientists and verified information over rumours."),
    ),
}

_CONTEXT_AXES = ("share", "credibility", "valence", "arousal")
_PERSONA_AXES = ("sharing", "credulity")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def _sentences(text: str) -> list[str]:
    parts = [s.strip() for s in _SENTENCE.split(text.strip()) if s.strip()]
    return parts or [text.strip()]


def _reaction(share: float, stance: float, valence: float, arousal: float) -> str:
    """A one-line reaction from the numbers (a template, so its embedding follows the decision)."""
    if share >= 0.3:
        act = "Sharing this right away."
    elif share >= 0.1:
        act = "Might pass this on."
    elif share >= 0.03:
        act = "Interesting, but not sharing it."
    else:
        act = "Scrolling past."
    if stance > 0.1:
        belief = "I believe it."
    elif stance < -0.1:
        belief = "I doubt it is true."
    else:
        belief = "Not sure what to make of it."
    if arousal > 0.4 and valence < -0.2:
        feeling = " This makes me angry and worried."
    elif valence > 0.3:
        feeling = " Good to hear."
    elif arousal < -0.3:
        feeling = " Nothing to get worked up about."
    else:
        feeling = ""
    return f"{act} {belief}{feeling}"


class EmbeddingBackend:
    """Decisions from anchor similarities of all-MiniLM-L6-v2 embeddings (see the module docstring).

    Args:
        embedder: anything with ``embed(texts) -> (n, D)`` unit rows; a :class:`lpm.embed.TextEmbedder`
            (the packaged all-MiniLM-L6-v2, offline) by default.
        model: the embedder's model name, recorded in cache keys.

    Attributes:
        name: ``"embedding"``.
        model: the embedder's model name.
        prompt_version: :data:`~lpm.archetypes.decision.PROMPT_VERSION` and :data:`ANCHOR_VERSION`.
        usage: one call per decision; no tokens.
    """

    name = "embedding"

    def __init__(self, embedder=None, *, model: Optional[str] = None) -> None:
        from lpm.embed import DEFAULT_MODEL, TextEmbedder

        self.model = str(model) if model else DEFAULT_MODEL
        self.embedder = embedder if embedder is not None else TextEmbedder(self.model)
        if not callable(getattr(self.embedder, "embed", None)):
            raise ConfigError(f"Expected an embedder with an embed(texts) method (got {type(self.embedder).__name__})")
        self.prompt_version = f"{PROMPT_VERSION}+{ANCHOR_VERSION}"
        self.usage = Usage()
        self._anchors: Optional[dict[str, tuple[Tensor, Tensor]]] = None

    def _embed(self, texts: Sequence[str]) -> Tensor:
        out = self.embedder.embed(list(texts))
        if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != len(texts):
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise BackendError(f"Expected the embedder to return a ({len(texts)}, D) tensor (got {got})")
        return torch.nn.functional.normalize(out.to(torch.float64), dim=1)

    def _axis(self, x: Tensor, axis: str) -> Tensor:
        """``(n,)`` z-scores of rows ``x`` on ``axis``."""
        if self._anchors is None:  # embedded once per backend, in one batch
            texts = [t for pos, neg in ANCHORS.values() for t in (*pos, *neg)]
            rows = iter(self._embed(texts))
            self._anchors = {name: (torch.stack([next(rows) for _ in pos]), torch.stack([next(rows) for _ in neg]))
                             for name, (pos, neg) in ANCHORS.items()}
        pos, neg = self._anchors[axis]
        return ((x @ pos.T).mean(1) - (x @ neg.T).mean(1)) / SCALE

    def score(self, persona: str, context: str) -> dict[str, float]:
        """The z-scores behind one decision: context axes, persona axes and relevance."""
        sentences = _sentences(persona)
        s = self._embed(sentences)
        c = self._embed([context])
        scores = {axis: float(self._axis(c, axis)[0]) for axis in _CONTEXT_AXES}
        for axis in _PERSONA_AXES:
            per_sentence = self._axis(s, axis)
            scores[axis] = float(per_sentence[per_sentence.abs().argmax()])
        scores["relevance"] = (float((s @ c.T).max()) - 0.2) / SCALE
        return scores

    @staticmethod
    def transform(z: dict[str, float]) -> dict:
        """Decision fields from z-scores (monotone; see the module docstring)."""
        sigmoid = lambda v: 1.0 / (1.0 + math.exp(-v))  # noqa: E731
        share = sigmoid(-3.2 + 0.4 * z["share"] + 0.3 * z["arousal"] + 0.4 * z["sharing"] + 0.3 * z["relevance"])
        stance = 0.35 * math.tanh(0.5 * (0.6 * z["credibility"] + 0.4 * z["credulity"]))
        valence = math.tanh(0.5 * z["valence"]) * (0.6 + 0.4 * sigmoid(z["relevance"]))
        arousal = math.tanh(0.5 * z["arousal"] + 0.15 * z["sharing"] + 0.2 * z["relevance"])
        share, stance, valence, arousal = (round(v, 4) for v in (share, stance, valence, arousal))
        impulse = dict(zip(EMOTIONS, (valence, arousal)))
        return {"share_probability": share, "stance_shift": stance, "emotion_impulse": impulse,
                "reaction": _reaction(share, stance, valence, arousal)}

    def decide(self, requests: Sequence[tuple[str, str]]) -> list[Decision]:
        """One decision per ``(persona_text, context_text)``, in order.

        Raises:
            ConfigError: a request that is not a pair of non-empty strings.
            BackendError: the embedder failed.
        """
        checked = []
        for i, request in enumerate(requests):
            if (not isinstance(request, (tuple, list)) or len(request) != 2
                    or not all(isinstance(t, str) and t.strip() for t in request)):
                raise ConfigError(f"Expected request {i} as a (persona, context) pair of non-empty strings (got {request!r})")
            checked.append((request[0], request[1]))
        if not checked:
            return []
        # one embedder call for every distinct text of the batch; the rest is arithmetic
        texts = list(dict.fromkeys([t for p, c in checked for t in (*_sentences(p), c)]))
        self._embed(texts)
        self._axis(self._embed(texts[:1]), "share")  # the anchors, in one more batch
        decisions = []
        for i, (persona, context) in enumerate(checked):
            decisions.append(parse_decision(self.transform(self.score(persona, context)), where=f"embedding decision {i}"))
        self.usage.add(Usage(calls=len(decisions)))
        return decisions

    def __repr__(self) -> str:
        return f"EmbeddingBackend(model={self.model!r}, prompt_version={self.prompt_version!r})"
