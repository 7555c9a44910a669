"""Value checks of one results row against ``RESULT_SCHEMA``; every problem names its column."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa

from multi_agent_pruning.results.schema import COLUMNS, SCHEMA_VERSION, STAGES, STATUSES, TARGET_KINDS

__all__ = ["check_row"]

_INT64 = 2**63
# A diverged fine-tuning really does end with a NaN/inf loss; every other float must be finite.
_NONFINITE_OK = {"loss_after"}
_NON_NEGATIVE = {"base_macs", "base_params", "macs", "params", "target_value", "latency_ms", "seconds_total",
                 "seconds_prune", "seconds_finetune", "seconds_evaluate", "llm_prompt_tokens",
                 "llm_completion_tokens", "finetune_steps", "learning_rate", "kd_weight", "run", "iteration", "steps_trained", "rung"}
_FRACTIONS = {"top1_before", "top5_before", "top1_after", "top5_after", "head_pruning_ratio",
              "target_reduction"}
_AT_MOST_ONE = {"macs_reduction", "params_reduction"}
_JSON_OBJECTS = ("strategy_json", "group_multipliers_json", "custom_metrics_json", "versions_json")
_JSON_LISTS = ("rungs_json", "gpu_ids")
_NON_EMPTY = ("experiment", "method", "model", "dataset", "trial_id")


def check_row(row: Mapping[str, Any]) -> list[str]:
    """Problems with ``row``, each as ``"<column>: <rule> (got <value>)"``; empty when valid."""
    issues = list(_check_types(row))
    bad = {issue.split(":", 1)[0] for issue in issues}
    issues.extend(issue for issue in _check_values(row) if issue.split(":", 1)[0] not in bad)
    return issues


def _issue(name: str, rule: str, value: Any) -> str:
    return f"{name}: {rule} (got {value!r})"


def _check_types(row: Mapping[str, Any]) -> Iterator[str]:
    for spec in COLUMNS:
        value = row.get(spec.name)
        if value is None:
            if spec.null_when is None:
                yield _issue(spec.name, "must not be null", value)
            continue
        rule = _type_rule(spec.name, spec.type, value)
        if rule:
            yield _issue(spec.name, rule, value)


def _type_rule(name: str, arrow_type: pa.DataType, value: Any) -> str | None:
    """What ``value`` breaks for a column of ``arrow_type``, or None."""
    if pa.types.is_string(arrow_type):
        return None if isinstance(value, str) else "must be a string"
    if pa.types.is_boolean(arrow_type):
        return None if isinstance(value, bool) else "must be true or false"
    if pa.types.is_integer(arrow_type):
        if isinstance(value, bool) or not isinstance(value, int):
            return "must be an integer"
        return None if -_INT64 <= value < _INT64 else "must fit in a signed 64-bit integer"
    if pa.types.is_floating(arrow_type):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "must be a number"
        if not math.isfinite(value) and name not in _NONFINITE_OK:
            return "must be a finite number"
        return None
    if pa.types.is_timestamp(arrow_type):
        return None if _aware(value) else "must be a timezone-aware datetime"
    return f"unsupported column type {arrow_type}"


def _check_values(row: Mapping[str, Any]) -> Iterator[str]:
    for name in _NON_EMPTY:
        if row.get(name) == "":
            yield _issue(name, "must not be empty", "")
    if row.get("status") not in STATUSES:
        yield _issue("status", f"must be one of {', '.join(STATUSES)}", row.get("status"))
    elif row["status"] == "ok":
        for name in ("error", "error_type"):
            if row.get(name) is not None:
                yield _issue(name, "must be null when status is ok", row[name])
    elif not row.get("error"):
        yield _issue("error", f"must describe why the trial is {row['status']}", row.get("error"))
    if row.get("stage") not in STAGES:
        yield _issue("stage", f"must be one of {', '.join(STAGES)}", row.get("stage"))
    elif row["stage"] == "final" and not row.get("source_trial_id"):
        yield _issue("source_trial_id", "must name the recovered search trial when stage is final",
                     row.get("source_trial_id"))
    if row.get("target_kind") not in TARGET_KINDS:
        yield _issue("target_kind", f"must be one of {', '.join(TARGET_KINDS)}", row.get("target_kind"))
    if row.get("schema_version") != SCHEMA_VERSION:
        yield _issue("schema_version", f"must be the current version {SCHEMA_VERSION}", row.get("schema_version"))
    yield from _check_ranges(row)
    yield from _check_json(row)
    started, finished = row.get("started_at"), row.get("finished_at")
    if _aware(started) and _aware(finished) and finished < started:
        yield _issue("finished_at", f"must not be before started_at ({started.isoformat()})", finished.isoformat())


def _check_ranges(row: Mapping[str, Any]) -> Iterator[str]:
    for name, value in row.items():
        if value is None or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        if name in _NON_NEGATIVE and value < 0:
            yield _issue(name, "must be >= 0", value)
        elif name in _FRACTIONS and not 0.0 <= value <= 1.0:
            yield _issue(name, "must be a fraction in [0, 1]", value)
        elif name in _AT_MOST_ONE and value > 1.0:
            yield _issue(name, "must be <= 1", value)
        elif name == "round_to" and value < 1:
            yield _issue(name, "must be a positive integer", value)


def _check_json(row: Mapping[str, Any]) -> Iterator[str]:
    for name in (*_JSON_OBJECTS, *_JSON_LISTS):
        text = row.get(name)
        if not isinstance(text, str):
            continue
        try:
            parsed = json.loads(text)
        except ValueError as exc:
            yield _issue(name, f"must be valid JSON ({exc})", text)
            continue
        kind, wanted = (dict, "a JSON object") if name in _JSON_OBJECTS else (list, "a JSON list")
        if not isinstance(parsed, kind):
            yield _issue(name, f"must be {wanted}", text)


def _aware(value: Any) -> bool:
    return isinstance(value, dt.datetime) and value.utcoffset() is not None
