"""Searches on simulated multi-node clusters, with Ray's own tools (issue 23): fractional GPUs
packed on one declared GPU, a node that joins mid-search, a node that dies mid-search, and the
autoscaler (Ray's fake multi-node provider) launching GPU workers for a search submitted with
`ray job submit` to a head that has none.

Worker raylets declare fake GPUs (``num_gpus``): Ray schedules on them as on real ones, and each
trial, finding no CUDA, computes on the CPU and says so (``device`` cpu, ``gpu_ids`` set). What is
asserted comes from the result table: every row once, and where and when each trial ran
(``node_id``, ``gpu_ids``, ``started_at``/``finished_at``). A few minutes each on 2 cores.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from ray.job_submission import JobSubmissionClient
from support.ray_cluster import RAY, kill_leftovers, ray_head, run_ray, wait_for_job

from multi_agent_pruning.results import ResultStore

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
FAST = ["model.train_steps=40", "evaluation.latency=false", "agents.profiling_agent.calibration_batches=1",
        "search.convergence_threshold=0", "search.policy=builtin", "hardware.device=auto",
        "hardware.cpus_per_trial=1"]


def _search(short_tmp, shared_cache, name: str, *, workers: list[dict], overrides: list[str],
            event: dict | None = None, head_cpus: int = 3):
    """Runs tests/support/cluster_search.py; returns (its log, the rows of the table)."""
    root = short_tmp(name)
    spec = {"config": "tests/support/quickstart_single.yaml", "out": str(root / "out"), "temp_dir": str(root / "ray"),
            "head_cpus": head_cpus, "workers": workers, "event": event,
            "overrides": FAST + [f"precomputation.cache_dir={shared_cache}", *overrides]}
    try:
        done = subprocess.run([sys.executable, str(REPO / "tests/support/cluster_search.py"), json.dumps(spec)],
                              cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    finally:
        kill_leftovers(-1, [str(root)])  # a node the script could not stop
    assert done.returncode == 0, done.stderr[-4000:]
    log = json.loads(done.stdout.strip().splitlines()[-1])
    assert "watch_error" not in log, log["watch_error"]
    return log, ResultStore(root / "out" / "results").rows(), root


def _overlap(rows) -> int:
    """The most trials that ran at one moment (from the rows' start and end times)."""
    edges = sorted([(r.started_at, 1) for r in rows] + [(r.finished_at, -1) for r in rows], key=lambda e: (e[0], e[1]))
    most = running = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def _check_rows(rows, trials: int) -> None:
    assert len(rows) == trials and len({r.trial_id for r in rows}) == trials  # every row, once
    assert {r.status for r in rows} == {"ok"}, [r.error for r in rows]
    # A declared GPU that is not real: the trial computed on the CPU and the row says which GPU it had.
    assert {r.device for r in rows} == {"cpu"} and all(json.loads(r.gpu_ids) for r in rows)


def test_quarter_gpus_pack_four_trials_on_one_declared_gpu(short_tmp, shared_cache):
    log, rows, _ = _search(short_tmp, shared_cache, "pack", workers=[{"num_cpus": 4, "num_gpus": 1}], overrides=[
        "finetune.steps=20", "search.trials=4", "search.max_iterations=1", "search.max_concurrent_trials=4",
        "hardware.gpus_per_trial=0.25"])
    _check_rows(rows, 4)
    worker, = log["workers"]
    assert {r.node_id for r in rows} == {worker}  # the head declares no GPU
    assert {r.gpu_ids for r in rows} == {'["0"]'}  # one GPU, shared
    assert _overlap(rows) == 4  # all four at once on it


def test_a_node_that_joins_mid_search_gets_trials_and_concurrency_rises(short_tmp, shared_cache):
    # Trials of 15-25 s here: longer than a trial actor takes to start on the new node (a fresh
    # process importing torch, several seconds on 2 busy cores); with shorter ones Tune hands the
    # queued trial to the actor the finished trial left on the old node (reuse_actors) first.
    log, rows, _ = _search(short_tmp, shared_cache, "join", workers=[{"num_cpus": 1, "num_gpus": 1}], overrides=[
        "finetune.steps=80", "search.trials=6", "search.max_iterations=3", "search.batch_size=2",
        "search.max_concurrent_trials=2", "hardware.gpus_per_trial=1"],
        event={"kind": "add", "node": {"num_cpus": 1, "num_gpus": 1}})
    _check_rows(rows, 6)
    joined = log["added"]
    first, = log["workers"]
    assert {r.node_id for r in rows} == {first, joined["node_id"]}
    before = [r for r in rows if r.finished_at.timestamp() <= joined["at"]]
    after = [r for r in rows if r.started_at.timestamp() >= joined["at"]]
    assert before and _overlap(before) == 1  # one GPU: one trial at a time
    assert _overlap(after) == 2  # two GPUs: two at once, the search's width


def test_a_node_lost_mid_search_has_its_trial_retried_and_no_row_lost_or_doubled(short_tmp, shared_cache):
    log, rows, root = _search(short_tmp, shared_cache, "lose", workers=[{"num_cpus": 1, "num_gpus": 1}] * 2,
                              overrides=["finetune.steps=40", "search.trials=4", "search.max_iterations=2",
                                         "search.batch_size=2", "search.max_concurrent_trials=2",
                                         "search.max_failures=2", "hardware.gpus_per_trial=1"],
                              event={"kind": "remove", "after_s": 2.0})
    _check_rows(rows, 4)
    removed = log["removed"]["node_id"]
    survivor, = set(log["workers"]) - {removed}
    # The trial running on the removed node died with it and ran again on the survivor.
    assert {r.node_id for r in rows} == {survivor}
    assert list((root / "out" / "tune").glob("*/*/error.txt"))  # Tune recorded the failure it retried


@pytest.mark.skipif(RAY is None, reason="the `ray` CLI is not installed (pip install 'ray[default]')")
def test_autoscaler_launches_gpu_workers_for_a_submitted_search(short_tmp, shared_cache):
    """A head with no GPU and an autoscaler that may add two 1-GPU workers (min_workers 0): the
    search's pending trials make it launch them, and the trials run there."""
    output = short_tmp("autoscale") / "out"
    job = f"mapruner-scale-{secrets.token_hex(4)}"
    gpu_worker = {"resources": {"CPU": 1, "GPU": 1, "object_store_memory": 100 * 1024 * 1024}, "node_config": {},
                  "min_workers": 0, "max_workers": 2}
    settings = FAST + [f"precomputation.cache_dir={shared_cache}", "finetune.steps=20", "search.trials=4",
                       "search.max_iterations=2", "search.batch_size=2", "search.max_concurrent_trials=2",
                       "hardware.gpus_per_trial=1"]
    with ray_head(markers=(str(output),), num_cpus=3,
                  autoscaling={"worker_types": {"ray.worker.gpu": gpu_worker}, "max_workers": 2}) as (url, env):
        # No --working-dir: the simulated nodes share one session folder, and each node's runtime-env
        # agent unpacking and deleting the same package there pulls the folder from under the others.
        argv = ["mapruner", "prune", "--config", str(REPO / "tests/support/quickstart_single.yaml"),
                "--output-dir", str(output)]
        for setting in settings:
            argv += ["--set", setting]
        submitted = run_ray("job", "submit", "--address", url, "--submission-id", job,
                            "--no-wait", "--", *argv, env=env)
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
        status = wait_for_job(url, job, env, timeout=480)
        logs = run_ray("job", "logs", job, "--address", url, env=env).stdout
        assert status == "SUCCEEDED", logs[-4000:]
        assert str(JobSubmissionClient(url).get_job_info(job).status) == "SUCCEEDED"
    rows = ResultStore(output / "results").rows()
    _check_rows(rows, 4)
    # Ray's fake provider names the nodes it launches ff..ff00001, ff..ff00002 (the head is ff..ff00000).
    launched = {r.node_id for r in rows}
    assert len(launched) == 2 and all(n.startswith("ffff") and not n.endswith("00000") for n in launched)
