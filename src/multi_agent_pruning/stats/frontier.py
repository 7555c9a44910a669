"""The accuracy-MACs frontier of a sweep: best top-1 per target, its area, paired tests on the area.

For one method and one run (seed), the frontier is the best ok row at each target of the sweep
(``results.targets``: rows group by their stated target). Its **area** is the normalised
hypervolume of those points in the plane (MACs kept as a fraction of the dense model, top-1):
the region each point dominates, ``[macs / base_macs, 1] x [reference_accuracy, top1]``, united
over the points and divided by ``1 * (1 - reference_accuracy)``. So the area is 1 for a model
that keeps all its accuracy at no MACs, 0 when every point is at or below the reference
accuracy, and a point at fewer MACs or higher accuracy never lowers it. A run that misses a
target (no ok row there) simply lacks that point, and its area shows the loss.

The paired tests are those of :mod:`multi_agent_pruning.stats.comparison` (Wilcoxon, paired t,
Holm, Friedman), with the area per (method, run) in place of the best accuracy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from multi_agent_pruning.exceptions import ValidationError
from multi_agent_pruning.results.targets import add_target_columns
from multi_agent_pruning.stats.comparison import StatisticsReport, analyze_methods

__all__ = ["FrontierReport", "analyze_frontier", "frontier_area", "frontier_areas", "frontier_points", "target_order"]

_COLUMNS = ("run", "status", "trial_id", "target_kind", "target_reduction", "target_value", "macs", "base_macs")


def _frame(data: Any) -> pd.DataFrame:
    return data.to_pandas() if hasattr(data, "to_pandas") and not isinstance(data, pd.DataFrame) else data


def frontier_points(data: Any, metric: str = "top1_after", group: str = "method") -> pd.DataFrame:
    """The best ok row of each (``group``, run, target).

    Returns:
        Columns ``[group, "run", "target", "target_order", "best", "macs", "base_macs",
        "macs_fraction", "params", "trial_id"]``, sorted by group, run and target (easiest
        first); ties go to the smallest trial id.
    """
    frame = _frame(data)
    missing = [c for c in (group, metric, *_COLUMNS) if c not in frame.columns]
    if missing:
        raise ValidationError(f"results table lacks column(s) {', '.join(missing)}")
    frame = add_target_columns(frame)
    ok = frame[(frame["status"] == "ok") & frame[metric].notna() & frame["target"].notna()]
    columns = [group, "run", "target", "target_order", "best", "macs", "base_macs", "macs_fraction", "params",
               "trial_id"]
    if ok.empty:
        return pd.DataFrame({c: pd.Series(dtype=float if c in ("best", "macs", "base_macs", "macs_fraction",
                                                                "target_order") else object) for c in columns})
    ok = ok.assign(best=ok[metric].astype(float), run=ok["run"].astype(int))
    ok = ok.sort_values([group, "run", "target_order", "best", "trial_id"],
                        ascending=[True, True, True, False, True], kind="stable")
    best = ok.groupby([group, "run", "target"], sort=False).head(1).copy()
    best["macs_fraction"] = best["macs"].astype(float) / best["base_macs"].astype(float)
    if "params" not in best.columns:
        best["params"] = np.nan
    return best[columns].reset_index(drop=True)


def frontier_area(points: Iterable[tuple[float, float]], reference_accuracy: float = 0.0) -> float:
    """Normalised hypervolume of ``(macs_fraction, accuracy)`` points (module docstring)."""
    if not 0.0 <= reference_accuracy < 1.0:
        raise ValidationError(f"reference_accuracy must be in [0, 1), got {reference_accuracy}")
    pts = sorted((min(1.0, max(0.0, float(x))), float(y)) for x, y in points)
    area, best = 0.0, reference_accuracy
    for index, (x, y) in enumerate(pts):
        best = max(best, min(1.0, y))
        right = pts[index + 1][0] if index + 1 < len(pts) else 1.0
        area += (right - x) * (best - reference_accuracy)
    return area / (1.0 - reference_accuracy)


def frontier_areas(data: Any, *, metric: str = "top1_after", group: str = "method",
                   reference_accuracy: float = 0.0) -> pd.DataFrame:
    """The frontier area of each (``group``, run): columns ``[group, "run", "best", "targets"]``
    (``best`` is the area, so :func:`~multi_agent_pruning.stats.comparison.analyze_methods` takes
    the frame as it is; ``targets`` counts the targets the run reached)."""
    points = data if {"best", "macs_fraction"} <= set(_frame(data).columns) else frontier_points(data, metric, group)
    rows = []
    for (name, run), part in points.groupby([group, "run"], sort=True):
        rows.append({group: name, "run": int(run),
                     "best": frontier_area(zip(part["macs_fraction"], part["best"]), reference_accuracy),
                     "targets": int(len(part))})
    return pd.DataFrame(rows, columns=[group, "run", "best", "targets"])


def target_order(points: pd.DataFrame) -> list[str]:
    """The targets of ``points`` easiest first."""
    order = points[["target", "target_order"]].drop_duplicates().sort_values("target_order")
    return [str(t) for t in order["target"]]


@dataclass(frozen=True)
class FrontierReport:
    """Per target and method: the best top-1 over runs; per method: the area and its paired tests."""

    targets: tuple[str, ...]
    reference_accuracy: float
    per_target: dict[str, dict[str, dict[str, Any]]]
    areas: dict[str, dict[str, Any]]
    area_statistics: StatisticsReport

    def to_dict(self) -> dict[str, Any]:
        return {"targets": list(self.targets), "reference_accuracy": self.reference_accuracy,
                "per_target": self.per_target, "areas": self.areas,
                "area_statistics": self.area_statistics.to_dict()}


def _spread(values: list[float]) -> dict[str, Any]:
    x = np.asarray(values, dtype=float)
    return {"mean": float(x.mean()), "std": float(x.std(ddof=1)) if x.size > 1 else None,
            "min": float(x.min()), "max": float(x.max()), "n_runs": int(x.size)}


def analyze_frontier(data: Any, *, reference: str | None = "multi_agent", metric: str = "top1_after",
                     group: str = "method", reference_accuracy: float = 0.0, n_resamples: int = 10_000,
                     confidence: float = 0.95, seed: int = 0) -> FrontierReport:
    """Best top-1 per target and method (mean, std, range over runs, with the per-run values and
    mean MACs), the frontier area per method and run, and the paired tests on the area."""
    points = frontier_points(data, metric, group)
    targets = tuple(target_order(points)) if len(points) else ()
    per_target: dict[str, dict[str, dict[str, Any]]] = {}
    for target in targets:
        part = points[points["target"] == target]
        per_target[target] = {}
        for name, rows in part.groupby(group, sort=True):
            entry = _spread(rows["best"].tolist())
            entry.update(per_run={int(r): float(b) for r, b in zip(rows["run"], rows["best"])},
                         macs=float(rows["macs"].mean()), macs_fraction=float(rows["macs_fraction"].mean()))
            per_target[target][str(name)] = entry
    areas = frontier_areas(points, group=group, reference_accuracy=reference_accuracy)
    area_entries = {}
    for name, rows in areas.groupby(group, sort=True):
        area_entries[str(name)] = {**_spread(rows["best"].tolist()),
                                   "per_run": {int(r): float(b) for r, b in zip(rows["run"], rows["best"])},
                                   "targets_reached": {int(r): int(t) for r, t in zip(rows["run"], rows["targets"])}}
    statistics = analyze_methods(areas[[group, "run", "best"]], reference=reference, metric="frontier_area",
                                 group=group, n_resamples=n_resamples, confidence=confidence, seed=seed)
    return FrontierReport(targets=targets, reference_accuracy=reference_accuracy, per_target=per_target,
                          areas=area_entries, area_statistics=statistics)
