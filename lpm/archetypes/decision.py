"""What a backend answers for one (archetype persona, context): a validated, structured decision.

Every backend (:mod:`lpm.archetypes.backends`) returns :class:`Decision` objects built by
:func:`parse_decision`, so the schema lives in one place: a response that does not fit it raises
:class:`~lpm.errors.BackendError` and never becomes a default value.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

from lpm.errors import BackendError, ConfigError

__all__ = ["EMOTIONS", "PROMPT_VERSION", "Decision", "Usage", "Backend", "parse_decision", "decision_schema",
           "check_requests"]

#: Emotion dimensions of an impulse, in the order of the state's emotion axis (``PopulationState.emotion``).
EMOTIONS: tuple[str, ...] = ("valence", "arousal")

#: Bump when the prompt or the schema changes: it is part of every cache key.
PROMPT_VERSION = "decision-v1"


@dataclass(frozen=True)
class Decision:
    """One archetype's reaction to one context.

    Attributes:
        share_probability: probability in [0, 1] that a member reshares the context when it sees it.
        stance_shift: shift of a member's opinion toward (+) or against (-) the context, in [-1, 1].
        emotion_impulse: one value in [-1, 1] per dimension of :data:`EMOTIONS`.
        reaction: a one-line reaction in the persona's voice (embedded downstream).
    """

    share_probability: float
    stance_shift: float
    emotion_impulse: tuple[float, ...]
    reaction: str

    def to_dict(self) -> dict[str, Any]:
        return {"share_probability": self.share_probability, "stance_shift": self.stance_shift,
                "emotion_impulse": dict(zip(EMOTIONS, self.emotion_impulse)), "reaction": self.reaction}


@dataclass
class Usage:
    """Backend accounting: requests actually sent and tokens spent (cache hits are counted by the cache)."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, other: "Usage") -> None:
        self.calls += other.calls
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens


@runtime_checkable
class Backend(Protocol):
    """Anything that turns (persona, context) pairs into decisions.

    Attributes:
        name: backend kind, e.g. ``"embedding"``, ``"openai"``, ``"transformers"`` (part of cache keys).
        model: model name or path (part of cache keys).
        prompt_version: the prompt/schema version (part of cache keys).
        usage: running :class:`Usage`.
    """

    name: str
    model: str
    prompt_version: str
    usage: Usage

    def decide(self, requests: Sequence[tuple[str, str]]) -> list[Decision]:
        """One decision per ``(persona_text, context_text)``, in order; raises ``BackendError``."""
        ...


def decision_schema() -> dict[str, Any]:
    """The JSON schema of a decision (for servers with structured output)."""
    number = lambda lo, hi: {"type": "number", "minimum": lo, "maximum": hi}  # noqa: E731
    return {
        "type": "object",
        "properties": {
            "share_probability": number(0, 1),
            "stance_shift": number(-1, 1),
            "emotion_impulse": {"type": "object", "properties": {e: number(-1, 1) for e in EMOTIONS},
                                "required": list(EMOTIONS), "additionalProperties": False},
            "reaction": {"type": "string", "minLength": 1, "maxLength": 300},
        },
        "required": ["share_probability", "stance_shift", "emotion_impulse", "reaction"],
        "additionalProperties": False,
    }


def _number(payload: Mapping[str, Any], key: str, low: float, high: float, where: str) -> float:
    if key not in payload:
        raise BackendError(f"{where}: expected key {key!r} (got keys {sorted(payload)})")
    value = payload[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BackendError(f"{where}: expected {key!r} as a finite number (got {value!r})")
    if not low <= value <= high:
        raise BackendError(f"{where}: expected {key!r} in [{low}, {high}] (got {value})")
    return float(value)


def parse_decision(raw: str | Mapping[str, Any], where: str = "decision") -> Decision:
    """Validate a backend's answer (a JSON string or an already-decoded mapping) into a :class:`Decision`.

    Raises:
        BackendError: malformed JSON, a missing key, a value of the wrong type or out of range.
    """
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith("```"):  # a fenced block: keep what is inside
            text = text.strip("`")
            text = text[text.find("{"):] if "{" in text else text
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BackendError(f"{where}: expected a JSON object (got {raw[:120]!r}: {exc})") from None
    else:
        payload = raw
    if not isinstance(payload, Mapping):
        raise BackendError(f"{where}: expected a JSON object (got {type(payload).__name__})")
    share = _number(payload, "share_probability", 0.0, 1.0, where)
    stance = _number(payload, "stance_shift", -1.0, 1.0, where)
    impulse = payload.get("emotion_impulse")
    if not isinstance(impulse, Mapping):
        raise BackendError(f"{where}: expected 'emotion_impulse' as an object with keys {list(EMOTIONS)} (got {impulse!r})")
    emotions = tuple(_number(impulse, e, -1.0, 1.0, f"{where}.emotion_impulse") for e in EMOTIONS)
    reaction = payload.get("reaction")
    if not isinstance(reaction, str) or not reaction.strip():
        raise BackendError(f"{where}: expected 'reaction' as a non-empty string (got {reaction!r})")
    return Decision(share, stance, emotions, " ".join(reaction.split())[:300])


def check_requests(requests: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Validate ``(persona_text, context_text)`` pairs once, at the boundary; lists become tuples.

    Raises:
        ConfigError: a request is not a pair of strings.
    """
    checked = []
    for i, pair in enumerate(requests):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(t, str) for t in pair)):
            raise ConfigError(f"Expected request {i} to be a (persona_text, context_text) pair of str (got {pair!r:.120})")
        checked.append((pair[0], pair[1]))
    return checked
