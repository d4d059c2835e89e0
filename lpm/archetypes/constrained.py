"""Constrained decoding: a local model can only write a valid decision, so every answer parses first time.

At each generated token, a grammar matcher per batch row says which tokens may come next, and all the
others get logit ``-inf`` before greedy choice or sampling. The grammar (:func:`decision_grammar`) is
the decision's JSON object with its keys in a fixed order, numbers written with at most three
decimals inside their ranges and a one-line reaction of bounded length, so whatever the model's
preferences, the text it ends with is accepted by :func:`~lpm.archetypes.decision.parse_decision`
(when ``max_new_tokens`` leaves room for it: :func:`decision_token_bound`).

The matcher is llguidance (the Rust engine behind the ``guidance`` library, also used by vLLM and
SGLang), chosen by measurement among the libraries that install beside the pinned torch and
transformers (README, "Local LLM"). Only its tokenizer bridge and matcher are used; the mask is
applied here in plain torch (llguidance's own torch helper compiles a kernel with ``torch.compile``,
which needs a C compiler on a CPU).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lpm.archetypes.decision import EMOTIONS
from lpm.errors import BackendError, ConfigError

__all__ = ["GRAMMAR_VERSION", "decision_grammar", "decision_token_bound", "DecisionConstraint"]

#: Part of the cache key of a constrained backend: bump when the grammar changes.
GRAMMAR_VERSION = "grammar-v1"

#: Longest reaction the grammar allows, in characters.
MAX_REACTION_CHARS = 100


def _literal(text: str) -> str:
    """A Lark string literal for ``text`` (JSON escaping is Lark's)."""
    return json.dumps(text)


def decision_grammar(max_reaction_chars: int = MAX_REACTION_CHARS) -> str:
    """The decision's JSON format as a Lark grammar for llguidance.

    The object reads ``{"share_probability": P, "stance_shift": S, "emotion_impulse": {"valence": V,
    "arousal": A}, "reaction": "..."}`` with the separators of :func:`json.dumps` (the prompt's
    example). ``P`` is ``0``, ``0.d``, ``0.dd``, ``0.ddd`` or ``1`` (``1.0``...); ``S``, ``V``, ``A`` the same
    with an optional minus sign; the reaction is 1 to ``max_reaction_chars`` characters without
    quotes, backslashes or control characters, not starting with a space.

    Raises:
        ConfigError: ``max_reaction_chars`` below 1.
    """
    if not (isinstance(max_reaction_chars, int) and max_reaction_chars >= 1):
        raise ConfigError(f"Expected max_reaction_chars to be an int >= 1 (got {max_reaction_chars!r})")
    emotions = f" {_literal(', ')} ".join(f"{_literal(json.dumps(e) + ': ')} SIGNED" for e in EMOTIONS)
    return "\n".join([
        f'start: {_literal("{" + json.dumps("share_probability") + ": ")} UNIT '
        f'{_literal(", " + json.dumps("stance_shift") + ": ")} SIGNED '
        f'{_literal(", " + json.dumps("emotion_impulse") + ": {")} {emotions} '
        f'{_literal("}, " + json.dumps("reaction") + ": " + chr(34))} TEXT {_literal(chr(34) + "}")}',
        r"UNIT: /0(\.[0-9]{1,3})?|1(\.0{1,3})?/",
        r"SIGNED: /-?(0(\.[0-9]{1,3})?|1(\.0{1,3})?)/",
        rf'TEXT: /[^"\\\x00-\x1f ][^"\\\x00-\x1f]{{0,{max_reaction_chars - 1}}}/',
    ]) + "\n"


def decision_token_bound(max_reaction_chars: int = MAX_REACTION_CHARS) -> int:
    """Tokens that always suffice for a grammatical answer and its end token, with any tokenizer whose
    tokens are at least one character: one per character of the longest answer, plus one."""
    numbers = 6 * (2 + len(EMOTIONS))  # "-1.000" is the longest number
    keys = sum(len(json.dumps(k)) + 2 for k in ("share_probability", "stance_shift", "emotion_impulse", "reaction",
                                                 *EMOTIONS))
    return numbers + keys + 16 + max_reaction_chars + 1  # braces, commas and quotes, then the end token


def _allowed(masks: list[bytes], width: int) -> Tensor:
    """Per-row token bitmasks (bit ``t`` of the little-endian words set: token ``t`` allowed) -> ``(B, width)`` bool."""
    rows = np.stack([np.unpackbits(np.frombuffer(m, dtype=np.uint8), bitorder="little") for m in masks])
    allowed = torch.from_numpy(rows.astype(bool))
    if allowed.shape[1] >= width:
        return allowed[:, :width]
    return torch.cat([allowed, allowed.new_zeros(allowed.shape[0], width - allowed.shape[1])], 1)


class DecisionConstraint:
    """Grammar matchers for one tokenizer; :meth:`processor` makes the logits processor of one ``generate`` call.

    Args:
        tokenizer: a fast Hugging Face tokenizer (``tokenizers``-backed), the model's own.
        grammar: a Lark grammar for llguidance; :func:`decision_grammar` by default.

    Raises:
        ConfigError: the ``llguidance`` package is missing (the ``llm`` extra).
        BackendError: the tokenizer cannot be bridged or the grammar does not compile.
    """

    def __init__(self, tokenizer: Any, grammar: str | None = None) -> None:
        try:
            import llguidance
            import llguidance.hf
        except ImportError as exc:
            raise ConfigError(f"Expected the 'llguidance' package for constrained decoding (got {exc}); "
                              "pip install 'lpm[llm]' or pass constrained=False") from None
        self._llguidance = llguidance
        try:
            self.tokenizer = llguidance.hf.from_tokenizer(tokenizer)
        except Exception as exc:  # noqa: BLE001 - the bridge raises plain exceptions of several kinds
            raise BackendError(f"Expected a fast tokenizer llguidance can read (got {type(tokenizer).__name__}: "
                               f"{type(exc).__name__}: {str(exc)[:200]})") from exc
        self.grammar = grammar if grammar is not None else decision_grammar()
        self._compiled = llguidance.LLMatcher.grammar_from_lark(self.grammar)
        is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(self._compiled, self.tokenizer)
        if is_error:
            raise BackendError(f"Expected a grammar llguidance compiles (got: {' '.join(messages)[:300]})")
        self.vocab_size: int = self.tokenizer.vocab_size

    def matcher(self) -> Any:
        """A fresh matcher at the start of the grammar."""
        llguidance = self._llguidance
        return llguidance.LLMatcher(self.tokenizer, self._compiled, log_level=1)

    def processor(self, batch: int) -> "GrammarProcessor":
        """The logits processor for one ``generate`` call over ``batch`` rows."""
        return GrammarProcessor(self, batch)


class GrammarProcessor:
    """A ``transformers`` logits processor: row ``b``'s scores outside its matcher's allowed tokens -> ``-inf``.

    Called once per generated token with the ids so far ``(B, L)`` and the next-token scores
    ``(B, V)``; from the second call on it first feeds each unfinished row's last token to its matcher.
    """

    def __init__(self, constraint: DecisionConstraint, batch: int) -> None:
        self.constraint = constraint
        self.matchers = [constraint.matcher() for _ in range(batch)]
        self._started = False

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        if self._started:
            for row, (matcher, token) in enumerate(zip(self.matchers, input_ids[:, -1].tolist())):
                if matcher.is_stopped():  # finished rows are padded by generate
                    continue
                if not matcher.consume_token(token):
                    raise BackendError(f"Expected row {row}'s token {token} to be allowed by the grammar "
                                       f"(got: {matcher.get_error()[:200]})")
        self._started = True
        allowed = _allowed([m.compute_bitmask() for m in self.matchers], scores.shape[-1]).to(scores.device)
        return scores.masked_fill(~allowed, float("-inf"))
