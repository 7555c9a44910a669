"""A Ray Tune searcher driven by the master agent.

``suggest`` hands out one strategy at a time from the master's current batch (after the
analysis agent approved it). When the batch is used up and a trial slot is free, it asks the
master for the next batch as soon as at least one trial finished since the last proposal, with
the full history and the strategies still running (``pending``: never proposed again). So slots
do not idle while the slowest trial of a batch runs, and Ray Tune keeps its trial actors (an
actor left without a trial is released, and a new one costs a fresh process). Rejected proposals
and trials that died become rows too.

With ``reveal_lag`` set (``search.reproducible``, the default) the master sees the results in
the order the trials were issued, not the order they finished: the batch asked after ``n``
trials were issued sees the first ``n - reveal_lag`` results (at least one more than the last
batch saw), and a free slot waits for an earlier trial rather than use a later one's result
(:mod:`multi_agent_pruning.search.ordered`). The same seed then gives the same search whatever
the timing. Rows are stored as soon as each trial finishes either way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

import ray
from ray.tune.search import Searcher

from multi_agent_pruning.agents.analysis import Verdict
from multi_agent_pruning.agents.master import llm_token_columns
from multi_agent_pruning.core.strategy import Strategy
from multi_agent_pruning.results.trial import TrialResult, strategy_columns
from multi_agent_pruning.search.interrupt import requested
from multi_agent_pruning.search.ordered import IssueOrder
from multi_agent_pruning.search.rows import dead_worker_row

logger = logging.getLogger(__name__)

__all__ = ["MasterSearcher", "observation", "row_from_report"]


def observation(row: TrialResult) -> dict[str, Any]:
    """What the master learns of a finished trial: its strategy, status and top-1 after its last
    fine-tune; in a multi-fidelity search also the ``rung`` it reached, ``stopped_early`` (the
    scheduler did not promote it: a result, not a failure) and ``rungs`` (top-1 at each rung)."""
    seen = {"strategy_json": row.strategy_json, "top1_after": row.top1_after, "status": row.status}
    if row.rungs_json:
        seen.update(rung=row.rung, stopped_early=row.stopped_early,
                    rungs=[{"rung": r["rung"], "budget": r["budget"], "top1": r["top1"]} for r in json.loads(row.rungs_json)])
    return seen


def row_from_report(result: dict[str, Any]) -> TrialResult:
    """The TrialResult a trial reported (as JSON in ``row_json``)."""
    return TrialResult.from_row(json.loads(result["row_json"]))


class MasterSearcher(Searcher):
    """Asks the master actor for batches; see the module docstring.

    Args:
        master / analysis: The master and analysis actors.
        profile: The model profile (dict).
        target: ``{"kind", "reduction", "budget"}`` of the experiment, or a list of them (a sweep).
        base: Strategy the master starts from, or one per target of a sweep (easiest first).
        budget: Trials this searcher may start.
        batch_size: Strategies per iteration.
        identifiers: Row identifiers shared by all trials (experiment, run, method, ...).
        history: Rows already in the table (resume), as dicts.
        record: Called with every row this searcher produces (rejected or failed trials and
            the rows that trials reported).
        start_iteration: First iteration number (resume continues the numbering).
        reveal_lag: Concurrent trials - 1 to show the master results in issue order (see the
            module); None shows each result as soon as it arrives.
    """

    def __init__(self, master: Any, analysis: Any, *, profile: dict, target: dict | list[dict],
                 base: Strategy | Sequence[Strategy], budget: int,
                 batch_size: int, identifiers: dict[str, Any], history: list[dict], record: Callable[[TrialResult], None],
                 start_iteration: int = 0, reveal_lag: int | None = None) -> None:
        super().__init__(metric="score", mode="max")
        self.master, self.analysis = master, analysis
        self.bases = [base] if isinstance(base, Strategy) else list(base)
        self.profile, self.target, self.base = profile, target, self.bases[0]
        self.budget, self.batch_size = budget, batch_size
        self.identifiers, self.record = identifiers, record
        self.history = [{"strategy_json": r["strategy_json"], "top1_after": r.get("top1_after"),
                         "status": r["status"]} for r in history]
        self.iteration = start_iteration
        self.issued = 0
        self.queue: list[Strategy] = []
        self.running: dict[str, tuple[Strategy, int]] = {}
        self.finished = False
        self.completed_since_proposal = 0
        self.stop_reason: str | None = None
        self.iterations_run = 0
        self.order = IssueOrder(reveal_lag) if reveal_lag is not None else None
        #: ``llm_*_tokens`` columns of the queued and running strategies the LLM proposed, by
        #: the key of their approved form (see :meth:`_remember_tokens`).
        self.tokens: dict[str, dict[str, int | None]] = {}

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.finished or self.issued >= self.budget or getattr(self.record, "error", None) is not None:
            return Searcher.FINISHED
        if not self.queue:
            if self.order is not None:
                if not self._reveal_in_issue_order():
                    return None  # an earlier trial still runs: wait for it, whoever finished first
            elif self.running and not self.completed_since_proposal:
                return None  # nothing new to learn from yet: wait for a result
            self._next_batch()
            if not self.queue:
                return Searcher.FINISHED if self.finished else None
        strategy = self.queue.pop(0)
        self.running[trial_id] = (strategy, self.iteration - 1)
        index = self.issued
        self.issued += 1
        if self.order is not None:
            self.order.issue(trial_id)
        return {"strategy": strategy.to_json(), "trial_id": trial_id, "iteration": self.iteration - 1,
                "issue_index": index}

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        ordered = self.order is not None and trial_id in self.running and trial_id in self.order.order
        if ordered:  # stays pending to the master (in issue order) until revealed
            strategy, iteration = self.running[trial_id]
        else:
            strategy, iteration = self.running.pop(trial_id, (None, self.iteration - 1))
        if result is not None and "row_json" in result and not error:
            row = row_from_report(result)
        elif self.interrupted():
            return  # stopped by Ctrl+C/SIGTERM before it reported: no row, --resume runs it again
        else:
            row = dead_worker_row(identifiers=self.identifiers, target_kind=self.base.target_kind, trial_id=trial_id,
                                  iteration=iteration, strategy=strategy)
        if strategy is not None:
            _set_tokens(row, self.tokens.pop(strategy.key(), None))
        self.record(row)
        seen = observation(row)
        if ordered:
            self.order.finish(trial_id, seen)
        else:
            self.history.append(seen)
        self.completed_since_proposal += 1

    @staticmethod
    def interrupted() -> bool:
        """A stop signal arrived (the search is being stopped, not the trial failing)."""
        return requested() is not None  # the driver's signal state

    def _reveal_in_issue_order(self) -> bool:
        """Moves the results the next batch may see into the history (issue order); False while
        one of them still runs. The batch sees all but the last ``lag`` issued trials, and at
        least one result more than the previous batch (as the unordered path waits for one)."""
        seen = self.order.take(at_least=self.order.revealed + 1)
        if seen is None:
            return False
        for trial_id, result in seen:
            self.history.append(result)
            self.running.pop(trial_id, None)
        return True

    def _next_batch(self, attempts: int = 3) -> None:
        for _ in range(attempts):
            size = min(self.batch_size, self.budget - self.issued)
            proposal = ray.get(self.master.propose.remote(
                self.profile, self.base if len(self.bases) == 1 else self.bases, self.history, pending=[strategy for strategy, _ in self.running.values()],
                iteration=self.iteration, batch_size=size))
            self.completed_since_proposal = 0
            if not proposal.continue_iterations:
                self.finished, self.stop_reason = True, proposal.stop_reason
                logger.info("master stops the search: %s", self.stop_reason)
                return
            checked = ray.get(self.analysis.check.remote(proposal.strategies, self.profile, target=self.target))
            shares = proposal.llm_tokens
            for index, item in enumerate(checked.rejected):
                self._record_rejected(item, index, llm_token_columns(shares, item["strategy"]) if shares else None)
            self.queue = list(checked.approved)
            if shares:
                self._remember_tokens(shares, proposal.strategies, checked)
            self.iteration += 1
            self.iterations_run += 1
            if self.queue:
                return
        self.finished, self.stop_reason = True, "the analysis agent rejected every proposal"

    def _remember_tokens(self, shares: dict, proposed: Sequence[Strategy], checked: Verdict) -> None:
        """Keeps the token columns of each approved strategy for its row.

        The master keys its token shares by the proposed strategies; the analysis agent may
        clamp one (``warn`` mode), which changes its key. It keeps the order and returns every
        proposal either approved or rejected (unchanged), so the approved ones are the proposals
        that are not among the rejected, in order.
        """
        rejected = [item["strategy"] for item in checked.rejected]
        kept = [raw for raw in proposed if raw not in rejected]
        if len(kept) != len(self.queue):  # not the partition described: match by key alone
            kept = list(self.queue)
        for raw, approved in zip(kept, self.queue):
            columns = llm_token_columns(shares, raw)
            if any(value is not None for value in columns.values()):
                self.tokens[approved.key()] = columns

    def _record_rejected(self, item: dict[str, Any], index: int,
                         tokens: dict[str, int | None] | None = None) -> None:
        strategy = item["strategy"]
        try:
            columns = strategy_columns(strategy)
        except Exception:  # the proposal itself is malformed: keep its text
            columns = {"strategy_json": json.dumps(strategy, default=str, sort_keys=True)}
        row = TrialResult.failed(error="; ".join(item["reasons"]), status="rejected",
                                 target_kind=self.base.target_kind,
                                 **{**self.identifiers, "trial_id": f"rejected-{self.iteration}-{index}",
                                    "iteration": self.iteration},
                                 **{k: v for k, v in columns.items() if k != "target_kind"})
        _set_tokens(row, tokens)
        self.record(row)
        self.history.append({"strategy_json": row.strategy_json, "top1_after": None, "status": "rejected"})

    # Tune checkpoints searcher state; the result table is the real state, so keep this small.
    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "w") as handle:
            json.dump({"iteration": self.iteration, "issued": self.issued,
                       "queue": [s.to_json() for s in self.queue]}, handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path) as handle:
            state = json.load(handle)
        self.iteration, self.issued = state["iteration"], state["issued"]
        self.queue = [Strategy.from_json(s) for s in state["queue"]]



def _set_tokens(row: TrialResult, columns: dict[str, int | None] | None) -> None:
    """Fills the row's ``llm_*_tokens`` columns (what the LLM spent on its strategy)."""
    for name, value in (columns or {}).items():
        if getattr(row, name, None) is None:
            setattr(row, name, value)
