"""The Ray Tune side of a trial: run :func:`evaluate_strategy` and report its row."""

from __future__ import annotations

import datetime as dt
import json
import logging
import queue
import shutil
import tempfile
import threading
import time
from typing import Any

from ray import tune

from multi_agent_pruning.core.evaluation import Deadline
from multi_agent_pruning.core.strategy import Strategy
from multi_agent_pruning.exceptions import TrialTimeoutError
from multi_agent_pruning.results.trial import TrialResult
from multi_agent_pruning.search import fidelity
from multi_agent_pruning.search.trial import (TrialContext, evaluate_rungs, evaluate_strategy, load_rung_checkpoint,
                                              save_rung_checkpoint)

logger = logging.getLogger(__name__)

__all__ = ["BACKSTOP_GRACE_S", "evaluate_with_backstop", "run_tune_trial", "row_json"]

# How long past its limit a trial may stay in one call that never checks the limit before the
# backstop gives up on it: long enough for any bounded call (one training step, one batch, a
# latency measurement, a checkpoint write) to end and let the cooperative check fire first.
BACKSTOP_GRACE_S = 60.0


def _default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def row_json(row) -> str:
    return json.dumps(row.to_row(), default=_default)


def evaluate_with_backstop(strategy: Strategy, context: TrialContext, *, trial_id: str, iteration: int = 0,
                           save_dir: str | None = None, grace_s: float = BACKSTOP_GRACE_S) -> TrialResult:
    """:func:`evaluate_strategy` with a hard limit for a trial stuck in a call that never returns.

    The trial's deadline is checked cooperatively (per step, batch, iteration); that cannot stop
    a call that hangs inside C code. So, with a limit, the trial runs in a daemon thread watched
    from here: if it has not returned ``grace_s`` seconds after its limit, this returns its
    ``failed`` row (TrialTimeoutError naming the stage it was stuck in, the stage times that
    completed) and leaves the thread behind; it is never joined and its result, should it
    finish later, is discarded. Without a limit this is :func:`evaluate_strategy` itself.
    """
    if context.trial_timeout_s is None:
        return evaluate_strategy(strategy, context, trial_id=trial_id, iteration=iteration, save_dir=save_dir)
    deadline = Deadline(context.trial_timeout_s)
    started, clock = dt.datetime.now(dt.timezone.utc), time.perf_counter()
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["row"] = evaluate_strategy(strategy, context, trial_id=trial_id, iteration=iteration,
                                               save_dir=save_dir, deadline=deadline)
        except BaseException as err:  # noqa: BLE001 - handed to the watching thread, re-raised there
            outcome["error"] = err

    worker = threading.Thread(target=target, name=f"trial-{trial_id}", daemon=True)
    worker.start()
    worker.join(context.trial_timeout_s + grace_s)
    if "error" in outcome:
        raise outcome["error"]
    if "row" in outcome:
        return outcome["row"]
    return _stuck_row(strategy, context, trial_id, iteration, deadline, grace_s, started, clock)


def _stuck_row(strategy: Strategy, context: TrialContext, trial_id: str, iteration: int, deadline: Deadline,
               grace_s: float, started: dt.datetime, clock: float) -> TrialResult:
    """The ``failed`` row of a trial whose thread is stuck past its limit (left running)."""
    stage, completed = deadline.current, dict(deadline.completed)
    logger.warning("trial %s is stuck in stage %s past its limit; its thread is left running", trial_id, stage)
    error = TrialTimeoutError(context.trial_timeout_s, stage, deadline.elapsed,
                              f"stuck in one call that does not check the limit; gave up {grace_s:g} s later "
                              "and left its thread running")
    row = TrialResult.failed(error=error, strategy=strategy, **context.identifiers(trial_id, iteration),
                             **{f"seconds_{k}": v for k, v in completed.items()})
    row.started_at, row.seconds_total = started, time.perf_counter() - clock
    return row


