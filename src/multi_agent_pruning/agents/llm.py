"""The LLM layer of the agents: an OpenAI-compatible client with retries, records and a cache.

:class:`LLMClient` wraps :class:`openai.AsyncOpenAI` (any OpenAI-compatible ``base_url`` works:
vLLM, Ollama, llama.cpp server) and adds what a long search needs: its own retries with backoff
that honours ``Retry-After``, a size limit on replies, an on-disk reply cache (also used for
offline replay), and one :class:`LLMCallRecord` per call. :func:`propose_with_llm` never raises
for a service or reply problem; it returns outcome ``"fallback"`` so the caller can use its
built-in policy. The API key never reaches a record, a log line, an exception or a repr.

Time is bounded twice. Each attempt has a hard wall-clock limit of ``timeout`` seconds (connect,
headers and body together: HTTP client timeouts are per read, which a server sending one byte at
a time defeats), enforced by running the request on the client's own event loop thread and
cancelling it. And all attempts, retry waits and the repair request of one proposal share a
deadline of :meth:`LLMSettings.time_budget` seconds, by default
``(max_retries + 1) * timeout + max_retries * backoff_max``: no retry starts, and no wait is
taken, that cannot finish before it. Ctrl+C (``KeyboardInterrupt``) during any wait propagates
at once; the request in flight is cancelled.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import email.utils
import hashlib
import json
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import openai
from pydantic import SecretStr

from multi_agent_pruning.agents.llm_schema import (
    LLMReplyError,
    DEFAULT_MAX_FINETUNE_FACTOR,
    ParsedProposal,
    build_repair_messages,
    build_strategy_messages,
    parse_strategy_reply,
    recovery_limits,
)
from multi_agent_pruning.core.strategy import Strategy
from multi_agent_pruning.exceptions import ConfigIssue, ConfigurationError, LLMError
from multi_agent_pruning.utils.atomic import atomic_write

__all__ = [
    "LLMSettings",
    "LLMClient",
    "LLMReply",
    "LLMCallRecord",
    "LLMServiceError",
    "LLMReplyError",
    "LLMProposalOutcome",
    "ParsedProposal",
    "build_strategy_messages",
    "parse_strategy_reply",
    "propose_with_llm",
]

logger = logging.getLogger(__name__)

_NO_KEY = "sk-no-key"  # local servers often need no key, but the client insists on one
_RECORD_REPLY_CHARS = 10_000
_REDACTED = "[redacted]"


@dataclass(frozen=True)
class LLMSettings:
    """How to reach the model; mirrors the ``llm`` config section.

    Attributes:
        model: Model name sent to the API.
        base_url: OpenAI-compatible endpoint; None means api.openai.com.
        api_key_env: Environment variable holding the key (read at call time, never stored).
        api_key: Explicit key; kept as a SecretStr so it never shows in a repr.
        temperature: Sampling temperature (part of the cache key).
        timeout: Seconds one attempt may take in all (connect, headers and body), then it is
            abandoned; a hard wall-clock limit, not a limit per read.
        max_retries: Retries after the first attempt (timeouts, connection errors, 429, 5xx).
        max_tokens: Largest reply length in tokens.
        cache_dir: Directory of cached replies; None disables the cache.
        replay: Answer only from ``cache_dir``; a miss is an error and nothing goes out.
        max_reply_chars: Longer replies are rejected as ``"oversized"``.
        backoff_base: First retry delay in seconds; doubled per retry, with jitter.
        backoff_max: Cap of any delay, including one asked for by ``Retry-After``.
        total_timeout: Seconds one proposal may spend on the LLM in all (every attempt, retry
            wait and the repair request); None means ``(max_retries + 1) * timeout +
            max_retries * backoff_max``, see :meth:`time_budget`.
        max_finetune_factor: ``finetune_steps`` / ``finetune_epochs`` proposed by the model may
            be at most this multiple of the base strategy's (the config's) fine-tuning budget.
    """

    model: str = "gpt-4o-mini"
    base_url: str | None = None
    api_key_env: str | None = "OPENAI_API_KEY"
    api_key: SecretStr | str | None = field(default=None, repr=False)
    temperature: float = 0.2
    timeout: float = 30.0
    max_retries: int = 2
    max_tokens: int = 2048
    cache_dir: str | Path | None = None
    replay: bool = False
    max_reply_chars: int = 200_000
    backoff_base: float = 0.5
    backoff_max: float = 10.0
    total_timeout: float | None = None
    max_finetune_factor: float = DEFAULT_MAX_FINETUNE_FACTOR

    def __post_init__(self) -> None:
        if isinstance(self.api_key, str):
            object.__setattr__(self, "api_key", SecretStr(self.api_key) if self.api_key else None)
        issues = list(_settings_issues(self))
        if issues:
            raise ConfigurationError("Invalid LLM settings:", issues)

    @classmethod
    def from_config(cls, config: Any, **overrides: Any) -> LLMSettings:
        """Settings from a validated ``LLMConfig`` (the ``llm`` config section)."""
        names = ("model", "base_url", "api_key_env", "api_key", "temperature", "timeout",
                 "max_retries", "max_tokens", "cache_dir", "replay")
        values = {name: getattr(config, name) for name in names}
        # Optional keys: sections written before they existed lack them.
        for name in ("total_timeout", "max_finetune_factor", "backoff_max"):
            if getattr(config, name, None) is not None:
                values[name] = getattr(config, name)
        return cls(**{**values, **overrides})

    def time_budget(self) -> float:
        """Seconds one proposal may spend on the LLM: ``total_timeout`` when set, else the
        longest the retries can take, ``(max_retries + 1) * timeout + max_retries * backoff_max``."""
        if self.total_timeout is not None:
            return float(self.total_timeout)
        return (self.max_retries + 1) * self.timeout + self.max_retries * self.backoff_max

    def resolve_api_key(self) -> str | None:
        """The explicit key, else the one in ``api_key_env``; None when neither is set."""
        if isinstance(self.api_key, SecretStr):
            return self.api_key.get_secret_value()
        return (os.environ.get(self.api_key_env) or None) if self.api_key_env else None

    def is_configured(self) -> bool:
        """Whether the LLM can be asked: a key, a local ``base_url``, or replay from a cache."""
        return self.resolve_api_key() is not None or self.base_url is not None or self.replay


def _settings_issues(s: LLMSettings):
    """Yields a ConfigIssue for every rule the settings break."""
    def is_int(value: Any, low: int) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= low

    for name, rule, ok in (
        ("timeout", "must be > 0 seconds", s.timeout > 0),
        ("max_retries", "must be an integer >= 0", is_int(s.max_retries, 0)),
        ("max_tokens", "must be an integer >= 1", is_int(s.max_tokens, 1)),
        ("max_reply_chars", "must be an integer >= 1", is_int(s.max_reply_chars, 1)),
        ("temperature", "must be in [0, 2]", 0 <= s.temperature <= 2),
        ("backoff_base", "must be >= 0 seconds", s.backoff_base >= 0),
        ("backoff_max", "must be >= 0 seconds", s.backoff_max >= 0),
        ("total_timeout", "must be > 0 seconds or null", s.total_timeout is None or s.total_timeout > 0),
        ("max_finetune_factor", "must be > 0", s.max_finetune_factor > 0),
        ("cache_dir", "must be set when llm.replay is true", not s.replay or s.cache_dir is not None),
    ):
        if not ok:
            yield ConfigIssue(f"llm.{name}", rule, getattr(s, name))


@dataclass
class LLMCallRecord:
    """One call to the model, successful or not (the prompt and the reply, never the key).

    ``outcome`` is ``"ok"``, ``"cached"``, ``"repaired"``, a service failure (``"timeout"``,
    ``"rate_limited"``, ``"server_error"``, ``"connection_error"``, ``"http_error"``,
    ``"invalid_response"``, ``"cache_miss"``), a reply problem (``"empty"``, ``"oversized"``,
    ``"invalid_json"``, ``"invalid_schema"``) or ``"interrupted"`` (Ctrl+C during the call).
    """

    timestamp: float
    prompt_hash: str
    prompt: list[dict[str, str]]
    model: str
    outcome: str
    reply: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float = 0.0
    attempts: int = 0
    error: str | None = None


@dataclass(frozen=True)
class LLMReply:
    """A usable reply. ``attempts`` is 0 when it came from the cache."""

    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_s: float
    cached: bool
    attempts: int
    model: str
    finish_reason: str | None = None
    record: LLMCallRecord | None = field(default=None, repr=False, compare=False)


class LLMServiceError(LLMError):
    """The service could not be reached or kept failing; ``kind`` is the record outcome."""

    def __init__(self, kind: str, message: str, record: LLMCallRecord | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.record = record


@dataclass(frozen=True)
class LLMProposalOutcome:
    """What :func:`propose_with_llm` got.

    ``outcome`` is ``"ok"``, ``"cached"``, ``"repaired"`` or ``"fallback"`` (then ``error`` says
    why and ``strategies`` is empty); ``records`` are the calls made, each with its own outcome;
    ``elapsed_s`` is the wall time of the whole proposal (at most the settings' time budget).
    """

    strategies: list[Strategy]
    reasoning: str
    outcome: str
    records: list[LLMCallRecord]
    rejected: list[tuple[Any, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    elapsed_s: float = 0.0


class _Retry(Exception):
    """One failed attempt; ``delay`` is what the server asked for, if anything."""

    def __init__(self, kind: str, message: str, *, retryable: bool, delay: float | None = None) -> None:
        super().__init__(message)
        self.kind, self.retryable, self.delay = kind, retryable, delay


class LLMClient:
    """Chat completions with retries, a reply cache and a record of every call.

    Requests run on an event loop in a daemon thread of the client's own, so that a deadline
    can cancel one whatever the server does; :meth:`close` (or garbage collection) stops it.

    Args:
        settings: Endpoint, model and limits.

    Raises:
        LLMError: Neither a key, a ``base_url`` nor replay mode is configured.
    """

    def __init__(self, settings: LLMSettings) -> None:
        self.settings = settings
        self.records: list[LLMCallRecord] = []
        self._rng = random.Random()
        self._client: openai.AsyncOpenAI | None = None
        self._loop: _LoopThread | None = None
        if not settings.replay:
            if not settings.is_configured():
                where = settings.api_key_env or "llm.api_key"
                raise LLMError(f"no LLM configured: set {where} or llm.base_url")
            self._client = openai.AsyncOpenAI(base_url=settings.base_url,
                                              api_key=settings.resolve_api_key() or _NO_KEY,
                                              timeout=settings.timeout, max_retries=0)

    def __repr__(self) -> str:
        return f"LLMClient(model={self.settings.model!r}, base_url={self.settings.base_url!r})"

    def close(self) -> None:
        """Stops the client's event loop thread; a later call starts a new one."""
        if self._loop is not None:
            self._loop.close()
            self._loop = None

    def complete(self, messages: Sequence[Mapping[str, str]], *, response_format_json: bool = True,
                 deadline: float | None = None) -> LLMReply:
        """Sends ``messages`` (or answers from the cache) and returns the reply text.

        Args:
            messages: Chat messages in the OpenAI format.
            response_format_json: Ask for a JSON object.
            deadline: ``time.monotonic()`` value by which every attempt and retry wait is over;
                None gives ``settings.time_budget()`` seconds from now.

        Raises:
            LLMServiceError: The service kept failing, the deadline passed, or replay mode
                missed the cache.
            LLMReplyError: The reply is empty or longer than ``max_reply_chars``.
            KeyboardInterrupt: Ctrl+C during the call (the request in flight is cancelled).
        """
        prompt = [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]
        key = self._cache_key(prompt)
        shown = [{**m, "content": self._redact(m["content"])} for m in prompt]
        record = LLMCallRecord(time.time(), key, shown, self.settings.model, "ok")
        self.records.append(record)
        start = time.perf_counter()
        cached = self._read_cache(key)
        if cached is not None:
            return self._finish(record, cached, start, attempts=0, outcome="cached")
        if self.settings.replay:
            self._fail(record, start, "cache_miss", f"replay mode: no cached reply for prompt {key[:12]}")
        if deadline is None:
            deadline = time.monotonic() + self.settings.time_budget()
        try:
            data = self._send(record, prompt, start, response_format_json, deadline)
        except KeyboardInterrupt:
            record.outcome, record.error = "interrupted", "interrupted by the user (Ctrl+C)"
            record.latency_s = time.perf_counter() - start
            raise
        # A reply quoting the key (a server echoing headers) must not carry it any further.
        text = data["text"] = self._redact(data["text"])
        if not text.strip():
            self._fail(record, start, "empty", "the model returned an empty reply", reply_error=True)
        if len(text) > self.settings.max_reply_chars:
            record.reply = text[:_RECORD_REPLY_CHARS]
            self._fail(record, start, "oversized", f"the reply has {len(text)} characters, over the "
                       f"limit of {self.settings.max_reply_chars}", reply_error=True)
        self._write_cache(key, shown, data)
        return self._finish(record, data, start, attempts=record.attempts, outcome="ok")

    # -- network ---------------------------------------------------------------------------
    def _send(self, record: LLMCallRecord, prompt: list[dict[str, str]], start: float,
              json_mode: bool, deadline: float) -> dict[str, Any]:
        total, attempt = self.settings.max_retries + 1, 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self._fail(record, start, "timeout", f"no time left of the {self.settings.time_budget():g}s "
                           f"budget of this proposal (llm.total_timeout) after {attempt} attempt(s)")
            attempt += 1
            record.attempts = attempt
            try:
                return self._request(prompt, json_mode, min(self.settings.timeout, left))
            except _Retry as caught:
                failure = caught
            # Handled outside the except block so that the error raised carries no chained
            # openai exception, whose text may quote a server's echo of the key.
            message = self._redact(str(failure))
            pause, left = self._delay(attempt, failure.delay), deadline - time.monotonic()
            if not failure.retryable or attempt == total:
                self._fail(record, start, failure.kind, f"{message} (after {attempt} attempt(s))")
            if pause >= left:  # the wait alone would pass the deadline: give up now, not later
                self._fail(record, start, failure.kind, f"{message} (after {attempt} attempt(s); a retry "
                           f"in {pause:.2f}s is more than the {max(left, 0.0):.2f}s left of the "
                           f"{self.settings.time_budget():g}s budget, llm.total_timeout)")
            logger.info("LLM attempt %d/%d failed (%s): %s; retrying in %.2fs",
                        attempt, total, failure.kind, message, pause)
            time.sleep(pause)

    def _request(self, prompt: list[dict[str, str]], json_mode: bool, limit: float) -> dict[str, Any]:
        """One attempt, abandoned after ``limit`` seconds whatever the server does."""
        extra = {"response_format": {"type": "json_object"}} if json_mode else {}
        if self._loop is None:
            self._loop = _LoopThread()
        try:
            response = self._loop.run(self._client.chat.completions.create(
                model=self.settings.model, messages=prompt, temperature=self.settings.temperature,
                max_tokens=self.settings.max_tokens, **extra), limit)
        except (openai.APITimeoutError, TimeoutError) as err:
            raise _Retry("timeout", f"no reply within {limit:.3g}s", retryable=True) from err
        except openai.APIConnectionError as err:
            where = self.settings.base_url or "the OpenAI API"
            raise _Retry("connection_error", f"cannot connect to {where}: {_connection_problem(err)}",
                         retryable=True) from err
        except openai.RateLimitError as err:
            quota = getattr(err, "code", None) == "insufficient_quota"
            raise _Retry("rate_limited", f"HTTP 429: {err}", retryable=not quota,
                         delay=_retry_after(err.response.headers)) from err
        except openai.InternalServerError as err:
            raise _Retry("server_error", f"HTTP {err.status_code}: {err}", retryable=True) from err
        except openai.APIStatusError as err:
            raise _Retry("http_error", f"HTTP {err.status_code}: {err}", retryable=False) from err
        except Exception as err:  # noqa: BLE001 - any other body the client could not read
            raise _Retry("invalid_response", f"unreadable response from the LLM service: "
                         f"{type(err).__name__}: {err}", retryable=False) from err
        return _completion_data(response)

    def _delay(self, attempt: int, asked: float | None) -> float:
        if asked is not None:
            return min(self.settings.backoff_max, asked)
        step = self.settings.backoff_base * 2 ** (attempt - 1)
        return min(self.settings.backoff_max, step * (0.5 + 0.5 * self._rng.random()))

    # -- records ---------------------------------------------------------------------------
    def _finish(self, record: LLMCallRecord, data: Mapping[str, Any], start: float, *,
                attempts: int, outcome: str) -> LLMReply:
        record.outcome, record.attempts = outcome, attempts
        record.latency_s = time.perf_counter() - start
        record.reply = data["text"][:_RECORD_REPLY_CHARS]
        record.prompt_tokens = data.get("prompt_tokens")
        record.completion_tokens = data.get("completion_tokens")
        logger.debug("LLM call %s: %s in %.3fs, %d attempt(s)", record.prompt_hash[:12], outcome,
                     record.latency_s, attempts)
        return LLMReply(data["text"], record.prompt_tokens, record.completion_tokens, record.latency_s,
                        outcome == "cached", attempts, self.settings.model, data.get("finish_reason"), record)

    def _fail(self, record: LLMCallRecord, start: float, kind: str, message: str, *,
              reply_error: bool = False) -> NoReturn:
        record.outcome, record.error = kind, self._redact(message)
        record.latency_s = time.perf_counter() - start
        logger.warning("LLM call %s failed (%s): %s", record.prompt_hash[:12], kind, record.error)
        if reply_error:
            raise LLMReplyError(kind, record.error)
        raise LLMServiceError(kind, record.error, record)

    def _redact(self, text: str) -> str:
        secret = self.settings.resolve_api_key()
        return text.replace(secret, _REDACTED) if secret and len(secret) >= 4 else text

    # -- cache -----------------------------------------------------------------------------
    def _cache_key(self, prompt: list[dict[str, str]]) -> str:
        blob = json.dumps({"model": self.settings.model, "messages": prompt,
                           "temperature": self.settings.temperature}, sort_keys=True)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def _read_cache(self, key: str) -> dict[str, Any] | None:
        if self.settings.cache_dir is None:
            return None
        path = Path(self.settings.cache_dir) / f"{key}.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            logger.warning("ignoring unreadable LLM cache entry %s: %s", path, err)
            return None
        return data if isinstance(data, dict) and isinstance(data.get("text"), str) else None

    def _write_cache(self, key: str, prompt: list[dict[str, str]], data: Mapping[str, Any]) -> None:
        if self.settings.cache_dir is None:
            return
        folder = Path(self.settings.cache_dir)
        entry = {"model": self.settings.model, "temperature": self.settings.temperature,
                 "messages": prompt, **data}
        try:
            atomic_write(folder / f"{key}.json", json.dumps(entry))
        except OSError as err:
            logger.warning("could not write the LLM cache entry in %s: %s", folder, err)


class _LoopThread:
    """An asyncio event loop in a daemon thread; :meth:`run` waits for one coroutine with a
    hard limit and cancels it on timeout or Ctrl+C."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="llm-client-loop", daemon=True)
        self.thread.start()
        self._finalizer = weakref.finalize(self, _stop_loop, self.loop, self.thread)

    def run(self, coroutine: Any, limit: float) -> Any:
        """The coroutine's result; ``TimeoutError`` after ``limit`` seconds."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            # The wait is interruptible: Ctrl+C raises KeyboardInterrupt here at once.
            return future.result(timeout=max(limit, 0.0))
        except concurrent.futures.TimeoutError:
            future.cancel()  # cancels the task, which closes its connection
            raise TimeoutError(f"no reply within {limit:.3g}s") from None
        except BaseException:
            future.cancel()
            raise

    def close(self) -> None:
        self._finalizer()


def _stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    if loop.is_closed():
        return
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)
    if not thread.is_alive():
        loop.close()


