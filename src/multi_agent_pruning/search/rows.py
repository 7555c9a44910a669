"""Recording trial rows on the driver: one row per trial, also for trials whose worker died."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from ray import tune

from multi_agent_pruning.results import ResultStore, TrialResult

logger = logging.getLogger(__name__)

__all__ = ["RowRecorder", "RowSink", "dead_worker_row"]


def dead_worker_row(*, identifiers: dict[str, Any], target_kind: str, trial_id: str, iteration: int,
                    strategy: Any = None, detail: str | None = None) -> TrialResult:
    """The ``failed`` row of a trial that never reported: its worker died and Tune's retries
    (``search.max_failures``) were exhausted. ``detail`` is appended (Tune's error file)."""
    error = "the trial's worker failed and its retries were exhausted" + (f": {detail}" if detail else "")
    return TrialResult.failed(error=error, strategy=strategy, target_kind=target_kind, **identifiers,
                              trial_id=trial_id, iteration=iteration)


class RowSink:
    """Appends rows to the store once per trial id and reports progress."""

    def __init__(self, store: ResultStore, *, existing: set[str] = frozenset(), total: int = 0,
                 progress: Callable[[TrialResult, int, int], None] | None = None) -> None:
        self.store, self.progress, self.total = store, progress, total
        self.recorded = set(existing)
        self.done = len(self.recorded)
        #: The first error of the store; once set, searches stop proposing and re-raise it.
        self.error: Exception | None = None

    def __call__(self, row: TrialResult) -> None:
        if row.trial_id in self.recorded:
            return  # a retried trial reports once
        if self.error is not None:
            return  # the store is failing: the search is stopping, see ``error``
        try:
            self.store.append(row)
        except Exception as err:  # Tune would swallow it; keep it and stop the search instead
            logger.error("could not store trial %s: %s; stopping the search", row.trial_id, err)
            self.error = err
            return
        self.recorded.add(row.trial_id)
        self.done += 1
        if self.progress:
            self.progress(row, self.done, self.total)


class RowRecorder(tune.Callback):
    """Tune callback: stores each finished trial's reported row; a trial that errored out
    (worker died, retries exhausted) becomes a ``failed`` row."""

    def __init__(self, sink: RowSink, identifiers: dict[str, Any], target_kind: str) -> None:
        self.sink, self.identifiers, self.target_kind = sink, identifiers, target_kind

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        result = trial.last_result or {}
        if "row_json" in result:
            self.sink(TrialResult.from_row(json.loads(result["row_json"])))

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        config = trial.config or {}
        self.sink(dead_worker_row(identifiers=self.identifiers, target_kind=self.target_kind, trial_id=trial.trial_id,
                                  iteration=int(config.get("iteration", 0) or 0), detail=trial.error_file))
