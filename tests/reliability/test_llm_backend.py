"""The OpenAI-compatible backend against misbehaving servers: a deadline per request (not per read),
and a body that is not a chat completion named for what it is."""

from __future__ import annotations

import json
import time

import pytest

from lpm.archetypes.backends import OpenAICompatibleBackend
from lpm.errors import BackendError
from tests.reliability.loopback import Loopback, drip, elapsed, hang, respond

REQUEST = [("Persona: a 30-year-old nurse.", "Post: the bridge is closed.")]
ENDLESS = b"x" * 100_000  # far longer than any deadline at one byte per 0.3 s


@pytest.fixture
def server(request):
    loopback = Loopback(request.param)
    yield loopback
    loopback.stop()


def _backend(server: Loopback, **kwargs) -> OpenAICompatibleBackend:
    return OpenAICompatibleBackend(model="m", base_url=server.base_url, api_key="k", backoff_s=0.01,
                                   **{"timeout_s": 1.0, "max_retries": 0, **kwargs})


@pytest.mark.parametrize("server", [
    drip(b"", b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n" + ENDLESS),
    drip(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n", ENDLESS),
    hang,
], ids=["drip-headers", "drip-body", "hang"], indirect=True)
def test_a_slow_server_fails_at_the_deadline(server):
    backend = _backend(server)
    assert backend.deadline_enforced
    start = time.monotonic()
    with pytest.raises(BackendError) as info:
        backend.decide(REQUEST)
    assert 0.9 < elapsed(start) < 1.8
    message = str(info.value)
    assert server.base_url in message and "1 s deadline per request" in message and "after 1 attempts" in message


@pytest.mark.parametrize("server", [drip(b"", ENDLESS)], indirect=True)
def test_retries_each_get_their_own_deadline(server):
    start = time.monotonic()
    with pytest.raises(BackendError, match="after 2 attempts.*0.5 s deadline"):
        _backend(server, timeout_s=0.5, max_retries=1).decide(REQUEST)
    assert 0.9 < elapsed(start) < 1.6


_HTML = b"<!DOCTYPE html><html><head><title>Open WebUI</title></head><body>Sign in</body></html>"


@pytest.mark.parametrize("server, found", [
    (respond("200 OK", "text/html", _HTML), "text/html, 86 bytes: '<!DOCTYPE html><html><head><title>Open WebUI"),
    (respond("200 OK", "application/json", b""), "0 bytes: ''"),
    (respond("200 OK", "application/json", b'{"detail": "Not Found"}'), "JSON with keys ['detail']"),
    (respond("200 OK", "application/json", b"[1, 2]"), "[1, 2]"),
    (respond("200 OK", "text/plain", b"\xff\xfe\x00garbage"), "text/plain, 10 bytes"),
], ids=["html", "empty", "json-without-choices", "json-list", "binary"], indirect=["server"])
def test_a_body_that_is_not_a_completion_is_named(server, found):
    """Not "an empty answer" after every retry: the page a wrong base_url serves comes back at once."""
    start = time.monotonic()
    with pytest.raises(BackendError) as info:
        _backend(server, max_retries=3).decide(REQUEST)
    message = str(info.value)
    assert "Expected a JSON chat completion with 'choices'" in message and server.base_url in message
    assert "HTTP 200" in message and found in message, message
    assert elapsed(start) < 1.0  # not retried


@pytest.mark.parametrize("server", [respond("200 OK", "application/json", json.dumps({
    "id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": json.dumps({
            "share_probability": 0.25, "stance_shift": -0.5, "emotion_impulse": {"valence": 0.1, "arousal": 0.2},
            "reaction": "ok"})}}]}).encode())], indirect=True)
def test_a_plain_http_server_still_answers(server):
    (decision,) = _backend(server).decide(REQUEST)
    assert decision.share_probability == 0.25 and decision.stance_shift == -0.5