def _completion_data(response: Any) -> dict[str, Any]:
    """Text, finish reason and usage of a chat completion; anything else is ``invalid_response``."""
    try:
        choice = response.choices[0]
        text, finish = choice.message.content, choice.finish_reason
    except (AttributeError, IndexError, KeyError, TypeError) as err:
        raise _Retry("invalid_response", "unreadable response from the LLM service: no message in "
                     f"the completion ({type(err).__name__})", retryable=False) from None
    if not isinstance(text, (str, type(None))):
        raise _Retry("invalid_response", "unreadable response from the LLM service: the message "
                     f"content is a {type(text).__name__}, not text", retryable=False)
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


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds asked for by ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            pass
        try:
            moment = email.utils.parsedate_to_datetime(value) if scale == 1.0 else None
        except (TypeError, ValueError, OverflowError):
            moment = None  # not a date either: ignored, the backoff applies
        if moment is not None:
            return max(0.0, moment.timestamp() - time.time())
    return None


def propose_with_llm(client: LLMClient, context: Mapping[str, Any], *, base: Strategy,
                     known_kinds: Collection[str], limits: Mapping[str, float], batch_size: int,
                     exclude_keys: Collection[str] = ()) -> LLMProposalOutcome:
    """Asks the model for a batch of strategies; repairs an invalid reply once.

    Both requests share one deadline, ``client.settings.time_budget()`` seconds from the call.
    The fine-tuning budget the model may ask for is bounded by ``base`` times
    ``client.settings.max_finetune_factor`` (see :func:`recovery_limits`); the prompt shows
    those bounds with the safety limits.

    Args:
        client: The LLM client; its records grow by one per call made here.
        context: Prompt context, see :func:`build_strategy_messages`.
        base, known_kinds, limits, batch_size, exclude_keys: See :func:`parse_strategy_reply`.

    Returns:
        Outcome ``"ok"``/``"cached"``/``"repaired"`` with the strategies, or ``"fallback"``
        with ``error`` and no strategies when the service or the replies failed.

    Raises:
        KeyboardInterrupt: Ctrl+C during a request or a retry wait.
    """
    started = time.monotonic()
    first = len(client.records)
    factor = client.settings.max_finetune_factor
    shown = {**(context.get("safety_limits") or {}), **recovery_limits(base, factor)}
    messages = build_strategy_messages({**context, "safety_limits": shown})
    check = dict(base=base, known_kinds=known_kinds, limits=limits, batch_size=batch_size,
                 exclude_keys=exclude_keys, max_finetune_factor=factor)
    outcome = _ask_with_repair(client, messages, check, first, started + client.settings.time_budget())
    elapsed = time.monotonic() - started
    if outcome.outcome == "fallback":
        logger.warning("LLM proposal failed after %.2fs (%s); falling back to the built-in policy",
                       elapsed, outcome.error)
    else:
        logger.info("LLM proposal %s in %.2fs", outcome.outcome, elapsed)
    return dataclasses.replace(outcome, elapsed_s=elapsed)


