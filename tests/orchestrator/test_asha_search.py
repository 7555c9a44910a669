"""A multi-fidelity (ASHA) search on digits through the real Ray Tune scheduler, checked from
the results table: stopped trials stopped at a rung, promoted ones continued their fine-tune,
and every decision is ASHA's rule applied in issue order (the reproducible gate)."""

from __future__ import annotations

import json

import numpy as np

from multi_agent_pruning.orchestrator.experiment import run_experiment
from multi_agent_pruning.results import ResultStore

ASHA = ["search.scheduler=asha", "search.rungs=3", "search.reduction_factor=2", "search.trials=6",
        "search.max_iterations=3", "search.batch_size=2"]
BUDGETS, BASE_STEPS = (1, 2, 4), 5  # fast_config: finetune.steps=5


def issue_order(tune_root):
    """trial_id -> the trial's place in issue order, from the configs Tune stored."""
    order = {}
    for params in tune_root.glob("*/*/params.json"):
        config = json.loads(params.read_text())
        order[config["trial_id"]] = config["issue_index"]
    return order


def test_asha_search_stops_at_rungs_and_continues_promoted_trials(local_ray, fast_config, tmp_path):
    out = tmp_path / "asha"
    summary = run_experiment(fast_config(*ASHA), output_dir=out, progress=False)
    rows = ResultStore(out / "results").rows(experiment="quickstart")
    assert len(rows) == 6 and all(r.status == "ok" for r in rows), [r.error for r in rows]
    for row in rows:
        rungs = json.loads(row.rungs_json)
        # A rung's steps add up to the budget multiple: the fine-tune continued, never restarted.
        assert [r["rung"] for r in rungs] == list(range(row.rung + 1))
        assert [(r["budget"], r["steps"], r["session"]) for r in rungs] == \
            [(b, BASE_STEPS * b, 0) for b in BUDGETS[:row.rung + 1]]
        assert row.steps_trained == BASE_STEPS * BUDGETS[row.rung] and row.top1_after == rungs[-1]["top1"]
        assert row.stopped_early == (row.rung < len(BUDGETS) - 1)
        assert row.node_id and row.gpu_ids == "[]" and row.device == "cpu"
    assert {r.rung for r in rows} >= {0, 2}, "no trial was stopped early, or none reached the last rung"
    # Every decision is ASHA's rule (stop below the 1/2 quantile of the rung's earlier results),
    # with "earlier" meaning issued before: the same seed gives the same promotions.
    order = issue_order(out / "tune")
    ranked = sorted(rows, key=lambda r: order[r.trial_id])
    assert sorted(order[r.trial_id] for r in rows) == list(range(6))
    for rung in range(len(BUDGETS) - 1):
        recorded = []
        for row in ranked:
            entries = json.loads(row.rungs_json)
            if len(entries) <= rung:
                continue
            top1 = entries[rung]["top1"]
            stop = bool(recorded) and top1 < np.nanpercentile(recorded, 50)
            assert (row.rung == rung) == stop, (rung, row.trial_id, top1, recorded)
            recorded.append(top1)
    best = max(rows, key=lambda r: (r.top1_after, -r.macs))
    assert summary["best_trial_id"] == best.trial_id and summary["final_accuracy"] == best.top1_after
    saved = json.loads((out / "best_model" / "model.json").read_text())["metadata"]
    assert saved["trial_id"] == best.trial_id and saved["top1"] == best.top1_after  # its last rung's model
    assert sum(r.steps_trained for r in rows) < 6 * BASE_STEPS * BUDGETS[-1]
