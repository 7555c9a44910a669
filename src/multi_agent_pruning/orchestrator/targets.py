"""A pruning target given as a ratio or as MACs to keep, turned into config overrides."""

from __future__ import annotations

import math
from typing import Any

from multi_agent_pruning.exceptions import ConfigIssue, ConfigurationError

__all__ = ["target_overrides"]


def target_overrides(*, target_ratio: Any = None, target_macs: Any = None, target_kind: str | None = None) -> list[str]:
    """Config overrides for a target given as a reduction ratio or as MACs to keep.

    ``target_ratio`` is the fraction of the dense model's ``target.kind`` (MACs unless told
    otherwise) to remove, in (0, 1). ``target_macs`` is what to keep: a fraction of the dense
    MACs in (0, 1) ("keep half") or an absolute count >= 1 ("2.3e9", "2.3G").
    """
    if target_ratio is not None and target_macs is not None:
        raise ConfigurationError("give either a target ratio or a target MACs budget, not both")
    overrides: list[str] = []
    if target_ratio is not None:
        value = _number("target_ratio", target_ratio)
        if not 0 < value < 1:
            raise ConfigurationError("Invalid target:", [ConfigIssue("target_ratio", "must be in (0, 1): the fraction removed", target_ratio)])
        overrides += [f"target.reduction={value}", "target.budget=null"]
        if target_kind:
            overrides.append(f"target.kind={target_kind}")
    if target_macs is not None:
        value = _number("target_macs", target_macs)
        if value <= 0:
            raise ConfigurationError("Invalid target:", [ConfigIssue("target_macs", "must be > 0", target_macs)])
        overrides += ["target.kind=macs"]
        overrides += ([f"target.reduction={1 - value}", "target.budget=null"] if value < 1
                      else [f"target.budget={value}", "target.reduction=null"])
    return overrides


_SUFFIX = {"k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ConfigurationError("Invalid target:", [ConfigIssue(name, "must be a number", value)])
    if isinstance(value, str):
        text = value.strip().lower().removesuffix("macs").strip()
        scale = _SUFFIX.get(text[-1:], 1.0) if text else 1.0
        try:
            value = float(text[:-1] if scale != 1.0 else text) * scale
        except ValueError:
            raise ConfigurationError("Invalid target:", [ConfigIssue(name, "must be a number (e.g. 0.5, 2.3e9, 2.3G)", value)]) from None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigurationError("Invalid target:", [ConfigIssue(name, "must be a finite number", value)])
    return float(value)
