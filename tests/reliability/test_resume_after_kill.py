"""Kill a running `mapruner prune` (driver and its local Ray) and finish it with --resume.

Slow (about 3 minutes together on 2 cores): out of `make test`, run by CI in `make test-reliability`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from multi_agent_pruning.results import ResultStore

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

FAST = ["--set", "search.max_iterations=3", "--set", "search.batch_size=2", "--set", "search.convergence_threshold=0",
        "--set", "finetune.steps=5", "--set", "model.train_steps=40", "--set", "evaluation.latency=false",
        "--set", "agents.profiling_agent.calibration_batches=1"]


def _prune(out: Path, cache: Path, *extra: str, trials: int = 5) -> list[str]:
    return [str(Path(sys.executable).with_name("mapruner")), "prune", "--config", "tests/support/quickstart_single.yaml",
            "--output-dir", str(out), "--trials", str(trials), "--set", f"precomputation.cache_dir={cache}", *FAST,
            *extra]


def test_killed_run_resumes_with_one_row_per_trial(tmp_path):
    out, cache = tmp_path / "exp", tmp_path / "cache"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(_prune(out, cache), cwd=REPO, env=env, start_new_session=True,
                            stdout=log, stderr=log)
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            if len(list((out / "results").rglob("*.parquet"))) >= 2:
                break
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray cluster it started
        proc.wait()
        log.close()
    before = ResultStore(out / "results").rows()
    assert 2 <= len(before) < 5, (tmp_path / "first.log").read_text()[-2000:]
    done = subprocess.run(_prune(out, cache, "--resume"), cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = ResultStore(out / "results").rows()
    ids = [r.trial_id for r in rows]
    assert len(rows) == 5 and len(set(ids)) == 5
    assert {r.trial_id for r in before} <= set(ids)  # nothing lost
    assert all(r.status == "ok" for r in rows)


def test_resume_gets_the_rounds_its_remaining_trials_need(tmp_path):
    """An interrupted run can use up search.max_iterations with trials that die with it (a round
    starts as soon as one trial of the last finished): --resume still runs the remaining trials.
    Made deterministic here: the first run's budget (4 trials, 2 rounds of 2) uses both rounds."""
    out, cache = tmp_path / "exp", tmp_path / "cache"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    rounds = ("--set", "search.max_iterations=2")
    first = subprocess.run(_prune(out, cache, *rounds, trials=4), cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    before = ResultStore(out / "results").rows()
    assert len(before) == 4 and sorted(r.iteration for r in before) == [0, 0, 1, 1]
    done = subprocess.run(_prune(out, cache, *rounds, "--resume"), cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = ResultStore(out / "results").rows()
    assert len(rows) == 5 and len({r.trial_id for r in rows}) == 5
    assert [r.iteration for r in rows if r.trial_id not in {b.trial_id for b in before}] == [2]
    assert all(r.status == "ok" for r in rows)