def _ask_with_repair(client: LLMClient, messages: list[dict[str, str]], check: dict[str, Any], first: int,
                     deadline: float) -> LLMProposalOutcome:
    try:
        return _ask(client, messages, check, first, deadline, repaired=False)
    except LLMServiceError as err:
        return _fallback(client, first, err)
    except LLMReplyError as err:
        logger.info("LLM reply unusable (%s): %s; asking once for a corrected reply", err.kind, err)
        repair = build_repair_messages(messages, err)
    try:
        return _ask(client, repair, check, first, deadline, repaired=True)
    except LLMError as err:
        return _fallback(client, first, err)


def _ask(client: LLMClient, messages: list[dict[str, str]], check: dict[str, Any], first: int,
         deadline: float, *, repaired: bool) -> LLMProposalOutcome:
    reply = client.complete(messages, deadline=deadline)
    try:
        parsed = parse_strategy_reply(reply.text, **check)
    except LLMReplyError as err:
        if reply.finish_reason == "length":  # cut off at max_tokens: say so, or the repair repeats it
            err = LLMReplyError(err.kind, f"{err} (the reply was cut off at the token limit; be brief)",
                                text=err.text, rejected=err.rejected)
        reply.record.outcome, reply.record.error = err.kind, str(err)
        raise err from None
    if repaired and not reply.cached:
        reply.record.outcome = "repaired"
    outcome = "repaired" if repaired else ("cached" if reply.cached else "ok")
    return LLMProposalOutcome(parsed.strategies, parsed.reasoning, outcome, client.records[first:],
                              parsed.rejected, parsed.warnings)


def _fallback(client: LLMClient, first: int, err: LLMError) -> LLMProposalOutcome:
    rejected = list(getattr(err, "rejected", []))
    return LLMProposalOutcome([], "", "fallback", client.records[first:], rejected, error=str(err))
