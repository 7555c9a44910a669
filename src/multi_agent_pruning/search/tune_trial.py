"""The Ray Tune side of a trial: run :func:`evaluate_strategy` and report its row."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from typing import Any

from ray import tune

from multi_agent_pruning.core.strategy import Strategy
from multi_agent_pruning.search.trial import TrialContext, evaluate_strategy

__all__ = ["run_tune_trial", "row_json"]


def _default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def row_json(row) -> str:
    return json.dumps(row.to_row(), default=_default)


def run_tune_trial(config: dict[str, Any], context: TrialContext, save_models: bool = True) -> None:
    """Tune function trainable: one strategy, one row, the pruned model as the checkpoint."""
    strategy = Strategy.from_json(config["strategy"])
    with tempfile.TemporaryDirectory(prefix="mapruner-trial-") as tmp:
        row = evaluate_strategy(strategy, context, trial_id=config["trial_id"], iteration=config["iteration"],
                                save_dir=tmp if save_models else None)
        checkpoint = tune.Checkpoint.from_directory(tmp) if save_models and row.status == "ok" else None
        score = row.top1_after if row.status == "ok" and row.top1_after is not None else -1.0
        tune.report({"score": score, "status": row.status, "row_json": row_json(row)}, checkpoint=checkpoint)
