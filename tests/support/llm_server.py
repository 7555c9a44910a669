"""A scripted OpenAI-compatible HTTP server on 127.0.0.1, for tests of the LLM layer.

The server is real (``http.server`` in a background thread, real sockets, the OpenAI wire
format), so the real ``openai`` client talks to it unchanged. What it answers is scripted: each
``POST /v1/chat/completions`` consumes the next :class:`Behaviour` of the queue (or the
``default`` once the queue is empty), and every request is recorded for assertions.

Example:
    >>> with OpenAICompatibleServer() as server:
    ...     server.script(status(429, headers={"Retry-After": "0.1"}), reply_json({"ok": 1}))
    ...     # point an openai.OpenAI(base_url=server.base_url, ...) at it
"""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "Behaviour",
    "OpenAICompatibleServer",
    "RecordedRequest",
    "close_connection",
    "delay",
    "drip",
    "empty",
    "hang",
    "raw_body",
    "reply",
    "reply_json",
    "status",
    "unused_port",
]

logger = logging.getLogger(__name__)

CHAT_PATH = "/v1/chat/completions"


@dataclass(frozen=True)
class Behaviour:
    """One scripted answer. Build it with :func:`reply`, :func:`status`, ... rather than directly.

    Attributes:
        action: ``"reply"`` (a chat completion), ``"status"`` (an answer with ``code`` and
            ``body`` as they are), ``"close"`` (drop the connection without answering) or
            ``"hang"`` (never answer; the connection stays open until the server stops).
        content: Message content of a reply (None gives ``"content": null``).
        code: HTTP status of a ``"status"`` answer.
        body: Body of a ``"status"`` answer.
        headers: Extra response headers.
        content_type: ``Content-Type`` of the answer.
        delay_s: Seconds to wait before answering.
        drip_s: Seconds between bytes: the whole answer, status line and headers included, is
            sent one byte at a time (0 sends it at once).
        finish_reason: ``choices[0].finish_reason`` of a reply.
        prompt_tokens: Usage reported; None counts the words of the request's messages.
        completion_tokens: Usage reported; None counts the words of the reply.
    """

    action: str
    content: str | None = None
    code: int = 200
    body: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "application/json"
    delay_s: float = 0.0
    drip_s: float = 0.0
    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass(frozen=True)
