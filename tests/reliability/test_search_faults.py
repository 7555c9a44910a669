"""A search in which some trials fail (injected CUDA OOM while fine-tuning every ``l1`` strategy):
the failures are rows, the other trials are ok, the master goes on, and the run exits 0.

The master's first batch of 4 is the policy's first templates: L1 global, L1 per layer, Taylor, L2,
so the fault hits exactly the two L1 trials of iteration 0 and maybe a later mutation to L1.
"""

from __future__ import annotations

import json

import pytest

OOM = {"stage": "finetune", "kind": "oom", "importance": "l1"}


@pytest.fixture(scope="module")
def oom_run(run_prune):
    return run_prune("oom", trials=6, settings={"search.batch_size": "4"},
                     env={"MAPRUNER_FAULT_INJECTION": json.dumps(OOM)})


def test_failed_trials_are_rows_and_the_search_finishes(oom_run):
    run = oom_run
    assert run.returncode == 0, run.explain()
    rows = run.rows()
    assert len(rows) == 6 and len({r.trial_id for r in rows}) == 6
    first = [r for r in rows if r.iteration == 0]
    assert sorted(r.importance for r in first) == ["l1", "l1", "l2", "taylor"]
    failed = [r for r in rows if r.status == "failed"]
    assert failed and {r.importance for r in failed} == {"l1"}
    assert {r.trial_id for r in first if r.importance == "l1"} <= {r.trial_id for r in failed}
    for row in failed:
        assert row.error_type == "OutOfMemoryError" and row.error == "CUDA out of memory (injected at finetune)"
        assert row.top1_after is None and row.macs is None and row.seconds_prune > 0
    ok = [r for r in rows if r.status == "ok"]
    assert all(r.importance != "l1" and 0 < r.top1_after <= 1 for r in ok)
    assert len(ok) + len(failed) == 6
    # The master went on after the failures: a second iteration ran and proposed none of them again.
    later = [r for r in rows if r.iteration >= 1]
    assert later and not {r.strategy_json for r in failed if r.iteration == 0} & {r.strategy_json for r in later}
    summary = run.summary()
    assert summary["trials"] == {"total": 6, "ok": len(ok), "failed": len(failed), "rejected": 0}
    assert summary["final_accuracy"] == max(r.top1_after for r in ok)
    assert summary["convergence_iterations"] == 2
    assert f"trials          6 ({len(ok)} ok, {len(failed)} failed, 0 rejected)" in run.stdout
    # Each failure is shown once, with its reason, in the progress lines.
    assert run.stderr.count("failed: CUDA out of memory (injected at finetune)") == len(failed)
    assert json.loads((run.out / "experiment.json").read_text())["status"] == "finished"


def test_no_strategy_is_evaluated_twice(oom_run):
    rows = [r for r in oom_run.rows() if r.status != "rejected"]
    assert len({r.strategy_json for r in rows}) == len(rows)
