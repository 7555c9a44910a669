"""A pruning target, or a sweep of them, given as ratios or as MACs to keep, turned into config overrides."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from multi_agent_pruning.config import parse_target_number
from multi_agent_pruning.exceptions import ConfigIssue, ConfigurationError

__all__ = ["target_overrides", "target_values"]


def target_overrides(*, target_ratio: Any = None, target_macs: Any = None, target_kind: str | None = None) -> list[str]:
    """Config overrides for a target given as a reduction ratio or as MACs to keep.

    ``target_ratio`` is the fraction of the dense model's ``target.kind`` (MACs unless told
    otherwise) to remove, in (0, 1). ``target_macs`` is what to keep: a fraction of the dense
    MACs in (0, 1) ("keep half") or an absolute count >= 1 ("2.3e9", "2.3G").

    Either may be a list (or comma-separated text, as on the command line: ``0.7,0.5,0.3``):
    several targets are one sweep (``target.sweep``), searched together in one run. A single
    value sets ``target.reduction`` or ``target.budget`` as before (and clears a sweep).
    """
    if target_ratio is not None and target_macs is not None:
        raise ConfigurationError("give either a target ratio or a target MACs budget, not both")
    overrides: list[str] = []
    if target_ratio is not None:
        values = target_values("target_ratio", target_ratio)
        bad = [v for v in values if not 0 < v < 1]
        if bad:
            raise ConfigurationError("Invalid target:", [ConfigIssue("target_ratio", "must be in (0, 1): the fraction "
                                                                     "removed", target_ratio)])
        if len(values) > 1:
            overrides += [_sweep(values), "target.reduction=null", "target.budget=null"]
        else:
            overrides += [f"target.reduction={values[0]}", "target.budget=null", "target.sweep=null"]
        if target_kind:
            overrides.append(f"target.kind={target_kind}")
    if target_macs is not None:
        values = target_values("target_macs", target_macs)
        if any(v <= 0 for v in values):
            raise ConfigurationError("Invalid target:", [ConfigIssue("target_macs", "must be > 0", target_macs)])
        overrides += ["target.kind=macs"]
        if len(values) > 1:
            if any(v < 1 for v in values) and any(v >= 1 for v in values):
                raise ConfigurationError("Invalid target:", [ConfigIssue(
                    "target_macs", "must be all fractions of the dense MACs (< 1) or all counts (>= 1), not a mix",
                    target_macs)])
            kept = [round(1 - v, 12) if v < 1 else v for v in values]
            overrides += [_sweep(kept), "target.reduction=null", "target.budget=null"]
        else:
            value = values[0]
            overrides += ([f"target.reduction={1 - value}", "target.budget=null"] if value < 1
                          else [f"target.budget={value}", "target.reduction=null"])
            overrides.append("target.sweep=null")
    return overrides


def _sweep(values: Sequence[float]) -> str:
    return "target.sweep=[" + ", ".join(repr(float(v)) for v in values) + "]"


def target_values(name: str, value: Any) -> list[float]:
    """One or several target numbers: a number, a string (``"2.3G"``, ``"0.7,0.5"``) or a list of them."""
    if isinstance(value, str) and "," in value:
        items: list[Any] = [part for part in value.split(",") if part.strip()]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = [value]
    if not items:
        raise ConfigurationError("Invalid target:", [ConfigIssue(name, "must name at least one target", value)])
    return [_number(name, item) for item in items]


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ConfigurationError("Invalid target:", [ConfigIssue(name, "must be a number", value)])
    parsed = parse_target_number(value)
    if isinstance(parsed, str):
        raise ConfigurationError("Invalid target:", [ConfigIssue(name, "must be a number (e.g. 0.5, 2.3e9, 2.3G)", value)])
    if not isinstance(parsed, (int, float)) or not math.isfinite(parsed):
        raise ConfigurationError("Invalid target:", [ConfigIssue(name, "must be a finite number", value)])
    return float(parsed)
