"""``--resume`` on an experiment whose results folder holds a corrupt Parquet file: the file is
reported (path and reason) and skipped, the lost trial is run again, nothing crashes and the
corrupt file is left as it was for inspection."""

from __future__ import annotations

import json
import logging

from multi_agent_pruning.config import config_to_dict, load_config
from multi_agent_pruning.orchestrator.experiment import run_experiment
from multi_agent_pruning.orchestrator.prepare import base_strategy
from multi_agent_pruning.results import ResultStore, TrialResult
from multi_agent_pruning.results.trial import strategy_columns
from multi_agent_pruning.utils.atomic import atomic_write_json

FAST = ["search.trials=3", "search.max_iterations=3", "search.batch_size=2", "search.convergence_threshold=0",
        "search.policy=builtin", "finetune.steps=5", "model.train_steps=40", "evaluation.latency=false",
        "agents.profiling_agent.calibration_batches=1"]


def _interrupted_experiment(cfg, out):
    """An experiment killed after three trials, each stored in its own Parquet file."""
    atomic_write_json(out / "experiment.json", {"experiment": cfg.experiment.name, "status": "running",
                                                "config": config_to_dict(cfg), "method": "multi_agent"})
    store = ResultStore(out / "results")
    files = []
    for index, (importance, score) in enumerate((("taylor", 0.61), ("l2", 0.55), ("lamp", 0.58))):
        strategy = base_strategy(cfg).replace(importance=importance)
        row = TrialResult(experiment=cfg.experiment.name, run=0, method="multi_agent", model=cfg.model.name,
                          dataset="digits", seed=cfg.experiment.seed, trial_id=f"old-{index}", iteration=0,
                          **strategy_columns(strategy), status="ok", top1_after=score)
        files += store.append(row)
    return files


def test_resume_skips_and_reports_a_corrupt_file(local_ray, shared_cache, tmp_path, caplog):
    cfg = load_config("tests/support/quickstart_single.yaml", overrides=[*FAST, f"precomputation.cache_dir={shared_cache}"])
    out = tmp_path / "exp"
    files = _interrupted_experiment(cfg, out)
    assert len(files) == 3
    garbage = b"PAR1 this is not a parquet file" * 20
    files[1].write_bytes(garbage)
    with caplog.at_level(logging.WARNING, logger="multi_agent_pruning.results.store"):
        summary = run_experiment(cfg, output_dir=out, resume=True, progress=False)
    assert "Skipped 1 unreadable result file(s)" in caplog.text and files[1].name in caplog.text
    store = ResultStore(out / "results")
    rows = store.rows()
    (skipped,) = store.last_read_report.skipped
    assert skipped.path == files[1] and skipped.reason.startswith("ArrowInvalid")
    # The readable trials are kept, the unreadable one is replaced by one new trial: 3 in all.
    assert sorted(r.trial_id for r in rows if r.trial_id.startswith("old-")) == ["old-0", "old-2"]
    new = [r for r in rows if not r.trial_id.startswith("old-")]
    assert len(new) == 1 and new[0].status == "ok" and new[0].iteration == 1
    assert summary["trials"]["total"] == 3 and summary["final_accuracy"] == max(r.top1_after for r in rows)
    assert files[1].read_bytes() == garbage  # left as found
    assert json.loads((out / "experiment.json").read_text())["status"] == "finished"
