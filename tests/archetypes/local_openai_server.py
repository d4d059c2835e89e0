"""A real model behind a real OpenAI-compatible HTTP endpoint on 127.0.0.1, for backend tests.

``POST /v1/chat/completions`` renders the request's messages with the model's chat template and
answers greedily with :meth:`lpm.archetypes.TransformersBackend.complete`; a ``response_format`` of
type ``json_schema`` or ``json_object`` turns on the decision grammar (as vLLM's structured output
would), none leaves the model free. ``usage`` reports the model's own token counts.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from lpm.archetypes.local_llm import TransformersBackend


class LocalOpenAI:
    """Serve ``backend`` until :meth:`stop`; :attr:`bodies` records every request body."""

    def __init__(self, backend: TransformersBackend) -> None:
        self.backend = backend
        self.bodies: list[dict[str, Any]] = []
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> "LocalOpenAI":
        served = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with served._lock:
                    served.bodies.append(body)
                if self.path != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                kind = (body.get("response_format") or {}).get("type")
                text, prompt, completion = served.backend.complete(
                    [body["messages"]], constrained=kind in ("json_schema", "json_object"))[0]
                with served._lock:
                    served.prompt_tokens += prompt
                    served.completion_tokens += completion
                self._send(200, {
                    "id": f"chatcmpl-{len(served.bodies)}", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model", served.backend.model),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                              "total_tokens": prompt + completion},
                })

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
