"""The agent interface: a small class with ``execute(input_data) -> dict``."""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, ClassVar

from multi_agent_pruning.config import mask_secrets
from multi_agent_pruning.exceptions import ConfigIssue, ConfigurationError, suggest_names
from multi_agent_pruning.utils.timing import TimingProfiler

__all__ = ["AgentResponse", "BaseAgent"]


@dataclass
class AgentResponse:
    """What an agent concluded from an LLM reply (or from its built-in policy).

    Attributes:
        success: Whether the reply was usable.
        reasoning: The model's (or policy's) explanation, as text; escaped wherever shown.
        recommendations: Structured content of the reply.
        confidence: Confidence in [0, 1].
        safety_checks: Name -> outcome of each safety check applied.
        warnings: Human-readable warnings.
        timestamp: ISO-8601 UTC time of the response.
        agent_name: The agent that produced it.
    """

    success: bool
    reasoning: str
    recommendations: dict[str, Any]
    confidence: float
    safety_checks: dict[str, Any]
    warnings: list[str]
    timestamp: str
    agent_name: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat()


class BaseAgent(ABC):
    """Base class of the six agents and of user-defined ones.

    Subclasses implement :meth:`get_agent_role` and :meth:`execute`; agents that talk to an
    LLM also override :meth:`parse_llm_response`. Agents are plain classes (Ray actors wrap
    them elsewhere), log through :mod:`logging`, time themselves with ``self.profiler`` and
    return plain, JSON-serialisable dicts.

    Args:
        config: The agent's section of the experiment config (a mapping).
        agent_name: Name used in results and logs (default: the class name).

    Raises:
        ConfigurationError: ``config`` has a key the agent does not read (when the agent lists
            the keys it reads in :attr:`config_keys`), with suggestions; no key is silently ignored.
    """

    #: The config keys the agent reads; None accepts any (the default, for user-defined agents).
    config_keys: ClassVar[frozenset[str] | None] = None

    def __init__(self, config: Mapping[str, Any] | None = None, *, agent_name: str | None = None) -> None:
        self.config: dict[str, Any] = dict(config or {})
        self.agent_name = agent_name or type(self).__name__
        self._check_config_keys()
        self.profiler = TimingProfiler()
        self.logger = logging.getLogger(f"{type(self).__module__}.{type(self).__name__}")

    def _check_config_keys(self) -> None:
        known = self.config_keys
        unknown = [key for key in self.config if known is not None and key not in known]
        if unknown:
            issues = [ConfigIssue(f"{self.agent_name}.{key}", _unknown_key_rule(str(key), known or ()),
                                  mask_secrets(str(key), self.config[key])) for key in unknown]
            raise ConfigurationError(f"{type(self).__name__} does not read these config keys:", issues)

    @abstractmethod
    def get_agent_role(self) -> str:
        """One sentence describing the agent's job (used in LLM system prompts)."""

    @abstractmethod
    def execute(self, input_data: dict[str, Any]) -> dict[str, Any]:
        """Runs the agent. Returns a dict with at least ``success`` and ``agent_name``."""

    def parse_llm_response(self, response: str, context: dict[str, Any]) -> AgentResponse:
        """Default parser: a JSON object becomes ``recommendations``; anything else is reasoning."""
        try:
            data = json.loads(response)
        except (TypeError, ValueError):
            return self.make_response(False, reasoning=str(response), warnings=["reply is not JSON"])
        if not isinstance(data, dict):
            return self.make_response(False, reasoning=str(response), warnings=["reply is not a JSON object"])
        confidence = data.get("confidence", 0.5)
        if not isinstance(confidence, (int, float)) or isinstance(confidence, bool):
            confidence = 0.5
        return self.make_response(True, reasoning=str(data.get("reasoning", "")), recommendations=data,
                                  confidence=min(1.0, max(0.0, float(confidence))))

    def make_response(self, success: bool, *, reasoning: str = "", recommendations: dict | None = None,
                      confidence: float = 0.0, safety_checks: dict | None = None,
                      warnings: list[str] | None = None) -> AgentResponse:
        """An :class:`AgentResponse` stamped with this agent's name and the current time."""
        return AgentResponse(success=success, reasoning=reasoning, recommendations=dict(recommendations or {}),
                             confidence=confidence, safety_checks=dict(safety_checks or {}),
                             warnings=list(warnings or []), timestamp=utc_now(), agent_name=self.agent_name)

    def result(self, **payload: Any) -> dict[str, Any]:
        """The standard result dict: ``success``, ``agent_name``, ``timing`` and ``payload``."""
        out = {"success": True, "agent_name": self.agent_name, "timing": self.profiler.as_dict()}
        out.update(payload)
        return out


def _unknown_key_rule(key: str, known: frozenset[str] | tuple) -> str:
    close = suggest_names(key, sorted(known))
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return f"unknown key; {hint}known keys: {', '.join(sorted(known))}"
