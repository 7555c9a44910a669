"""Which target a row was searched at: the one rule the summary, the statistics and the report use.

A row's target is its ``target_kind`` with ``target_reduction`` (a fraction removed) when the
strategy gave one, else ``target_value`` (an absolute budget). Rows of one sweep therefore group
by target exactly; a row that failed before it had a strategy has no target.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["TargetKey", "add_target_columns", "point_target", "row_target", "strategy_target", "target_key"]

_UNITS = {"macs": "MACs", "params": "params"}


@dataclass(frozen=True)
class TargetKey:
    """One target: ``reduction`` (fraction removed) or ``budget`` (count kept) of ``kind``."""

    kind: str
    reduction: float | None = None
    budget: float | None = None

    @property
    def label(self) -> str:
        """``remove 50% of MACs`` or ``keep 2.3e+09 MACs`` (as ``TargetConfig.describe``)."""
        unit = _UNITS.get(self.kind, self.kind)
        if self.reduction is not None:
            return f"remove {_pct(self.reduction)} of {unit}"
        return f"keep {self.budget:.3g} {unit}"

    @property
    def slug(self) -> str:
        """A directory name: ``macs-remove-50pct``, ``macs-keep-2.3e+09``."""
        if self.reduction is not None:
            return f"{self.kind}-remove-{_pct(self.reduction).rstrip('%')}pct"
        return f"{self.kind}-keep-{self.budget:.4g}"

    @property
    def order(self) -> float:
        """Sorts targets easiest first: the fraction removed, or minus the count kept."""
        return float(self.reduction) if self.reduction is not None else -float(self.budget or 0.0)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "reduction": self.reduction, "budget": self.budget}


def _pct(value: float) -> str:
    text = f"{100 * value:.2f}".rstrip("0").rstrip(".")
    return f"{text}%"


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def target_key(kind: Any, reduction: Any, value: Any) -> TargetKey | None:
    """The target of a row's ``target_kind``, ``target_reduction`` and ``target_value``."""
    if not _present(kind):
        return None
    if _present(reduction):
        return TargetKey(str(kind), round(float(reduction), 9), None)
    if _present(value):
        return TargetKey(str(kind), None, float(value))
    return None


def point_target(point: Any) -> TargetKey:
    """The target of one point of a sweep (``TargetConfig.points()``: ``kind``, ``reduction``,
    ``budget``), keyed exactly as the rows searched at it."""
    key = target_key(point.kind, point.reduction, point.budget)
    if key is None:
        raise ValueError(f"a target point needs a kind and a reduction or a budget, got {point!r}")
    return key


def strategy_target(strategy: Any) -> TargetKey | None:
    """The target of a ``Strategy`` (``target_kind``, ``target_reduction``, ``target_budget``)."""
    return target_key(strategy.target_kind, strategy.target_reduction, strategy.target_budget)


def row_target(row: Any) -> TargetKey | None:
    """The target of a ``TrialResult``, a row mapping or a pandas row."""
    get = row.get if isinstance(row, Mapping) else (lambda name: getattr(row, name, None))
    return target_key(get("target_kind"), get("target_reduction"), get("target_value"))


def add_target_columns(frame: Any) -> Any:
    """A copy of the pandas ``frame`` with ``target`` (label, None without a target) and
    ``target_order`` (easiest first) columns."""
    keys = [target_key(k, r, v) for k, r, v in zip(frame["target_kind"], frame["target_reduction"],
                                                     frame["target_value"])]
    out = frame.copy()
    out["target"] = [None if k is None else k.label for k in keys]
    out["target_order"] = [math.nan if k is None else k.order for k in keys]
    return out
