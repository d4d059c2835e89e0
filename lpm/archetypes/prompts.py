"""The prompt that asks a chat model for one archetype's decision about one context.

The text here is part of every cache key through :data:`~lpm.archetypes.decision.PROMPT_VERSION`:
change a word of it and bump that version, or a cache will serve answers to a prompt that no longer
exists.
"""

from __future__ import annotations

import hashlib
import json

from lpm.archetypes.decision import EMOTIONS, PROMPT_VERSION

__all__ = [
    "PROMPT_VERSION",
    "SYSTEM_PROMPT",
    "render_user_prompt",
    "render_messages",
    "render_correction",
    "request_digest",
    "describe_request",
]

_EXAMPLE = json.dumps({
    "share_probability": 0.15,
    "stance_shift": -0.2,
    "emotion_impulse": {"valence": -0.4, "arousal": 0.5},
    "reaction": "Sounds like another rumour, I'd want a source before passing it on.",
})

#: The system message: what the model plays and the exact answer format (one JSON object).
SYSTEM_PROMPT = f"""You simulate how a group of similar social media users reacts to what appears in their feed.
You are given a persona describing a typical member of the group and a piece of content they see
(a post, a reply, a fact-check, an official message). Answer as that person would behave, not as an
assistant: people reshare things they find exciting, outrageous or identity-confirming, and ignore most posts.

Reply with exactly one JSON object and nothing else (no prose, no code fence), with these keys:
- "share_probability": number in [0, 1], the probability that a person like this reshares the content
  when they see it once in their feed. Most posts are reshared rarely: 0.01 to 0.1 is common, above 0.5 is exceptional.
- "stance_shift": number in [-1, 1], how far seeing the content moves this person's opinion toward (+)
  or against (-) the position the content takes. 0 means no change; people rarely move more than 0.3 from one post.
- "emotion_impulse": an object with "{EMOTIONS[0]}" and "{EMOTIONS[1]}", each a number in [-1, 1]:
  "valence" is how pleasant (+) or unpleasant (-) the content feels to this person, "arousal" how much it
  agitates (+) or calms (-) them.
- "reaction": one short line (at most 200 characters) that this person might write or think on seeing the
  content, in their own voice.

Example of the format (the values are only an illustration):
{_EXAMPLE}"""


def render_user_prompt(persona: str, context: str) -> str:
    """The user message for one ``(persona, context)`` pair."""
    return (
        f"Persona:\n{persona.strip()}\n\n"
        f"Content seen in the feed:\n{context.strip()}\n\n"
        "How does this person react? Answer with the JSON object only."
    )


def render_messages(persona: str, context: str) -> list[dict[str, str]]:
    """The chat messages (system, user) asking for the decision of ``persona`` about ``context``."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": render_user_prompt(persona, context)},
    ]


def render_correction(problem: str) -> str:
    """A follow-up user message after an invalid answer; naming the problem lets the model fix it
    instead of repeating the same answer (which greedy decoding otherwise would)."""
    return (
        f"That answer could not be used: {problem[:300]}. Reply again with exactly one JSON object with the keys "
        '"share_probability", "stance_shift", "emotion_impulse" and "reaction", values in the stated ranges, nothing else.'
    )


def request_digest(persona: str, context: str) -> str:
    """A short, stable identifier of a ``(persona, context)`` pair for error messages and logs."""
    payload = json.dumps([PROMPT_VERSION, persona, context], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:12]


def _abbreviate(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def describe_request(persona: str, context: str) -> str:
    """``request <digest> (persona '...', context '...')``, abbreviated, for error messages."""
    return (f"request {request_digest(persona, context)} "
            f"(persona {_abbreviate(persona)!r}, context {_abbreviate(context)!r})")
