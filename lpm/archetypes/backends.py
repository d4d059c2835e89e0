"""LLM backends that answer :class:`~lpm.archetypes.decision.Decision` requests.

* :class:`OpenAICompatibleBackend`: any chat-completions endpoint (vLLM, Ollama, llama.cpp server,
  hosted APIs) through the ``openai`` package, with its own retries, bounded concurrency and token
  accounting.
* :class:`~lpm.archetypes.local_llm.TransformersBackend` (in :mod:`lpm.archetypes.local_llm`, re-exported
  here): a local chat model loaded with ``transformers``, batched greedy generation constrained to the
  decision's grammar.
* :func:`make_backend`: one place that turns a backend kind (``"openai"``, ``"transformers"``,
  ``"embedding"``) into a backend.

A backend is called once per (archetype, context) pair, never per agent or per step, and its answers
are cached (:mod:`lpm.archetypes.cache`). Every answer goes through
:func:`~lpm.archetypes.decision.parse_decision`; an answer that still fails after the retries raises
:class:`~lpm.errors.BackendError` and never becomes a default value.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any, Literal, Sequence

from lpm.archetypes.decision import (PROMPT_VERSION, Backend, Decision, Usage, check_requests, decision_schema,
                                     parse_decision)
from lpm.archetypes.local_llm import TransformersBackend
from lpm.archetypes.http_deadline import DEADLINE, body_start, install_deadline
from lpm.archetypes.prompts import describe_request, render_correction, render_messages
from lpm.errors import BackendError, ConfigError

__all__ = ["OpenAICompatibleBackend", "TransformersBackend", "make_backend", "check_requests"]

#: HTTP statuses worth retrying: request timeout, lock conflict, rate limit, server errors.
_RETRY_STATUSES = frozenset({408, 409, 429})
#: Never wait longer than this on a server's Retry-After header (a misconfigured server could ask for hours).
_MAX_RETRY_AFTER_S = 60.0


class OpenAICompatibleBackend:
    """Decisions from an OpenAI-compatible chat-completions endpoint.

    Args:
        model: the served model name; defaults to the ``LPM_LLM_MODEL`` environment variable.
        base_url: e.g. ``http://localhost:8000/v1`` (vLLM), ``http://localhost:11434/v1`` (Ollama);
            defaults to ``OPENAI_BASE_URL`` (read by the ``openai`` package), else the OpenAI API.
        api_key: defaults to ``OPENAI_API_KEY``; with a custom endpoint and no key, a placeholder is
            sent because local servers ignore it.
        timeout_s: deadline of each HTTP request (attempt) in seconds, from sending it to the last
            byte of the answer: a server that hangs or drips its answer byte by byte is cut off then
            (and the attempt retried). A call's wall time is thus at most about
            ``(max_retries + 1) * timeout_s`` plus the backoffs.
        max_retries: retries after the first attempt, for transient failures (429, 408, 409, 5xx,
            timeouts, connection errors) and for answers that are not a valid decision.
        backoff_s: first backoff delay; it doubles after each transient failure, plus up to 10% jitter.
        max_concurrency: requests in flight at once.
        json_mode: ``True`` asks for ``response_format={"type": "json_object"}``, ``"schema"`` for a
            ``json_schema`` response format with :func:`~lpm.archetypes.decision.decision_schema`
            (vLLM, llama.cpp server, recent OpenAI models), ``False`` for servers that reject both.
        temperature: sampling temperature (0 for reproducible answers).
        max_tokens: completion token limit per answer (``None`` leaves it to the server).
        client: an ``openai.OpenAI`` client to use instead of building one (its own retries are disabled).

    Raises:
        ConfigError: no model, no API key for the default endpoint, an argument out of its domain, or
            the ``openai`` package missing.

    The deadline is enforced inside the HTTP client's connection pool; a ``client=`` whose HTTP
    layer has no such pool keeps only its own per-read timeouts (``deadline_enforced`` says which).
    """

    name = "openai"

    def __init__(self, model: str | None = None, base_url: str | None = None, api_key: str | None = None, *,
                 timeout_s: float = 30.0, max_retries: int = 4, backoff_s: float = 0.5, max_concurrency: int = 8,
                 json_mode: bool | Literal["schema"] = True, temperature: float = 0.0, max_tokens: int | None = 256,
                 client: Any = None) -> None:
        model = model or os.environ.get("LPM_LLM_MODEL")
        if not model:
            raise ConfigError("Expected a model name for the openai backend, as model= or LPM_LLM_MODEL (got neither)")
        if not timeout_s > 0:
            raise ConfigError(f"Expected timeout_s > 0 (got {timeout_s})")
        if not (isinstance(max_retries, int) and max_retries >= 0):
            raise ConfigError(f"Expected max_retries to be an int >= 0 (got {max_retries!r})")
        if not backoff_s >= 0:
            raise ConfigError(f"Expected backoff_s >= 0 (got {backoff_s})")
        if not (isinstance(max_concurrency, int) and max_concurrency >= 1):
            raise ConfigError(f"Expected max_concurrency to be an int >= 1 (got {max_concurrency!r})")
        if json_mode not in (True, False, "schema"):
            raise ConfigError(f"Expected json_mode to be True, False or 'schema' (got {json_mode!r})")
        if max_tokens is not None and not (isinstance(max_tokens, int) and max_tokens > 0):
            raise ConfigError(f"Expected max_tokens to be a positive int or None (got {max_tokens!r})")
        self.model: str = model
        self.prompt_version: str = PROMPT_VERSION
        self.usage: Usage = Usage()
        self.timeout_s = float(timeout_s)
        self.max_retries = max_retries
        self.backoff_s = float(backoff_s)
        self.max_concurrency = max_concurrency
        self.json_mode = json_mode
        self.temperature = float(temperature)
        self.max_tokens = max_tokens
        self._lock = threading.Lock()
        # Jitter only spreads retries apart; its own generator keeps the global RNG untouched.
        self._jitter = random.Random()
        self._client = self._make_client(base_url, api_key, client)
        self.deadline_enforced: bool = install_deadline(getattr(self._client, "_client", None))

    def _make_client(self, base_url: str | None, api_key: str | None, client: Any) -> Any:
        try:
            import openai
        except ImportError as exc:  # the openai package is the optional "llm" extra
            raise ConfigError(f"Expected the 'openai' package for the openai backend (got {exc}); pip install 'lpm[llm]'") from None
        self._openai = openai
        if client is not None:
            # We retry ourselves (schema failures included), so the client's own retries must not multiply them.
            return client.with_options(max_retries=0, timeout=self.timeout_s) if hasattr(client, "with_options") else client
        if api_key is None and not os.environ.get("OPENAI_API_KEY"):
            if not (base_url or os.environ.get("OPENAI_BASE_URL")):
                raise ConfigError("Expected an API key for the OpenAI API, as api_key= or OPENAI_API_KEY "
                                  "(got neither; set base_url= or OPENAI_BASE_URL for a local server)")
            api_key = "EMPTY"  # vLLM, Ollama and llama.cpp accept any key; the client insists on one
        return openai.OpenAI(base_url=base_url, api_key=api_key, timeout=self.timeout_s, max_retries=0)

    @property
    def endpoint(self) -> str:
        return str(getattr(self._client, "base_url", ""))

    def __repr__(self) -> str:
        return f"OpenAICompatibleBackend(model={self.model!r}, base_url={self.endpoint!r})"

    def _complete(self, messages: list[dict[str, str]], kwargs: dict[str, Any], persona: str, context: str) -> Any:
        """One HTTP request under the deadline; the parsed completion, checked to be one.

        Raises:
            BackendError: the body is not a JSON chat completion (an HTML page from a wrong
                ``base_url``, a proxy's error page): asking again would get the same page.
        """
        DEADLINE.at = time.monotonic() + self.timeout_s
        try:
            raw = self._client.chat.completions.with_raw_response.create(messages=messages, **kwargs)
            http = raw.http_response
            http.read()  # the body under the deadline too
        finally:
            DEADLINE.at = None
        try:
            payload = json.loads(http.content)
        except ValueError:
            payload = None
        if not (isinstance(payload, dict) and isinstance(payload.get("choices"), list)):
            found = (f"JSON with keys {sorted(payload)[:10]}" if isinstance(payload, dict)
                     else body_start(http))
            raise BackendError(f"Expected a JSON chat completion with 'choices' from {self.endpoint} for "
                               f"{describe_request(persona, context)} (got HTTP {http.status_code}, {found})")
        return raw.parse()

    def _response_format(self) -> dict[str, Any] | None:
        if self.json_mode == "schema":
            return {"type": "json_schema", "json_schema": {"name": "decision", "schema": decision_schema(), "strict": True}}
        if self.json_mode:
            return {"type": "json_object"}
        return None

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        delay = self.backoff_s * 2.0 ** (attempt - 1) * (1.0 + 0.1 * self._jitter.random())
        if retry_after is not None:  # the server knows best when it has capacity again
            delay = max(delay, min(retry_after, _MAX_RETRY_AFTER_S))
        return delay

    @staticmethod
    def _retry_after(exc: Exception) -> float | None:
        response = getattr(exc, "response", None)
        value = response.headers.get("retry-after") if response is not None else None
        try:
            return float(value) if value is not None else None
        except ValueError:  # an HTTP date; the exponential backoff is good enough then
            return None

    def _decide_one(self, persona: str, context: str, stop: threading.Event, spent: Usage) -> Decision:
        """One request with its retries; adds what every attempt sent and spent to ``spent``."""
        openai = self._openai
        messages: list[dict[str, str]] = render_messages(persona, context)
        kwargs: dict[str, Any] = {"model": self.model, "temperature": self.temperature}
        if self.max_tokens is not None:
            kwargs["max_tokens"] = self.max_tokens
        response_format = self._response_format()
        if response_format is not None:
            kwargs["response_format"] = response_format
        attempts = self.max_retries + 1
        problem = "no attempt made"
        backoffs = 0
        for attempt in range(1, attempts + 1):
            if stop.is_set():  # another request of the batch failed for good: stop spending tokens
                raise BackendError(f"Expected a decision for {describe_request(persona, context)} (got cancelled "
                                   "because another request of the batch failed)")
            spent.calls += 1
            try:
                response = self._complete(messages, kwargs, persona, context)
            except openai.APITimeoutError as exc:
                problem = (f"{type(exc).__name__}: no complete answer from {self.endpoint} within the "
                           f"{self.timeout_s:g} s deadline per request")
                backoffs += 1
                if attempt < attempts:
                    stop.wait(self._delay(backoffs, None))
                continue
            except openai.APIStatusError as exc:
                status = exc.status_code
                if status not in _RETRY_STATUSES and status < 500:  # 400, 401, 404...: asking again cannot help
                    raise BackendError(f"Expected a completion for {describe_request(persona, context)} from "
                                       f"{self!r} (got HTTP {status}: {str(exc)[:300]})") from exc
                problem = f"HTTP {status}: {str(exc)[:200]}"
                backoffs += 1
                if attempt < attempts:
                    stop.wait(self._delay(backoffs, self._retry_after(exc)))
                continue
            except (openai.APIConnectionError, openai.APIResponseValidationError) as exc:
                problem = f"{type(exc).__name__}: {str(exc)[:200]}"
                backoffs += 1
                if attempt < attempts:
                    stop.wait(self._delay(backoffs, None))
                continue
            if getattr(response, "usage", None) is not None:  # some servers omit usage
                spent.prompt_tokens += int(response.usage.prompt_tokens or 0)
                spent.completion_tokens += int(response.usage.completion_tokens or 0)
            choices = getattr(response, "choices", None) or []
            content = choices[0].message.content if choices else None
            if not content:
                problem = f"an empty answer (finish_reason={choices[0].finish_reason if choices else None!r})"
                continue
            try:
                decision = parse_decision(content, where="answer")
            except BackendError as exc:
                problem = str(exc)
                if choices[0].finish_reason == "length":
                    problem += " (the answer was cut at max_tokens)"
                # Re-ask with the problem named: at temperature 0 the same prompt would give the same answer.
                messages = render_messages(persona, context) + [
                    {"role": "assistant", "content": content}, {"role": "user", "content": render_correction(problem)}]
                continue
            return decision
        raise BackendError(f"Expected a valid decision for {describe_request(persona, context)} from {self!r} after "
                           f"{attempts} attempts (got, last: {problem})")

    def _run(self, persona: str, context: str, stop: threading.Event) -> tuple[Decision, Usage]:
        spent = Usage()
        try:
            return self._decide_one(persona, context, stop, spent), spent
        finally:  # failed attempts cost tokens too
            with self._lock:
                self.usage.add(spent)

    def decide_with_usage(self, requests: Sequence[tuple[str, str]]) -> list[tuple[Decision, Usage]]:
        """Like :meth:`decide`, with the tokens each request spent (all its attempts), for the cache."""
        requests = check_requests(requests)
        if not requests:
            return []
        stop = threading.Event()
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(requests)),
                                thread_name_prefix="lpm-openai") as pool:
            futures = [pool.submit(self._run, p, c, stop) for p, c in requests]
            try:
                # Return at the first failure, not at the end: the other requests would spend tokens for nothing.
                wait(futures, return_when=FIRST_EXCEPTION)
            finally:
                failed = [f for f in futures if f.done() and not f.cancelled() and f.exception() is not None]
                if failed or not all(f.done() for f in futures):  # a failure, or an interrupt while waiting
                    stop.set()  # pending requests are cancelled, running ones stop before their next attempt
                    for f in futures:
                        f.cancel()
            if failed:
                raise failed[0].exception()  # type: ignore[misc]
            return [f.result() for f in futures]

    def decide(self, requests: Sequence[tuple[str, str]]) -> list[Decision]:
        """One decision per ``(persona_text, context_text)``, in request order.

        Raises:
            BackendError: a request still failed after ``max_retries`` retries, or the server refused
                it (4xx other than 408/409/429).
        """
        return [decision for decision, _ in self.decide_with_usage(requests)]


def make_backend(kind: str, *, model: str | None = None, **kwargs: Any) -> Backend:
    """The backend of a kind: ``"openai"``, ``"transformers"`` or ``"embedding"`` (no LLM).

    ``kwargs`` go to the backend's constructor.

    Raises:
        ConfigError: an unknown kind, or ``"transformers"`` without a model.
    """
    if kind == "openai":
        return OpenAICompatibleBackend(model=model, **kwargs)
    if kind == "transformers":
        if model is None:
            raise ConfigError("Expected model= (a path or name) for the transformers backend (got None)")
        return TransformersBackend(model, **kwargs)
    if kind == "embedding":
        # Imported here: the embedding backend pulls in sentence-transformers, which the others do not need.
        from lpm.archetypes.embedding_backend import EmbeddingBackend
        return EmbeddingBackend(model=model, **kwargs) if model is not None else EmbeddingBackend(**kwargs)
    raise ConfigError(f"Expected a backend kind among 'openai', 'transformers', 'embedding' (got {kind!r})")
