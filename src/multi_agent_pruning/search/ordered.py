"""Trial results revealed to a searcher in the order the trials were issued.

With several trials at a time, which one finishes first depends on timing (the machine's load,
a slow worker start, a trial with more pruning steps). A searcher that learns from each result
as it arrives (the master agent, Optuna's TPE) then proposes different strategies in two runs
of the same seed, and the runs cannot be compared or reproduced. ``search.reproducible`` (the
default) makes the information each proposal sees a function of the issue order alone:

* the proposal made after ``n`` trials were issued sees the results of the first
  ``n - lag`` trials (``lag`` = concurrent trials - 1), in issue order, and no others, even if
  later ones already finished; they are "pending" to it (the master never proposes a pending
  strategy again);
* if one of those first ``n - lag`` trials still runs, the free slot waits for it.

The cost is that wait: only when trials finish out of issue order
(benchmarks/history/search_quality.md, run 15, measures it).
Rows are still stored the moment a trial finishes; only what the searcher learns is ordered.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable
from typing import Any

from ray.tune.search import Searcher

__all__ = ["InOrderSearcher", "IssueOrder"]


class IssueOrder:
    """Bookkeeping of issued and finished trials; reveals finished ones in issue order.

    Args:
        lag: How many of the most recently issued trials a proposal does not wait for
            (concurrent trials - 1).
    """

    def __init__(self, lag: int) -> None:
        if lag < 0:
            raise ValueError(f"lag must be >= 0, got {lag}")
        self.lag = lag
        self.order: list[Hashable] = []
        self.finished: dict[Hashable, Any] = {}
        self.revealed = 0

    @property
    def issued(self) -> int:
        return len(self.order)

    def issue(self, key: Hashable) -> None:
        self.order.append(key)

    def finish(self, key: Hashable, payload: Any) -> None:
        self.finished[key] = payload

    def ready(self, upto: int) -> bool:
        """Whether the first ``upto`` issued trials have all finished."""
        return all(key in self.finished for key in self.order[self.revealed:upto])

    def reveal(self, upto: int) -> list[tuple[Hashable, Any]]:
        """The finished trials ``revealed .. upto - 1`` (issue order); marks them revealed."""
        if not self.ready(upto):
            raise RuntimeError(f"trials before #{upto} have not all finished")
        out = [(key, self.finished[key]) for key in self.order[self.revealed:upto]]
        self.revealed = max(self.revealed, upto)
        return out

    def take(self, at_least: int = 0) -> list[tuple[Hashable, Any]] | None:
        """What the next proposal may see, revealed: the finished trials up to the first
        ``issued - lag`` (at least ``at_least``, at most all issued), in issue order; None while
        one of them still runs (the proposal waits for it)."""
        upto = min(self.issued, max(self.issued - self.lag, at_least))
        return self.reveal(upto) if self.ready(upto) else None

    def unrevealed(self) -> list[Hashable]:
        """Issued trials not revealed yet (running, or finished out of order), in issue order."""
        return self.order[self.revealed:]


class InOrderSearcher(Searcher):
    """Wraps a Tune searcher (Optuna's) so it learns results in issue order; see the module.

    ``suggest`` number ``n`` first hands the wrapped searcher the results of trials
    ``0 .. n - lag - 1`` (waiting for any still running), then asks it. Once ``budget`` trials
    were issued no proposal depends on the rest, so they are handed over as they finish (the
    study's storage ends complete). Put it inside Tune's ``ConcurrencyLimiter``.

    Args:
        searcher: The searcher to wrap.
        lag: Concurrent trials - 1.
        budget: Trials the search issues (Tune's ``num_samples``).
    """

    def __init__(self, searcher: Searcher, *, lag: int, budget: int) -> None:
        self.searcher = searcher
        self.order = IssueOrder(lag)
        self.budget = budget
        super().__init__(metric=searcher.metric, mode=searcher.mode)

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec) -> bool:
        ok = self.searcher.set_search_properties(metric, mode, config, **spec)
        self._metric, self._mode = self.searcher.metric, self.searcher.mode
        return ok

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        seen = self.order.take()
        if seen is None:
            return None  # an earlier trial still runs: wait for it, whoever finished first
        self._hand_over(seen)
        suggestion = self.searcher.suggest(trial_id)
        if suggestion not in (None, Searcher.FINISHED):
            if isinstance(suggestion, dict):  # the trial's place in issue order (search.fidelity's gate)
                suggestion = {**suggestion, "issue_index": self.order.issued}
            self.order.issue(trial_id)
            if self.order.issued >= self.budget:
                self._hand_over_finished()
        return suggestion

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self.order.order:  # not issued through this wrapper
            self.searcher.on_trial_complete(trial_id, result=result, error=error)
            return
        self.order.finish(trial_id, (result, error))
        if self.order.issued >= self.budget:
            self._hand_over_finished()

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        # Intermediate results: TPE and NSGA-II do not sample from them; the trials report once.
        self.searcher.on_trial_result(trial_id, result)

    def _hand_over(self, revealed: list) -> None:
        for trial_id, (result, error) in revealed:
            self.searcher.on_trial_complete(trial_id, result=result, error=error)

    def _hand_over_finished(self) -> None:
        upto = self.order.revealed
        while upto < self.order.issued and self.order.order[upto] in self.order.finished:
            upto += 1
        self._hand_over(self.order.reveal(upto))

    def add_evaluated_point(self, *args, **kwargs) -> None:
        self.searcher.add_evaluated_point(*args, **kwargs)

    # Tune checkpoints every wrapper (anything with a ``searcher``) through these, the wrapped
    # searcher through its own save/restore.
    def get_state(self) -> dict:
        state = self.__dict__.copy()
        del state["searcher"]
        return copy.deepcopy(state)

    def set_state(self, state: dict) -> None:
        self.__dict__.update(state)

    def save(self, checkpoint_path: str) -> None:
        self.searcher.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.searcher.restore(checkpoint_path)
