"""The output disk fills up, or the results folder cannot be written, during a search.

In-process variant: the driver (which writes every row) gets ENOSPC from ``os.fsync`` on every
append after the first one, so the real ``ResultStore`` code path raises its own error.
CLI variant: ``<out>/results`` is a regular file (works as root, where chmod does not).
"""

from __future__ import annotations

import errno
import json
import os

import pytest

from multi_agent_pruning.config import load_config
from multi_agent_pruning.exceptions import ResultStoreError
from multi_agent_pruning.orchestrator.experiment import run_experiment
from multi_agent_pruning.results import ResultStore
from multi_agent_pruning.results import store as store_module

FAST = ["search.trials=2", "search.max_iterations=2", "search.batch_size=2", "search.convergence_threshold=0",
        "search.policy=builtin", "finetune.steps=5", "model.train_steps=40", "evaluation.latency=false",
        "agents.profiling_agent.calibration_batches=1"]


def _no_space(fd: int) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture(scope="module")
def disk_full_run(local_ray, shared_cache, tmp_path_factory):
    """Runs a 2-trial search whose disk is full after the first row; returns what happened."""
    cfg = load_config("tests/support/quickstart_single.yaml", overrides=[*FAST, f"precomputation.cache_dir={shared_cache}"])
    out = tmp_path_factory.mktemp("disk-full") / "exp"
    real_append = store_module.ResultStore.append
    attempts: list[int] = []

    def append(self, results):
        attempts.append(1)
        if len(attempts) == 1:
            return real_append(self, results)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(os, "fsync", _no_space)
            return real_append(self, results)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store_module.ResultStore, "append", append)
        try:
            outcome: object = run_experiment(cfg, output_dir=out, progress=False)
        except Exception as err:  # noqa: BLE001  (whatever the user would see)
            outcome = err
    return {"out": out, "outcome": outcome, "attempts": len(attempts)}


def test_rows_stored_before_the_disk_filled_are_intact(disk_full_run):
    results = disk_full_run["out"] / "results"
    assert disk_full_run["attempts"] == 2  # the disk did fill up during the search
    store = ResultStore(results)
    rows = store.rows()
    assert len(rows) == 1 and rows[0].status == "ok" and 0 < rows[0].top1_after <= 1
    assert store.last_read_report.skipped == [] and store.last_read_report.files_read == 1
    # No partial or temporary file was left behind by the failed writes.
    files = [p for p in results.rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].suffix == ".parquet"


def test_disk_full_stops_the_run_with_a_clear_error(disk_full_run):
    outcome = disk_full_run["outcome"]
    assert isinstance(outcome, ResultStoreError)
    assert "disk full (No space left on device)" in str(outcome)
    assert str(disk_full_run["out"] / "results") in str(outcome)
    state = json.loads((disk_full_run["out"] / "experiment.json").read_text())
    assert state["status"] != "finished"  # --resume can finish it once there is space


@pytest.mark.slow
def test_results_path_taken_by_a_file_fails_naming_it(run_prune):
    def block(out):
        out.mkdir(parents=True)
        (out / "results").write_text("not a folder")

    run = run_prune("blocked", trials=2, settings={"search.batch_size": "2", "search.max_iterations": "1"},
                    prepare=block)
    results = run.out / "results"
    # Refused before anything runs (bad input: exit 2), naming the path; nothing overwritten.
    assert run.returncode == 2, run.explain()
    last_line = run.stderr.rstrip().splitlines()[-1]
    assert last_line == f"mapruner prune: error: results path {results} exists and is not a directory"
    assert results.read_text() == "not a folder"
    assert not (run.out / "summary.json").exists() and not (run.out / "experiment.json").exists()
    assert sorted(p.name for p in run.out.iterdir() if p.name != "ray") == ["results"]