def run_tune_trial(config: dict[str, Any], context: TrialContext, save_models: bool = True,
                   backstop_grace_s: float = BACKSTOP_GRACE_S) -> None:
    """Tune function trainable: one strategy, one row, the pruned model as the checkpoint.

    A trial past its limit reports its ``failed`` row and returns like any other, so Tune
    records it once and never retries it (see :func:`evaluate_with_backstop`).
    """
    strategy = Strategy.from_json(config["strategy"])
    if context.rungs:
        run_rung_trial(config, context, strategy, save_models=save_models, grace_s=backstop_grace_s)
        return
    # A trial abandoned by the backstop may still write into the folder while it is removed.
    with tempfile.TemporaryDirectory(prefix="mapruner-trial-", ignore_cleanup_errors=True) as tmp:
        row = evaluate_with_backstop(strategy, context, trial_id=config["trial_id"], iteration=config["iteration"],
                                     save_dir=tmp if save_models else None, grace_s=backstop_grace_s)
        checkpoint = tune.Checkpoint.from_directory(tmp) if save_models and row.status == "ok" else None
        score = row.top1_after if row.status == "ok" and row.top1_after is not None else -1.0
        tune.report({"score": score, "status": row.status, "row_json": row_json(row)}, checkpoint=checkpoint)


def run_rung_trial(config: dict[str, Any], context: TrialContext, strategy: Strategy, *, save_models: bool = True,
                   grace_s: float = BACKSTOP_GRACE_S) -> None:
    """A multi-fidelity trial (``search.scheduler: asha``): one report per rung, each with the
    row so far and a checkpoint (model, optimizer state, progress); see
    :func:`~multi_agent_pruning.search.trial.evaluate_rungs` and :mod:`~multi_agent_pruning.search.fidelity`.

    Tune reports synchronously: ``tune.report`` returns only when the scheduler promoted the
    trial (a stopped trial ends inside it), so no step is spent past a stop. A trial Tune
    retries continues from its last checkpoint (``tune.get_checkpoint()``). The rungs run in a
    daemon thread watched from here, as :func:`evaluate_with_backstop`: a trial stuck past its
    limit reports a ``failed`` row and returns.
    """
    index = config.get("issue_index")
    fidelity.mark_started(context.rung_gate, index)
    resume = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            resume = load_rung_checkpoint(directory, context)
        logger.info("trial %s continues after rung %d from its checkpoint", config["trial_id"], resume[1].rung)
    deadline = Deadline(context.trial_timeout_s)
    started, clock = dt.datetime.now(dt.timezone.utc), time.perf_counter()
    handoff: queue.Queue = queue.Queue()
    promoted, abandoned = threading.Event(), threading.Event()

    def work() -> None:
        try:
            for row, pruned, progress in evaluate_rungs(strategy, context, trial_id=config["trial_id"],
                                                        iteration=config["iteration"], deadline=deadline,
                                                        resume=resume):
                directory = None
                if row.status == "ok" and save_models:
                    directory = tempfile.mkdtemp(prefix="mapruner-rung-")
                    save_rung_checkpoint(directory, pruned, progress, row, strategy, context)
                handoff.put(("rung", row, directory))
                if row.status != "ok" or not row.stopped_early:
                    return
                while not promoted.wait(0.5):  # the scheduler's decision on this rung
                    if abandoned.is_set():
                        return
                promoted.clear()
        except BaseException as err:  # noqa: BLE001 - handed to the watching thread, re-raised there
            handoff.put(("error", err, None))
        finally:
            handoff.put(("done", None, None))

    worker = threading.Thread(target=work, name=f"trial-{config['trial_id']}", daemon=True)
    worker.start()
    try:
        while True:
            remaining = deadline.remaining()
            try:
                kind, item, directory = handoff.get(timeout=None if remaining is None else max(remaining, 0) + grace_s)
            except queue.Empty:
                row = _stuck_row(strategy, context, config["trial_id"], config["iteration"], deadline, grace_s,
                                 started, clock)
                tune.report({"score": -1.0, "status": row.status, "row_json": row_json(row)})
                return
            if kind == "done":
                return
            if kind == "error":
                raise item
            row = item
            try:
                if row.status != "ok":  # no rung result: the scheduler ignores it, the trial ends
                    tune.report({"score": -1.0, "status": row.status, "row_json": row_json(row)})
                    return
                fidelity.wait_for_turn(context.rung_gate, index, row.rung)
                budget = (context.rungs or (1,))[row.rung]
                tune.report({"score": row.top1_after, "status": row.status, "row_json": row_json(row),
                             fidelity.RUNG_ATTR: budget, "rung": row.rung},
                            checkpoint=tune.Checkpoint.from_directory(directory) if directory else None)
            finally:
                if directory:
                    shutil.rmtree(directory, ignore_errors=True)
            if not row.stopped_early:
                return
            promoted.set()
    finally:
        abandoned.set()
