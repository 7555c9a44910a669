"""Our best accuracy next to each paper target, from the results table alone.

A row counts for a target when it is ok, its model is the target's base model (or an alias),
its dataset matches, and its achieved MACs are within ``macs_tolerance`` (relative) of the
paper's MACs, or, for targets stated as a speed-up, its ``base_macs / macs`` is within
``macs_tolerance`` of the paper's speed-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from multi_agent_pruning.stats.paper_targets import PAPER_TARGETS, PaperTarget

__all__ = ["compare_with_papers", "matching_rows", "size_error"]


def size_error(frame: pd.DataFrame, target: PaperTarget) -> pd.Series:
    """Relative distance of each row's size to the target: MACs, or speed-up when the paper gives one."""
    macs = frame["macs"].astype(float)
    if target.macs is not None:
        return (macs - target.macs).abs() / target.macs
    speedup = frame["base_macs"].astype(float) / macs
    return (speedup - float(target.speedup)).abs() / float(target.speedup)


def _candidates(frame: pd.DataFrame, target: PaperTarget, metric: str) -> pd.DataFrame:
    mask = ((frame["status"] == "ok") & frame["model"].isin(target.models) & (frame["dataset"] == target.dataset)
            & frame[metric].notna() & frame["macs"].notna())
    if target.macs is None:
        mask &= frame["base_macs"].notna()
    return frame[mask]


def matching_rows(frame: pd.DataFrame, target: PaperTarget, *, metric: str = "top1_after",
                  macs_tolerance: float = 0.02) -> pd.DataFrame:
    """Ok rows of the target's model and dataset whose size is within ``macs_tolerance``."""
    candidates = _candidates(frame, target, metric)
    return candidates[size_error(candidates, target) <= macs_tolerance]


def _budget(target: PaperTarget) -> str:
    return f"{target.macs / 1e9:.2f} G MACs" if target.macs is not None else f"a {target.speedup}x speed-up"


def _no_data_reason(frame: pd.DataFrame, target: PaperTarget, metric: str, tolerance: float) -> str:
    candidates = _candidates(frame, target, metric)
    models = "/".join(target.models)
    if candidates.empty:
        return f"no ok rows of {models} on {target.dataset}"
    closest = float(size_error(candidates, target).min())
    return (f"{len(candidates)} ok row(s) of {models} on {target.dataset}, none within {tolerance:.0%} of "
            f"{_budget(target)} (closest off by {closest:.1%})")


def _method_entry(rows: pd.DataFrame, target: PaperTarget, metric: str, macs_tolerance: float,
                  top1_tolerance: float) -> dict[str, Any]:
    ordered = rows.assign(_m=rows[metric].astype(float)).sort_values(["_m", "trial_id"], ascending=[False, True])
    best = ordered.iloc[0]
    per_run = ordered.groupby("run")["_m"].max()
    delta = float(best["_m"]) - target.top1
    return {
        "best_top1": float(best["_m"]), "paper_top1": target.top1, "delta": delta,
        "within_tolerance": bool(abs(delta) <= top1_tolerance), "reached": bool(delta >= -top1_tolerance),
        "macs": float(best["macs"]), "size_error": float(size_error(ordered.iloc[:1], target).iloc[0]),
        "params": None if pd.isna(best["params"]) else int(best["params"]),
        "trial_id": str(best["trial_id"]), "run": int(best["run"]), "n_matching": int(len(rows)),
        "n_runs": int(per_run.size), "mean_best_per_run": float(np.mean(per_run.to_numpy())),
    }


def compare_with_papers(data: Any, targets: Sequence[PaperTarget] = PAPER_TARGETS, *, metric: str = "top1_after",
                        group: str = "method", macs_tolerance: float = 0.02,
                        top1_tolerance: float = 0.01) -> dict[str, dict[str, Any]]:
    """For every target, the best matching row of each method and its distance to the paper.

    Args:
        data: Results table (pyarrow Table or pandas DataFrame).
        targets: Paper targets to compare with.
        metric: Accuracy column compared with the paper's top-1.
        group: Column naming the compared series.
        macs_tolerance: Relative size tolerance for a row to count.
        top1_tolerance: Accuracy tolerance (fraction: 0.01 is one percentage point).

    Returns:
        ``{target name: {"target", "status": "compared" | "no data", "reason", "methods"}}``;
        ``methods`` maps each method with matching rows to ``best_top1``, ``paper_top1``,
        ``delta`` (ours - paper), ``within_tolerance`` (``|delta| <= top1_tolerance``),
        ``reached`` (``delta >= -top1_tolerance``), the best row's size and identifiers, and
        ``mean_best_per_run``.
    """
    frame = data if isinstance(data, pd.DataFrame) else data.to_pandas()
    out: dict[str, dict[str, Any]] = {}
    for target in targets:
        rows = matching_rows(frame, target, metric=metric, macs_tolerance=macs_tolerance)
        methods = {str(name): _method_entry(part, target, metric, macs_tolerance, top1_tolerance)
                   for name, part in sorted(rows.groupby(group), key=lambda item: str(item[0]))}
        out[target.name] = {
            "target": target.to_dict(),
            "status": "compared" if methods else "no data",
            "reason": None if methods else _no_data_reason(frame, target, metric, macs_tolerance),
            "methods": methods,
        }
    return out
