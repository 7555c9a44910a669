"""Exceptions raised by multi_agent_pruning.

Every exception the package raises on purpose descends from :class:`MultiAgentPruningError`,
so ``except MultiAgentPruningError`` catches all of them and nothing else.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "MultiAgentPruningError",
    "CompatibilityError",
    "ConfigurationError",
    "ConfigIssue",
    "UnknownNameError",
    "DatasetNotFoundError",
    "PruningError",
    "InfeasibleTargetError",
    "ValidationError",
    "LLMError",
    "CheckpointError",
    "ResultStoreError",
    "ModelDownloadError",
    "TrialTimeoutError",
    "suggest_names",
]


class MultiAgentPruningError(Exception):
    """Base class of every error raised by this package."""


@dataclass(frozen=True)
class ConfigIssue:
    """One problem found while validating a configuration.

    Attributes:
        path: Dotted key path, e.g. ``search.max_iterations``.
        rule: What the value must satisfy, in words.
        value: The offending value (``repr`` is shown in messages).
    """

    path: str
    rule: str
    value: object = None

    def __str__(self) -> str:
        return f"{self.path}: {self.rule} (got {self.value!r})"


class ConfigurationError(MultiAgentPruningError):
    """Invalid configuration or user input. ``issues`` lists every problem found."""

    def __init__(self, message: str, issues: Iterable[ConfigIssue] = ()) -> None:
        self.issues = list(issues)
        if self.issues:
            details = "\n".join(f"  - {issue}" for issue in self.issues)
            message = f"{message}\n{details}"
        super().__init__(message)


class UnknownNameError(ConfigurationError, KeyError):
    """A name that is not in a registry (model, dataset, metric, method, ...)."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        self.kind = kind
        self.name = name
        self.suggestions = suggest_names(name, known)
        hint = f" Did you mean: {', '.join(self.suggestions)}?" if self.suggestions else ""
        super().__init__(f"Unknown {kind} {name!r}.{hint}")

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return self.args[0]


class DatasetNotFoundError(ConfigurationError):
    """A dataset's files are missing; the message says where we looked and how to get them."""


class PruningError(MultiAgentPruningError):
    """A pruning operation failed (unsupported layer, target unreachable, no trial produced a model, ...).

    Attributes:
        result: What was measured and stored before the failure (the summary of a search whose
            trials all failed, the row of a baseline run), or None.
    """

    def __init__(self, message: str, *, result: dict | None = None) -> None:
        self.result = result
        super().__init__(message)

    def __reduce__(self):  # Ray pickles errors of its workers; keep the result across the trip
        return _rebuild_pruning_error, (type(self), self.args[0] if self.args else "", self.result)


class ValidationError(MultiAgentPruningError):
    """Validation of results or of a paper reproduction failed."""


class LLMError(MultiAgentPruningError):
    """The LLM service failed or replied with something unusable."""


class CheckpointError(MultiAgentPruningError):
    """A checkpoint could not be loaded safely or does not match the model."""


class ResultStoreError(MultiAgentPruningError):
    """The result store could not be read or written."""


class ModelDownloadError(MultiAgentPruningError):
    """Pretrained weights could not be fetched."""


class CompatibilityError(MultiAgentPruningError):
    """An installed torch-pruning or Ray lacks a private API this package relies on
    (see :mod:`multi_agent_pruning.compat`)."""


class TrialTimeoutError(MultiAgentPruningError):
    """A trial ran past its wall-clock limit (``search.trial_timeout_s``).

    Attributes:
        limit_s: The limit in seconds.
        stage: The stage the trial was in (``prune``, ``fine-tune``, ``evaluate``, ...).
        elapsed_s: Seconds since the trial started when the limit was found passed.
    """

    def __init__(self, limit_s: float, stage: str, elapsed_s: float, detail: str = "") -> None:
        self.limit_s, self.stage, self.elapsed_s, self.detail = limit_s, stage, elapsed_s, detail
        super().__init__(f"trial exceeded its time limit of {limit_s:g} s (search.trial_timeout_s) in stage "
                         f"{stage} after {elapsed_s:.1f} s" + (f"; {detail}" if detail else ""))

    def __reduce__(self):  # Ray pickles errors of its workers; keep every field across the trip
        return type(self), (self.limit_s, self.stage, self.elapsed_s, self.detail)


class InfeasibleTargetError(ConfigurationError, PruningError):
    """A target no structural pruning of the model can meet (found before any trial runs):
    bad input, and a pruning that cannot be done, so both ``except`` clauses catch it."""

    def __reduce__(self):
        return type(self), (self.args[0] if self.args else "",)


def _rebuild_pruning_error(cls: type, message: str, result: dict | None) -> PruningError:
    error = cls.__new__(cls)
    PruningError.__init__(error, message, result=result)
    return error


def suggest_names(name: str, known: Iterable[str], limit: int = 3) -> list[str]:
    """Closest known names to ``name`` (by difflib ratio, then by prefix), best first."""
    known = list(known)
    close = difflib.get_close_matches(name, known, n=limit, cutoff=0.5)
    if len(close) < limit:
        prefix = [k for k in known if k.startswith(name[:4]) and k not in close]
        close.extend(sorted(prefix)[: limit - len(close)])
    return close
