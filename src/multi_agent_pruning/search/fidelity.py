"""Multi-fidelity search: Ray Tune's ASHA scheduler over trials that report after every rung.

With ``search.scheduler: asha`` every trial fine-tunes in rungs (``search.rung_budgets()``, e.g.
1x, 3x and 9x its strategy's budget in all; :func:`~multi_agent_pruning.search.trial.evaluate_rungs`)
and reports after each, with a checkpoint. :class:`ReproducibleASHA` is Ray Tune's
``ASHAScheduler``: at each rung it stops the trials below the top ``1/reduction_factor`` of the
results recorded there so far; a promoted trial goes on in the same process (a retried one from
its last checkpoint).

ASHA is asynchronous: a trial is judged against the results that reached its rung *before* it,
so with several trials at a time the decisions depend on which finished first. With
``search.reproducible`` (the default) a :class:`RungGate` actor makes that order the issue
order: a trial reports rung ``k`` only once every trial issued before it has reported rung ``k``
to the scheduler, or ended (stopped, failed, or finished) before reaching it. Each decision
then sees exactly the earlier-issued trials' results, whatever the timing, and a seed gives
the same search. The cost is a wait, as for the master's issue-order reveal
(:mod:`~multi_agent_pruning.search.ordered`); a trial never waits for an earlier one that has
not started (that could be a trial queued behind it for resources) for more than
:data:`UNSTARTED_WAIT_S`: it then goes on with a warning that this decision may depend on timing.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import ray
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

logger = logging.getLogger(__name__)

__all__ = ["RUNG_ATTR", "RungGate", "ReproducibleASHA", "UNSTARTED_WAIT_S", "build_scheduler", "start_gate",
           "wait_for_turn"]

#: The reported result field ASHA measures time in: the rung's budget multiple (1, 3, 9, ...).
RUNG_ATTR = "fidelity"
#: Longest wait for an earlier-issued trial that has not started (see the module docstring).
UNSTARTED_WAIT_S = 30.0
_POLL_S = 0.05


@ray.remote(num_cpus=0, max_restarts=0)
class RungGate:
    """Who reported which rung: trials call :meth:`start` and :meth:`blockers`; the scheduler
    :meth:`record` and :meth:`end` (driver side, after ASHA has recorded the result)."""

    def __init__(self) -> None:
        self.started: set[int] = set()
        self.recorded: set[tuple[int, int]] = set()
        self.ended: set[int] = set()

    def start(self, index: int) -> None:
        self.started.add(index)

    def record(self, index: int, rung: int) -> None:
        self.recorded.add((index, rung))

    def end(self, index: int) -> None:
        self.ended.add(index)

    def blockers(self, index: int, rung: int) -> tuple[list[int], list[int]]:
        """Earlier-issued trials that neither reported ``rung`` nor ended: (started, not started)."""
        waiting = [j for j in range(index) if (j, rung) not in self.recorded and j not in self.ended]
        return [j for j in waiting if j in self.started], [j for j in waiting if j not in self.started]


def start_gate(reproducible: bool, rungs: tuple[int, ...] | None) -> tuple[str | None, Any]:
    """``(name, handle)`` of a new :class:`RungGate` for one search; ``(None, None)`` when the
    search has one budget or need not be reproducible. The caller kills it after the search."""
    if not rungs or not reproducible:
        return None, None
    name = f"mapruner-rung-gate-{uuid.uuid4().hex[:12]}"
    return name, RungGate.options(name=name).remote()


def wait_for_turn(gate_name: str | None, index: int | None, rung: int) -> None:
    """Blocks until every trial issued before trial ``index`` reported ``rung`` or ended (see the module)."""
    if gate_name is None or index is None:
        return
    gate = ray.get_actor(gate_name)
    unstarted_since = None
    while True:
        running, unstarted = ray.get(gate.blockers.remote(index, rung))
        if not running and not unstarted:
            return
        if running:
            unstarted_since = None
        else:
            unstarted_since = unstarted_since or time.monotonic()
            if time.monotonic() - unstarted_since > UNSTARTED_WAIT_S:
                logger.warning("trial #%d reports rung %d without waiting for trial(s) %s, issued before it but not "
                               "started for %.0f s: this promotion may depend on timing", index, rung, unstarted,
                               UNSTARTED_WAIT_S)
                return
        time.sleep(_POLL_S)


def mark_started(gate_name: str | None, index: int | None) -> None:
    if gate_name is not None and index is not None:
        ray.get(ray.get_actor(gate_name).start.remote(index))


class ReproducibleASHA(ASHAScheduler):
    """Ray Tune's ASHAScheduler that tells a :class:`RungGate` (when given) each rung result it
    recorded and each trial that ended, by the trial's ``issue_index`` (its config)."""

    def __init__(self, *, gate: Any = None, budgets: tuple[int, ...], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._gate, self._budgets = gate, tuple(budgets)

    def _index(self, trial: Any) -> int | None:
        value = (trial.config or {}).get("issue_index")
        return int(value) if value is not None else None

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        index = self._index(trial)
        if self._gate is not None and index is not None and RUNG_ATTR in result:
            rung = self._budgets.index(int(result[RUNG_ATTR])) if int(result[RUNG_ATTR]) in self._budgets else None
            if rung is not None:
                self._gate.record.remote(index, rung)
            if action == TrialScheduler.STOP:
                self._gate.end.remote(index)
        return action

    def _ended(self, trial: Any) -> None:
        index = self._index(trial)
        if self._gate is not None and index is not None:
            self._gate.end.remote(index)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        self._ended(trial)
        if trial.trial_id in self._trial_info:
            super().on_trial_complete(tune_controller, trial, result)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self._ended(trial)
        super().on_trial_error(tune_controller, trial)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._ended(trial)
        if trial.trial_id in self._trial_info:
            super().on_trial_remove(tune_controller, trial)

    # The gate is an actor handle of this search only: not part of Tune's experiment state.
    def save(self, checkpoint_path: str) -> None:
        gate, self._gate = self._gate, None
        try:
            super().save(checkpoint_path)
        finally:
            self._gate = gate

    def restore(self, checkpoint_path: str) -> None:
        gate = self._gate
        super().restore(checkpoint_path)
        self._gate = gate


def build_scheduler(budgets: tuple[int, ...] | None, reduction_factor: int, gate: Any = None) -> TrialScheduler | None:
    """The search's Tune scheduler: None (FIFO) for one budget, else :class:`ReproducibleASHA`
    with rungs at ``budgets`` (checked: Tune derives them from ``max_t`` and the factor)."""
    if not budgets:
        return None
    scheduler = ReproducibleASHA(gate=gate, budgets=budgets, time_attr=RUNG_ATTR, metric="score", mode="max",
                                 max_t=budgets[-1], grace_period=budgets[0], reduction_factor=reduction_factor,
                                 brackets=1)
    milestones = sorted(m for m, _ in scheduler._brackets[0]._rungs)
    if tuple(milestones) != tuple(budgets):  # pragma: no cover - a Ray that computes rungs otherwise
        raise RuntimeError(f"ASHAScheduler made rungs {milestones}, not {list(budgets)}")
    return scheduler
