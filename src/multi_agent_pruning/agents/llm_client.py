"""The LLM client: records, a reply cache, replay, and the ``llm`` settings it takes.

:class:`LLMClient` sends chat completions through :mod:`.llm_transport` (``openai``'s own
retries, with a hard deadline) unless the on-disk reply cache has the answer (replay mode answers
only from it), rejects empty and oversized replies, and keeps one :class:`LLMCallRecord` per call.
The API key never reaches a record, a log line, an exception or a repr.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from multi_agent_pruning.agents.llm_schema import LLMReplyError
from multi_agent_pruning.agents.llm_transport import Call, Transport
from multi_agent_pruning.config import LLMConfig, section_issues
from multi_agent_pruning.exceptions import ConfigurationError, LLMError
from multi_agent_pruning.utils.atomic import atomic_write

__all__ = ["LLMSettings", "LLMClient", "LLMReply", "LLMCallRecord", "LLMServiceError"]

logger = logging.getLogger(__name__)

_RECORD_REPLY_CHARS = 10_000
_REDACTED = "[redacted]"


class LLMSettings(LLMConfig):
    """The ``llm`` config section built in code: invalid values raise one
    :class:`ConfigurationError` naming each ``llm.<field>``, as ``load_config`` reports them."""

    def __init__(self, **values: Any) -> None:
        issues = section_issues("llm", LLMConfig, values)
        if issues:
            raise ConfigurationError("Invalid LLM settings:", issues)
        super().__init__(**values)

    @classmethod
    def from_config(cls, config: LLMConfig, **overrides: Any) -> LLMSettings:
        """Settings from a validated ``llm`` section, with ``overrides`` applied (and checked)."""
        return cls(**{**dict(config), **overrides})


@dataclass
class LLMCallRecord:
    """One call to the model, successful or not (the prompt and the reply, never the key).

    ``outcome`` is ``"ok"``, ``"cached"``, ``"repaired"``, a service failure (``"timeout"``,
    ``"rate_limited"``, ``"server_error"``, ``"connection_error"``, ``"http_error"``,
    ``"invalid_response"``, ``"cache_miss"``), a reply problem (``"empty"``, ``"oversized"``,
    ``"invalid_json"``, ``"invalid_schema"``) or ``"interrupted"`` (Ctrl+C during the call).
    ``attempts`` counts the HTTP requests sent, openai's retries included (0: from the cache).
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


class LLMClient:
    """Chat completions with openai's retries, a deadline, a reply cache and a record of every call.

    Args:
        settings: The ``llm`` config section (endpoint, model and limits).

    Raises:
        LLMError: Neither a key, a ``base_url`` nor replay mode is configured.
    """

    def __init__(self, settings: LLMConfig) -> None:
        if not settings.replay and not settings.is_configured():
            raise LLMError(f"no LLM configured: set {settings.api_key_env or 'llm.api_key'} or llm.base_url")
        self.settings = settings
        self.records: list[LLMCallRecord] = []
        self._transport = None if settings.replay else Transport(settings)

    def __repr__(self) -> str:
        return f"LLMClient(model={self.settings.model!r}, base_url={self.settings.base_url!r})"

    def close(self) -> None:
        """Stops the client's event loop thread; a later call starts a new one."""
        if self._transport is not None:
            self._transport.close()

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
            return self._finish(record, cached, start, "cached")
        if self.settings.replay:
            self._fail(record, start, "cache_miss", f"replay mode: no cached reply for prompt {key[:12]}")
        if deadline is None:
            deadline = time.monotonic() + self.settings.time_budget()
        data = self._send(record, prompt, response_format_json, deadline, start)
        # A reply quoting the key (a server echoing headers) must not carry it any further.
        text = data["text"] = self._redact(data["text"])
        if not text.strip():
            self._fail(record, start, "empty", "the model returned an empty reply", reply_error=True)
        if len(text) > self.settings.max_reply_chars:
            record.reply = text[:_RECORD_REPLY_CHARS]
            self._fail(record, start, "oversized", f"the reply has {len(text)} characters, over the "
                       f"limit of {self.settings.max_reply_chars}", reply_error=True)
        self._write_cache(key, shown, data)
        return self._finish(record, data, start, "ok")

    # -- network ---------------------------------------------------------------------------
    def _send(self, record: LLMCallRecord, prompt: list[dict[str, str]], json_mode: bool, deadline: float,
              start: float) -> dict[str, Any]:
        call = Call(deadline)
        try:
            self._transport.send(call, prompt, json_mode)
        except KeyboardInterrupt:
            record.outcome, record.error = "interrupted", "interrupted by the user (Ctrl+C)"
            record.latency_s = time.perf_counter() - start
            raise
        finally:
            record.attempts = call.attempts
        if call.failure is not None:
            self._fail(record, start, *call.failure)
        return call.data

    # -- records ---------------------------------------------------------------------------
    def _finish(self, record: LLMCallRecord, data: Mapping[str, Any], start: float, outcome: str) -> LLMReply:
        record.outcome, record.latency_s = outcome, time.perf_counter() - start
        record.reply = data["text"][:_RECORD_REPLY_CHARS]
        record.prompt_tokens = data.get("prompt_tokens")
        record.completion_tokens = data.get("completion_tokens")
        logger.debug("LLM call %s: %s in %.3fs, %d attempt(s)", record.prompt_hash[:12], outcome,
                     record.latency_s, record.attempts)
        return LLMReply(data["text"], record.prompt_tokens, record.completion_tokens, record.latency_s,
                        outcome == "cached", record.attempts, self.settings.model, data.get("finish_reason"),
                        record)

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
