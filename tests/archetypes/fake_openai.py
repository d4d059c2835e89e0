"""A real HTTP server on 127.0.0.1 that speaks the OpenAI chat-completions protocol, for backend tests.

Each request takes the next behaviour from a script (a queue); when the queue is empty it answers
with ``default``. A correct answer depends on the request (a digest of its first user message),
so tests can check that decisions come back in request order. The server records every request
(arrival time, body) and the largest number of requests it handled at once, and the tokens it reported.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable


def answer_for(user_prompt: str) -> dict[str, Any]:
    """The valid decision the server gives for a user prompt (deterministic, distinct per prompt)."""
    digest = hashlib.sha256(user_prompt.encode("utf-8")).hexdigest()
    return {
        "share_probability": int(digest[:4], 16) / 0xFFFF,
        "stance_shift": int(digest[4:8], 16) / 0xFFFF * 2 - 1,
        "emotion_impulse": {"valence": int(digest[8:12], 16) / 0xFFFF * 2 - 1, "arousal": 0.25},
        "reaction": f"echo {digest[:12]}",
    }


@dataclass
class Behaviour:
    """What the server does with one request.

    kind: ``"ok"`` (a correct answer), ``"malformed"`` (not JSON), ``"out_of_range"``
    (share_probability 1.7), ``"missing_key"`` (no stance_shift), ``"wrong_type"`` (share_probability
    a string), ``"status"`` (HTTP ``status`` with an error body).
    delay_s: wait this long before answering (to trip the client's timeout, or to overlap requests).
    """

    kind: str = "ok"
    delay_s: float = 0.0
    status: int = 200


@dataclass
class Seen:
    """One request the server received."""

    time: float
    body: dict[str, Any]

    @property
    def user_prompt(self) -> str:
        return next(m["content"] for m in self.body["messages"] if m["role"] == "user")


@dataclass
class FakeOpenAI:
    """The server's script and record; start with :meth:`start`, stop with :meth:`stop`."""

    default: Behaviour = field(default_factory=Behaviour)
    requests: list[Seen] = field(default_factory=list)
    max_in_flight: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __post_init__(self) -> None:
        self._script: deque[Behaviour] = deque()
        self._lock = threading.Lock()
        self._in_flight = 0
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    def script(self, behaviours: Iterable[Behaviour]) -> None:
        """Queue behaviours for the next requests, in arrival order."""
        with self._lock:
            self._script.extend(behaviours)

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> "FakeOpenAI":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real servers do

            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with fake._lock:
                    fake.requests.append(Seen(time.monotonic(), body))
                    behaviour = fake._script.popleft() if fake._script else fake.default
                    fake._in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake._in_flight)
                try:
                    if self.path != "/v1/chat/completions":
                        self._send(404, {"error": {"message": f"no route {self.path}"}})
                        return
                    if behaviour.delay_s:
                        fake._stopping.wait(behaviour.delay_s)
                    self._respond(behaviour, body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout): expected
                    pass
                finally:
                    with fake._lock:
                        fake._in_flight -= 1

            def _respond(self, behaviour: Behaviour, body: dict[str, Any]) -> None:
                if behaviour.kind == "status":
                    self._send(behaviour.status, {"error": {"message": f"scripted {behaviour.status}",
                                                            "type": "server_error", "code": None}})
                    return
                prompt = Seen(0.0, body).user_prompt
                answer = answer_for(prompt)
                if behaviour.kind == "ok":
                    content = json.dumps(answer)
                elif behaviour.kind == "malformed":
                    content = '{"share_probability": 0.2, "stance_shift": '  # cut off mid-object
                elif behaviour.kind == "out_of_range":
                    content = json.dumps({**answer, "share_probability": 1.7})
                elif behaviour.kind == "missing_key":
                    content = json.dumps({k: v for k, v in answer.items() if k != "stance_shift"})
                elif behaviour.kind == "wrong_type":
                    content = json.dumps({**answer, "share_probability": "high"})
                else:
                    raise AssertionError(f"unknown behaviour {behaviour.kind!r}")
                prompt_tokens = len(" ".join(m["content"] for m in body["messages"]).split())
                completion_tokens = len(content.split())
                with fake._lock:
                    fake.prompt_tokens += prompt_tokens
                    fake.completion_tokens += completion_tokens
                self._send(200, {
                    "id": f"chatcmpl-{len(fake.requests)}", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model", "fake"),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                              "total_tokens": prompt_tokens + completion_tokens},
                })

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True  # a handler still sleeping past a client timeout must not block shutdown
        server.block_on_close = False
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes delayed handlers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
