"""``TrialResult``: one row of the results table, for an ok, failed or rejected trial."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import importlib.metadata
import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from multi_agent_pruning.exceptions import ResultStoreError
from multi_agent_pruning.results._validate import check_row
from multi_agent_pruning.results.schema import SCHEMA_VERSION

__all__ = ["TrialResult", "current_versions", "strategy_columns"]

_DISTRIBUTIONS = {
    "torch": "torch",
    "timm": "timm",
    "torch_pruning": "torch-pruning",
    "ray": "ray",
    "multi_agent_pruning": "multi-agent-pruning",
}


@functools.lru_cache(maxsize=1)
def _versions() -> tuple[tuple[str, str | None], ...]:
    found = []
    for key, dist in _DISTRIBUTIONS.items():
        try:
            found.append((key, importlib.metadata.version(dist)))
        except importlib.metadata.PackageNotFoundError:
            found.append((key, None))
    return tuple(found)


def current_versions() -> dict[str, str | None]:
    """Installed versions of torch, timm, torch_pruning, ray and multi_agent_pruning.

    Returns:
        ``{"torch": "2.5.1", ..., "ray": None}``; None for a package that is not installed.
    """
    return dict(_versions())


def _versions_json() -> str:
    return json.dumps(current_versions(), sort_keys=True)


def _canonical_json(value: Any) -> str:
    if isinstance(value, str):
        value = json.loads(value)
    return json.dumps(value, sort_keys=True)


def strategy_columns(strategy: Any) -> dict[str, Any]:
    """The strategy columns of a row, from a ``Strategy``, a mapping or a JSON string.

    Args:
        strategy: Anything with ``to_dict()`` (``core.Strategy``), a mapping, or its JSON text.

    Returns:
        ``strategy_json``, the main strategy fields, ``target_kind``, ``target_reduction`` and
        ``target_value`` (the strategy's absolute budget, None when it gives a reduction).
        Keys the strategy lacks are None.
    """
    if hasattr(strategy, "to_dict"):
        data = dict(strategy.to_dict())
    elif isinstance(strategy, str):
        data = json.loads(strategy)
    else:
        data = dict(strategy)
    if not isinstance(data, dict):
        raise ResultStoreError(f"strategy must be a JSON object, got {type(data).__name__}")
    multipliers = data.get("group_multipliers")
    columns = {name: data.get(name) for name in (
        "importance", "global_pruning", "isomorphic", "round_to", "head_pruning_ratio",
        "learning_rate", "finetune_steps", "kd_weight", "target_kind", "target_reduction")}
    columns["strategy_json"] = json.dumps(data, sort_keys=True)
    columns["group_multipliers_json"] = None if multipliers is None else _canonical_json(dict(multipliers))
    columns["target_value"] = data.get("target_budget")
    return columns


def _utc(value: Any) -> Any:
    """Aware datetimes (or ISO-8601 text with an offset, as JSON carries them) in UTC; anything
    else is left for validation to reject."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, dt.datetime) and value.utcoffset() is not None:
        return value.astimezone(dt.timezone.utc)
    return value


@dataclass(kw_only=True)
class TrialResult:
    """One trial's row. Fields that were not measured stay None; see docs/results-schema.md.

    All fields are keywords. ``status``, the identifiers, ``strategy_json`` and ``target_kind``
    are required; ``versions_json`` and ``host`` default to those of the current process.
    """

    experiment: str
    run: int
    method: str
    model: str
    dataset: str
    seed: int
    trial_id: str
    iteration: int
    stage: str = "search"
    source_trial_id: str | None = None
    recovery_epochs: int | None = None
    strategy_json: str
    importance: str | None = None
    global_pruning: bool | None = None
    isomorphic: bool | None = None
    round_to: int | None = None
    head_pruning_ratio: float | None = None
    learning_rate: float | None = None
    finetune_steps: int | None = None
    kd_weight: float | None = None
    group_multipliers_json: str | None = None
    target_kind: str
    target_value: float | None = None
    target_reduction: float | None = None
    base_macs: float | None = None
    base_params: int | None = None
    base_top1: float | None = None
    macs: float | None = None
    params: int | None = None
    macs_reduction: float | None = None
    params_reduction: float | None = None
    target_error: float | None = None
    top1_before: float | None = None
    top5_before: float | None = None
    top1_adaptive_bn: float | None = None
    top1_after: float | None = None
    top5_after: float | None = None
    loss_after: float | None = None
    latency_ms: float | None = None
    steps_trained: int | None = None
    rung: int | None = None
    stopped_early: bool | None = None
    rungs_json: str | None = None
    node_id: str | None = None
    node_ip: str | None = None
    gpu_ids: str | None = None
    device: str | None = None
    seconds_total: float | None = None
    seconds_prune: float | None = None
    seconds_finetune: float | None = None
    seconds_evaluate: float | None = None
    llm_prompt_tokens: int | None = None
    llm_completion_tokens: int | None = None
    status: str
    error: str | None = None
    error_type: str | None = None
    custom_metrics_json: str | None = None
    versions_json: str = field(default_factory=_versions_json)
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    host: str | None = field(default_factory=socket.gethostname)
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def failed(cls, *, error: BaseException | str, strategy: Any = None, target_kind: str | None = None,
               status: str = "failed", **fields: Any) -> TrialResult:
        """A row for a trial that failed (or, with ``status="rejected"``, was refused).

        Args:
            error: The exception, or the message / rejection reasons as text.
            strategy: The trial's strategy (see :func:`strategy_columns`), None if none existed.
            target_kind: Needed when there is no strategy to take it from.
            status: ``"failed"`` or ``"rejected"``.
            **fields: The identifiers (experiment, run, method, model, dataset, seed, trial_id,
                iteration) and whatever was measured before the failure.

        Returns:
            The row; ``finished_at`` defaults to now.
        """
        columns: dict[str, Any] = {"strategy_json": "{}"}
        if strategy is not None:
            columns.update(strategy_columns(strategy))
        if target_kind is not None:
            columns["target_kind"] = target_kind
        if columns.get("target_kind") is None:
            raise ResultStoreError("TrialResult.failed: target_kind is required when no strategy gives it")
        if isinstance(error, BaseException):
            columns["error"] = str(error) or type(error).__name__
            columns["error_type"] = type(error).__name__
        else:
            columns["error"] = str(error)
        columns["finished_at"] = dt.datetime.now(dt.timezone.utc)
        columns.update(fields)
        return cls(status=status, **columns)

    def to_row(self) -> dict[str, Any]:
        """The row as a plain dict keyed by column name (timestamps in UTC)."""
        row = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        row["started_at"] = _utc(row["started_at"])
        row["finished_at"] = _utc(row["finished_at"])
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> TrialResult:
        """Builds a result from a row dict (e.g. ``pyarrow.Table.to_pylist()``); unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(row) - names)
        if unknown:
            raise ResultStoreError(f"Unknown trial result column(s): {', '.join(unknown)}")
        values = dict(row)
        for name in ("started_at", "finished_at"):
            values[name] = _utc(values.get(name))
        try:
            return cls(**values)
        except TypeError as exc:  # a required column is missing
            raise ResultStoreError(f"Incomplete trial result row: {exc}") from None

    def validate(self) -> None:
        """Checks every value against the schema; raises ``ResultStoreError`` naming each bad field."""
        issues = check_row(self.to_row())
        if issues:
            details = "; ".join(issues)
            raise ResultStoreError(f"Invalid trial result (trial_id={self.trial_id!r}): {details}")
