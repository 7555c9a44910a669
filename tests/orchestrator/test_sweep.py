"""A sweep of targets in one run: one Tune run, one table, a frontier in the summary, a best model per target."""

from __future__ import annotations

import json

import pytest

from multi_agent_pruning.exceptions import ConfigurationError
from multi_agent_pruning.orchestrator.experiment import run_experiment
from multi_agent_pruning.orchestrator.prepare import build_context
from multi_agent_pruning.results import ResultStore, TargetKey, row_target
from multi_agent_pruning.search.trial import evaluate_dense

SWEEP = "target.sweep=[0.3, 0.5, 0.7]"


def test_a_sweep_searches_every_target_in_one_run(local_ray, fast_config, tmp_path):
    cfg = fast_config(SWEEP, "target.reduction=null", "search.trials=4")
    out = tmp_path / "sweep"
    summary = run_experiment(cfg, output_dir=out, progress=False)
    rows = ResultStore(out / "results").rows(experiment="quickstart")
    assert len(rows) == 4 and all(r.status == "ok" for r in rows), [r.error for r in rows]
    keys = [TargetKey("macs", r) for r in (0.3, 0.5, 0.7)]
    by_target = {k: [r for r in rows if row_target(r) == k] for k in keys}
    assert all(by_target[k] for k in keys)  # every target got a trial
    assert all(abs(r.macs_reduction - row_target(r).reduction) < 0.02 for r in rows)
    assert len(list((out / "tune").glob("*/"))) == 1  # one Tune run
    # Every row carries the dense model's top-1, measured as evaluate_dense measures it here.
    dense = evaluate_dense(build_context(cfg, method="multi_agent", run=0))
    assert 0.5 < dense <= 1.0 and {r.base_top1 for r in rows} == {dense}
    frontier = summary["frontier"]
    assert [e["target"] for e in frontier] == ["remove 30% of MACs", "remove 50% of MACs", "remove 70% of MACs"]
    for entry, key in zip(frontier, keys):
        best = max(by_target[key], key=lambda r: (r.top1_after, -r.macs))
        assert (entry["final_accuracy"], entry["best_trial_id"], entry["macs"]) == (best.top1_after, best.trial_id,
                                                                                   best.macs)
        assert entry["params_reduction"] == best.params_reduction and entry["target_reduction"] == key.reduction
        saved = json.loads((out / "best_models" / key.slug / "model.json").read_text())
        assert entry["best_model_path"] == str(out.resolve() / "best_models" / key.slug)
        assert saved["metadata"]["trial_id"] == best.trial_id
    # The top level is the hardest target's best; best_model/ holds its model.
    assert summary["best_target"] == "remove 70% of MACs"
    assert summary["final_accuracy"] == frontier[-1]["final_accuracy"]
    assert summary["best_trial_id"] == frontier[-1]["best_trial_id"]
    assert json.loads((out / "best_model" / "model.json").read_text())["metadata"]["trial_id"] == \
        frontier[-1]["best_trial_id"]
    assert json.loads((out / "summary.json").read_text())["frontier"] == frontier
    # A resumed run must search the same sweep.
    with pytest.raises(ConfigurationError, match="target.sweep"):
        run_experiment(fast_config("target.sweep=[0.3, 0.6]", "target.reduction=null"), output_dir=out,
                       resume=True, progress=False)