class RecordedRequest:
    """A request as the server received it.

    Header names are lower-cased; ``json`` is None when the body is not JSON.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any
    received_at: float = field(default_factory=time.monotonic)

    def messages_text(self) -> str:
        """All message contents of a chat request, joined by newlines."""
        messages = (self.json or {}).get("messages") or []
        return "\n".join(str(m.get("content", "")) for m in messages)


def reply(content: str | None, *, finish_reason: str = "stop", prompt_tokens: int | None = None,
          completion_tokens: int | None = None) -> Behaviour:
    """A chat completion whose message content is ``content``."""
    return Behaviour("reply", content, finish_reason=finish_reason, prompt_tokens=prompt_tokens,
                     completion_tokens=completion_tokens)


def reply_json(obj: Any, **kwargs: Any) -> Behaviour:
    """A chat completion whose content is ``obj`` as JSON."""
    return reply(json.dumps(obj), **kwargs)


def empty() -> Behaviour:
    """A chat completion with empty content."""
    return reply("")


def status(code: int, body: Any = None, headers: Mapping[str, str] | None = None) -> Behaviour:
    """An HTTP error; ``body`` (a dict or a string) defaults to an OpenAI-style error object."""
    if body is None:
        body = {"error": {"message": f"scripted HTTP {code}", "type": "server_error", "code": None}}
    text = body if isinstance(body, str) else json.dumps(body)
    return Behaviour("status", code=code, body=text, headers=tuple((headers or {}).items()))


def delay(seconds: float, then: Behaviour | None = None) -> Behaviour:
    """``then`` (default: a ``{}`` reply) after ``seconds``; a client that gives up first sees a timeout."""
    return dataclasses.replace(then or reply("{}"), delay_s=seconds)


def close_connection() -> Behaviour:
    """Close the connection without sending any response."""
    return Behaviour("close")


def hang() -> Behaviour:
    """Accept the request and never answer (until the server stops)."""
    return Behaviour("hang")


def drip(then: Behaviour | None = None, *, every_s: float = 0.5) -> Behaviour:
    """``then`` (default: a ``{}`` reply) sent one byte every ``every_s`` seconds, headers
    included: each read of a client gets data in time, so only a deadline on the whole request
    ends it early."""
    return dataclasses.replace(then or reply("{}"), drip_s=every_s)


def raw_body(body: str, *, code: int = 200, content_type: str = "application/json") -> Behaviour:
    """An answer whose body is ``body`` as it is (e.g. HTTP 200 with a body that is not JSON, or
    JSON that is not a chat completion)."""
    return Behaviour("status", code=code, body=body, content_type=content_type)


def unused_port() -> int:
    """A local port with nothing listening (bound, read, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OpenAICompatibleServer:
    """``POST /v1/chat/completions`` and ``GET /v1/models`` on 127.0.0.1, on a free port.

    Args:
        model: Model name reported by ``/v1/models`` and used when the request names none.
        default: Answer once the script is used up; None answers HTTP 500 "script exhausted".
    """

    def __init__(self, *, model: str = "test-model", default: Behaviour | None = None) -> None:
        self.model = model
        self.default = default
        self._script: deque[Behaviour] = deque()
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> OpenAICompatibleServer:
        """Binds 127.0.0.1 on port 0 and serves from a daemon thread."""
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="openai-test-server", daemon=True)
        self._thread.start()
        logger.debug("OpenAI-compatible test server on %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stops serving; delayed answers still waiting are abandoned."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = None

    def __enter__(self) -> OpenAICompatibleServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the server is not running; call start() first")
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        """What to pass as ``base_url`` to ``openai.OpenAI``."""
        return f"http://127.0.0.1:{self.port}/v1"

    # -- script and records ----------------------------------------------------------------
    def script(self, *behaviours: Behaviour) -> None:
        """Appends answers to the queue, consumed one per chat request."""
        with self._lock:
            self._script.extend(behaviours)

    @property
    def pending(self) -> int:
        """Scripted answers not consumed yet."""
        with self._lock:
            return len(self._script)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, in order."""
        with self._lock:
            return list(self._requests)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        """The ``POST /v1/chat/completions`` requests received, in order."""
        return [r for r in self.requests if r.method == "POST" and r.path == CHAT_PATH]

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _next(self) -> Behaviour:
        with self._lock:
            if self._script:
                return self._script.popleft()
        return self.default or status(500, {"error": {"message": "script exhausted", "type": "test_server"}})


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a client that timed out must not hold up stop()
    owner: OpenAICompatibleServer


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        logger.debug("test server: " + format, *args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        owner = self.server.owner
        owner._record(RecordedRequest("GET", self.path, self._headers(), b"", None))
        if self.path.rstrip("/") == "/v1/models":
            models = {"object": "list", "data": [{"id": owner.model, "object": "model", "created": 0,
                                                  "owned_by": "multi_agent_pruning.testing"}]}
            self._send(200, json.dumps(models))
        else:
            self._send(404, json.dumps({"error": {"message": f"no route {self.path}", "type": "not_found"}}))

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        owner = self.server.owner
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        owner._record(RecordedRequest("POST", self.path, self._headers(), body, payload))
        if self.path != CHAT_PATH:
            self._send(404, json.dumps({"error": {"message": f"no route {self.path}", "type": "not_found"}}))
            return
        behaviour = owner._next()
        if behaviour.delay_s and owner._stopping.wait(behaviour.delay_s):
            return
        if behaviour.action == "hang":
            owner._stopping.wait()
        elif behaviour.action == "close":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        elif behaviour.action == "status":
            self._send(behaviour.code, behaviour.body, behaviour)
        else:
            self._send(200, json.dumps(_completion(behaviour, payload or {}, owner.model)), behaviour)

    def _headers(self) -> dict[str, str]:
        return {name.lower(): value for name, value in self.headers.items()}

    def _send(self, code: int, text: str, behaviour: Behaviour | None = None) -> None:
        behaviour = behaviour or Behaviour("status")
        self.log_request(code)
        data = self._encode(code, text.encode("utf-8"), behaviour)
        try:
            if not behaviour.drip_s:
                self.wfile.write(data)
                return
            for index in range(len(data)):
                if self.server.owner._stopping.wait(behaviour.drip_s):
                    return
                self.wfile.write(data[index:index + 1])
        except (BrokenPipeError, ConnectionResetError):
            logger.debug("test server: the client left before the answer")

    def _encode(self, code: int, body: bytes, behaviour: Behaviour) -> bytes:
        """The whole HTTP response: status line, headers and body."""
        phrase = self.responses.get(code, ("",))[0]
        headers = [("Content-Type", behaviour.content_type), ("Content-Length", str(len(body))),
                   *behaviour.headers]
        head = f"{self.protocol_version} {code} {phrase}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers) + "\r\n"
        return head.encode("latin-1") + body


def _completion(behaviour: Behaviour, payload: Mapping[str, Any], model: str) -> dict[str, Any]:
    """A ``chat.completion`` object; usage counts words where the script gives no numbers."""
    messages = payload.get("messages") or []
    prompt_words = sum(len(str(m.get("content", "")).split()) for m in messages if isinstance(m, dict))
    prompt_tokens = behaviour.prompt_tokens if behaviour.prompt_tokens is not None else prompt_words
    completion_tokens = (behaviour.completion_tokens if behaviour.completion_tokens is not None
                         else len((behaviour.content or "").split()))
    return {
        "id": f"chatcmpl-test-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": payload.get("model") or model,
        "choices": [{"index": 0, "finish_reason": behaviour.finish_reason, "logprobs": None,
                     "message": {"role": "assistant", "content": behaviour.content}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }
