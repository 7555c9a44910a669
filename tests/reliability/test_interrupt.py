"""Ctrl+C and SIGTERM stop a `mapruner prune` cleanly (issue 18): exit 130 / 143, the rows stored so
far kept (no failed row for the trials it stopped), the record says "interrupted", and --resume
finishes the budget with the best model restored from the table, whichever run produced it."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from multi_agent_pruning.results import ResultStore

REPO = Path(__file__).resolve().parents[2]
MAPRUNER = str(Path(sys.executable).with_name("mapruner"))
FAST = {"finetune.steps": "30", "model.train_steps": "40", "evaluation.latency": "false",
        "agents.profiling_agent.calibration_batches": "1", "search.convergence_threshold": "0",
        "search.max_iterations": "3", "search.batch_size": "2"}

TRIALS = 5


def _argv(out: Path, cache: Path, *extra: str) -> list[str]:
    sets = {**FAST, "precomputation.cache_dir": str(cache)}
    return [MAPRUNER, "prune", "--config", "tests/support/quickstart_single.yaml", "--output-dir", str(out),
            "--trials", str(TRIALS), *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")], *extra]


def _interrupt(out: Path, cache: Path, signum: int, log: Path, env: dict) -> subprocess.CompletedProcess:
    """Starts a search, sends ``signum`` to the driver once a row is stored, waits for the exit."""
    with open(log, "w") as handle:
        proc = subprocess.Popen(_argv(out, cache), cwd=REPO, env=env, stdout=handle, stderr=handle,
                                start_new_session=True)
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None and not list((out / "results").rglob("*.parquet")):
            time.sleep(0.2)
        assert proc.poll() is None, log.read_text()[-3000:]
        sent = time.time()
        proc.send_signal(signum)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("the search did not stop within 120 s of the signal\n" + log.read_text()[-3000:])
    return subprocess.CompletedProcess(proc.args, proc.returncode, log.read_text(), f"{time.time() - sent:.1f}")


def _run(argv: list[str], env: dict, log: Path) -> subprocess.CompletedProcess:
    """Runs to the end with the output in a file: a pipe could be held open by Ray's processes."""
    with open(log, "w") as handle:
        code = subprocess.run(argv, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT, timeout=600).returncode
    return subprocess.CompletedProcess(argv, code, log.read_text(), "")


def _best_model_trial(out: Path) -> str:
    return json.loads((out / "best_model" / "model.json").read_text())["metadata"]["trial_id"]


@pytest.mark.slow  # ~2 min: CI runs it in `make test-reliability`; the quick SIGINT/SIGTERM checks are in tests/orchestrator/test_interrupt_handlers.py
def test_sigint_stops_cleanly_and_resume_finishes_the_run(tmp_path, clean_env):
    env = clean_env()
    out, cache = tmp_path / "exp", tmp_path / "cache"
    stopped = _interrupt(out, cache, signal.SIGINT, tmp_path / "first.log", env)
    assert stopped.returncode == 130, stopped.stdout[-3000:]
    assert "mapruner prune: interrupted (interrupted by SIGINT); the rows stored so far are kept; continue with " \
           "--resume" in stopped.stdout
    state = json.loads((out / "experiment.json").read_text())
    kept = ResultStore(out / "results").rows()
    assert state["status"] == "interrupted" and state["signal"] == signal.SIGINT and state["rows"] == len(kept)
    assert 1 <= len(kept) < TRIALS, stopped.stdout[-3000:]
    assert all(r.status == "ok" for r in kept)  # the trials it stopped left no (failed) row
    assert not (out / "summary.json").exists()

    done = _run(_argv(out, cache, "--resume"), env, tmp_path / "resume.log")
    assert done.returncode == 0, done.stdout[-3000:]
    rows = ResultStore(out / "results").rows()
    assert len(rows) == TRIALS and len({r.trial_id for r in rows}) == TRIALS
    assert {r.trial_id for r in kept} <= {r.trial_id for r in rows}
    summary = json.loads((out / "summary.json").read_text())
    assert json.loads((out / "experiment.json").read_text())["status"] == "finished"
    # The summary's rule: the best top-1, then the fewer MACs (digits' test set makes ties common).
    best = max((r for r in rows if r.status == "ok"), key=lambda r: (r.top1_after, -r.macs))
    assert summary["best_trial_id"] == best.trial_id
    assert _best_model_trial(out) == summary["best_trial_id"]

    # best_model/ lost (a kill -9 before it was written, a full disk): --resume restores it from the
    # table and the checkpoints Tune stored, whichever run produced the best trial.
    shutil.rmtree(out / "best_model")
    again = _run(_argv(out, cache, "--resume"), env, tmp_path / "again.log")
    assert again.returncode == 0, again.stdout[-3000:]
    assert len(ResultStore(out / "results").rows()) == TRIALS
    assert _best_model_trial(out) == summary["best_trial_id"]


@pytest.mark.slow
def test_sigterm_stops_cleanly_with_exit_143(tmp_path, clean_env):
    env = clean_env()
    out, cache = tmp_path / "exp", tmp_path / "cache"
    stopped = _interrupt(out, cache, signal.SIGTERM, tmp_path / "first.log", env)
    assert stopped.returncode == 143, stopped.stdout[-3000:]
    assert "interrupted by SIGTERM" in stopped.stdout
    assert json.loads((out / "experiment.json").read_text())["status"] == "interrupted"
    assert all(r.status == "ok" for r in ResultStore(out / "results").rows())
