"""Trial workers that die (``os._exit`` mid-prune, no report): Ray Tune retries the trial
(``search.max_failures``), and the table keeps exactly one row per trial either way."""

from __future__ import annotations

import json
import re

import pytest


def test_worker_that_dies_once_is_retried_and_ends_ok(llm_chaos_run):
    # The LLM-driven search of conftest.llm_chaos_run: its first pruning step kills the worker once.
    run = llm_chaos_run.run
    assert llm_chaos_run.marker.exists(), "no worker died: the fault was not injected"
    assert run.returncode == 0, run.explain()
    rows = run.rows()
    assert len(rows) == 4 and len({r.trial_id for r in rows}) == 4
    assert all(r.status == "ok" and 0 < r.top1_after <= 1 for r in rows), [r.error for r in rows]
    # Ray Tune saw the dead worker and ran that trial again: one retry, still one row.
    failures = re.findall(r"Trial task failed for trial run_tune_trial_(\w+)", run.stderr)
    assert len(failures) >= 1 and set(failures) <= {r.trial_id for r in rows}
    assert run.summary()["trials"] == {"total": 4, "ok": 4, "failed": 0, "rejected": 0}


@pytest.mark.slow
def test_worker_that_always_dies_is_one_failed_row(run_prune):
    fault = {"stage": "prune", "kind": "exit", "importance": "l1"}
    run = run_prune("exit", trials=4, settings={"search.batch_size": "4", "search.max_failures": "1"},
                    env={"MAPRUNER_FAULT_INJECTION": json.dumps(fault)})
    assert run.returncode == 0, run.explain()
    rows = run.rows()
    assert len(rows) == 4 and len({r.trial_id for r in rows}) == 4
    dead = [r for r in rows if r.importance == "l1"]
    assert len(dead) == 2
    for row in dead:
        assert row.status == "failed" and "worker failed" in row.error and "retries were exhausted" in row.error
        assert row.iteration == 0 and row.top1_after is None
    assert all(r.status == "ok" for r in rows if r.importance != "l1")
    # max_failures=1: each dead trial ran twice (first attempt + one retry), and is still one row.
    for row in dead:
        assert run.stderr.count(f"Trial task failed for trial run_tune_trial_{row.trial_id}") == 2, run.stderr[-3000:]
    assert run.summary()["trials"] == {"total": 4, "ok": 2, "failed": 2, "rejected": 0}
