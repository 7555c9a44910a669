"""The arguments of the local cluster ``init_ray`` starts (the end-to-end check that workers
preload the modules asked for: tests/reliability/test_secrets_and_network.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

from multi_agent_pruning.config import load_config_dict
from multi_agent_pruning.orchestrator.ray_runtime import local_init_kwargs


def test_local_cluster_arguments_keep_idle_workers_and_preload_ray_tune_by_default():
    kwargs = local_init_kwargs(load_config_dict({"hardware": {"device": "cpu", "num_cpus": 3},
                                                 "ray": {"temp_dir": "/tmp/x"}}))
    # Idle workers are kept an hour (Ray: 1 s, and the raylet stops them as Tune reserves CPUs).
    assert kwargs["_system_config"] == {"preload_python_modules": ["ray.tune"],
                                        "idle_worker_killing_time_threshold_ms": 3_600_000}
    assert (kwargs["num_cpus"], kwargs["num_gpus"], kwargs["_temp_dir"], kwargs["_node_ip_address"]) == (
        3, 0, "/tmp/x", "127.0.0.1")


def test_rays_own_settings_on_request():
    kwargs = local_init_kwargs(load_config_dict({"ray": {"idle_worker_keep_s": None, "preload_modules": []}}))
    assert "_system_config" not in kwargs
    kwargs = local_init_kwargs(load_config_dict({"ray": {"idle_worker_keep_s": 2.5, "preload_modules": []}}))
    assert kwargs["_system_config"] == {"idle_worker_killing_time_threshold_ms": 2500}


def test_preloaded_modules_go_to_rays_system_config():
    more = load_config_dict({"ray": {"preload_modules": ["ray.tune", "multi_agent_pruning.search.tune_trial"]}})
    assert local_init_kwargs(more)["_system_config"] == {
        "preload_python_modules": ["ray.tune", "multi_agent_pruning.search.tune_trial"],
        "idle_worker_killing_time_threshold_ms": 3_600_000}


_TUNE_PROBE = textwrap.dedent("""
    import json, os, sys, time
    import ray
    from ray import tune
    from ray.tune.search import Searcher
    from multi_agent_pruning.config import load_config_dict
    from multi_agent_pruning.orchestrator.ray_runtime import init_ray
    from multi_agent_pruning.orchestrator.tune_run import build_tuner, concurrency
    from multi_agent_pruning.testing.ray_workers import wait_for_idle_workers

    cfg = load_config_dict({"hardware": {"device": "cpu", "num_cpus": 2, "cpus_per_trial": 1},
                            "ray": {"temp_dir": sys.argv[1]}, "search": {"trials": 4}})
    assert init_ray(cfg)
    width = concurrency(cfg)
    prestarted = wait_for_idle_workers(2)
    time.sleep(3)  # they idle longer than Ray's own 1 s timeout, as during a real search's profiling

    class Four(Searcher):
        def __init__(self):
            super().__init__(metric="score", mode="max")
            self.left = 4
        def suggest(self, trial_id):
            if self.left == 0:
                return Searcher.FINISHED
            self.left -= 1
            return {"index": self.left}
        def on_trial_complete(self, trial_id, result=None, error=False):
            pass

    def trainable(config):
        time.sleep(0.5)
        tune.report({"score": float(config["index"]), "pid": os.getpid()})

    grid = build_tuner(cfg, trainable, Four(), budget=4, parallel=2, name="probe",
                       storage=os.path.join(sys.argv[1], "tune")).fit()
    pids = sorted({r.metrics["pid"] for r in grid})
    print(json.dumps({"prestarted": sorted(prestarted), "trial_pids": pids, "errors": grid.num_errors,
                      "width": width}))
    ray.shutdown()
""")


def test_tune_trials_start_in_the_prestarted_workers_after_they_idled(tmp_path):
    """The prestarted workers, idle for 3 s (Ray would stop them after 1 s once Tune's placement
    groups hold every CPU, before the trial actors arrive: ray.idle_worker_keep_s), run the trials."""
    ray_dir = tempfile.mkdtemp(prefix="mr-idle-", dir="/tmp")
    try:
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
        done = subprocess.run([sys.executable, "-c", _TUNE_PROBE, ray_dir], check=False, capture_output=True, text=True,
                              timeout=240, env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        probe = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)
    assert probe["errors"] == 0 and len(probe["prestarted"]) == 2
    assert probe["trial_pids"] == probe["prestarted"]  # both slots, no new process
    assert probe["width"] == 2  # the local cluster mapruner started: the trials that fit in its 2 CPUs
