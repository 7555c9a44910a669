"""The LLM transport: ``openai``'s client with its retries, under a hard wall-clock deadline.

:class:`openai.AsyncOpenAI` (any OpenAI-compatible ``base_url`` works: vLLM, Ollama, llama.cpp
server) retries timeouts, connection errors and HTTP 408/409/429/5xx itself, with backoff and the
server's ``Retry-After``. Added here: no retry that cannot help (a 429 of a spent quota, a
``Retry-After`` longer than the time left), a count of attempts, and a deadline. openai's
``timeout`` is a limit per read, which a server sending one byte at a time defeats: the request,
openai's retries and their waits run on an event loop thread of the transport's own and are
cancelled when the deadline passes. Ctrl+C (``KeyboardInterrupt``) during any wait propagates at
once; the request in flight is cancelled.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import openai

from multi_agent_pruning.config import LLMConfig

__all__ = ["Call", "Transport"]

_NO_KEY = "sk-no-key"  # local servers often need no key, but the client insists on one


@dataclass
class Call:
    """One completion request: its deadline, and what came of it (:meth:`Transport.send` fills it)."""

    deadline: float  # time.monotonic() value
    attempts: int = 0  # HTTP requests sent, openai's retries included
    note: str = ""  # why openai was told not to retry
    data: dict[str, Any] | None = None  # text, finish reason and token counts of the reply
    failure: tuple[str, str] | None = None  # (record outcome, message), when it failed


class Transport:
    """An :class:`openai.AsyncOpenAI` client and an event loop thread of its own to run it on
    (started by the first :meth:`send`; :meth:`close` or garbage collection stops it)."""

    def __init__(self, settings: LLMConfig) -> None:
        self.settings = settings
        self._loop: asyncio.AbstractEventLoop | None = None
        hooks = {"request": [_count_attempt], "response": [_stop_futile_retry]}
        self._create = openai.AsyncOpenAI(
            base_url=settings.base_url, api_key=settings.resolve_api_key() or _NO_KEY, timeout=settings.timeout,
            max_retries=settings.max_retries, http_client=openai.DefaultAsyncHttpxClient(event_hooks=hooks),
        ).chat.completions.create

    def close(self) -> None:
        if self._loop is not None:
            self._stop()
            self._loop = None

    def send(self, call: Call, prompt: list[dict[str, str]], json_mode: bool) -> None:
        """Asks for the completion of ``prompt``; every attempt and wait is abandoned at the deadline."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            thread = threading.Thread(target=self._loop.run_forever, name="llm-client-loop", daemon=True)
            thread.start()
            self._stop = weakref.finalize(self, _stop_loop, self._loop, thread)
        extra = {"response_format": {"type": "json_object"}} if json_mode else {}
        request = dict(model=self.settings.model, messages=prompt, temperature=self.settings.temperature,
                       max_tokens=self.settings.max_tokens, **extra)
        future = asyncio.run_coroutine_threadsafe(_create(self._create, call, request), self._loop)
        try:
            # The wait is interruptible: Ctrl+C raises KeyboardInterrupt here at once.
            call.data = _completion_data(future.result(timeout=max(call.deadline - time.monotonic(), 0.0)))
        except BaseException as err:
            future.cancel()  # cancels the request in flight (and closes its connection), if any
            if not isinstance(err, Exception):
                raise
            kind, message = _failure(err, self.settings)
            call.failure = kind, f"{message} (after {call.attempts} attempt(s){call.note})"


_CALL: contextvars.ContextVar[Call] = contextvars.ContextVar("llm_call")


async def _create(create: Any, call: Call, request: dict[str, Any]) -> Any:
    _CALL.set(call)  # in this task's own context: the HTTP client's event hooks see this call
    return await create(**request)


async def _count_attempt(request: Any) -> None:
    _CALL.get().attempts += 1


async def _stop_futile_retry(response: Any) -> None:
    """Sets ``x-should-retry: false``, which openai obeys, where a retry cannot help: a 429 of a
    spent quota, or a ``Retry-After`` longer than the time left (then the call fails at once)."""
    call = _CALL.get()
    asked, left = _retry_after(response.headers), call.deadline - time.monotonic()
    if response.status_code == 429 and b"insufficient_quota" in await response.aread():
        call.note = "; not retried: the quota is spent"
    elif asked is not None and asked >= left:
        call.note = (f"; a retry in {asked:.2f}s is more than the {max(left, 0.0):.2f}s left of the "
                     "time budget, llm.total_timeout")
    else:
        return
    response.headers["x-should-retry"] = "false"


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds asked for by ``retry-after-ms`` or ``Retry-After`` (openai also reads a date there)."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            return float(headers[name]) * scale
        except (KeyError, ValueError):
            continue
    return None


class _Unreadable(ValueError):
    """A completion without a usable message."""


def _failure(err: Exception, settings: LLMConfig) -> tuple[str, str]:
    """The record outcome and the message of a failed request."""
    if isinstance(err, TimeoutError):  # the deadline (openai raises APITimeoutError)
        return "timeout", f"no reply within the time budget of {settings.time_budget():g}s (llm.total_timeout)"
    if isinstance(err, openai.APITimeoutError):
        return "timeout", f"no reply within {settings.timeout:g}s"
    if isinstance(err, openai.APIConnectionError):
        return "connection_error", f"cannot connect to {settings.base_url or 'the OpenAI API'}: {_connection_problem(err)}"
    if isinstance(err, openai.APIStatusError):
        kinds = {openai.RateLimitError: "rate_limited", openai.InternalServerError: "server_error"}
        return kinds.get(type(err), "http_error"), f"HTTP {err.status_code}: {err}"
    detail = str(err) if isinstance(err, _Unreadable) else f"{type(err).__name__}: {err}"
    return "invalid_response", f"unreadable response from the LLM service: {detail}"


def _stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    async def stop() -> None:  # a request cancelled at its deadline may still be closing
        tasks = asyncio.all_tasks() - {asyncio.current_task()}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        loop.stop()

    if not loop.is_closed():
        asyncio.run_coroutine_threadsafe(stop(), loop)
        thread.join(timeout=5)
        if not thread.is_alive():
            loop.close()


def _completion_data(response: Any) -> dict[str, Any]:
    """Text, finish reason and usage of a chat completion; anything else is ``_Unreadable``."""
    try:
        choice = response.choices[0]
        text, finish = choice.message.content, choice.finish_reason
    except (AttributeError, IndexError, KeyError, TypeError) as err:
        raise _Unreadable(f"no message in the completion ({type(err).__name__})") from None
    if not isinstance(text, (str, type(None))):
        raise _Unreadable(f"the message content is a {type(text).__name__}, not text")
    usage = getattr(response, "usage", None)
    return {"text": text or "", "finish_reason": finish if isinstance(finish, str) else None,
            "prompt_tokens": _token_count(getattr(usage, "prompt_tokens", None)),
            "completion_tokens": _token_count(getattr(usage, "completion_tokens", None))}


def _connection_problem(err: BaseException) -> str:
    """The operating system's reason (e.g. "Connection refused") and the client's summary."""
    summary, root, seen = str(err.__cause__ or err), err, set()
    while (root.__cause__ or root.__context__) is not None and id(root) not in seen:
        seen.add(id(root))
        root = root.__cause__ or root.__context__
    errno = getattr(root, "errno", None) if isinstance(root, OSError) else None
    return f"{os.strerror(errno)} ({summary})" if errno else summary


def _token_count(value: Any) -> int | None:
    """A usage count as the server reported it, if it is one (the table column is an integer)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
