"""`ray job submit` of `mapruner prune` to a Ray head started here, and token-protected submission.

Each test starts its own head (`ray start --head --block`) on free ports under a short temp dir,
so it never touches another Ray on the machine. `ray stop` cannot target one cluster (it stops
every Ray process of the user), so the head is stopped through the `ray start` process this test
started, and any process left with this test's paths in its command line is killed by PID.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from ray.job_submission import JobSubmissionClient
from support.ray_cluster import RAY, ray_env as _ray_env, ray_head, run_ray as _ray, wait_for_job as _wait_for_job

from multi_agent_pruning.results import ResultStore

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(RAY is None, reason="the `ray` CLI is not installed (pip install 'ray[default]')")
SUMMARY_KEYS = {"final_accuracy", "params_reduction", "macs_reduction", "convergence_iterations", "total_time_minutes"}


def test_ray_job_submit_runs_the_quickstart_search_on_the_cluster(tmp_path):
    output = tmp_path / "quickstart"
    job = f"mapruner-test-{secrets.token_hex(4)}"
    with ray_head(markers=(str(output),)) as (url, env):
        submitted = _ray("job", "submit", "--address", url, "--working-dir", str(ROOT), "--submission-id", job,
                         "--no-wait", "--", "mapruner", "prune", "--config", "tests/support/quickstart_single.yaml",
                         "--output-dir", str(output), "--set", "search.trials=2", "--set", "search.max_iterations=1",
                         "--set", "finetune.steps=10", "--set", "model.train_steps=60",
                         "--set", "evaluation.latency=false", env=env)
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
        status = _wait_for_job(url, job, env, timeout=300)
        logs = _ray("job", "logs", job, "--address", url, env=env).stdout
        assert status == "SUCCEEDED", logs[-4000:]
        # The driver joined this cluster (RAY_ADDRESS from the job server) instead of starting its own.
        info = JobSubmissionClient(url).get_job_info(job)
        assert str(info.status) == "SUCCEEDED"
        assert info.driver_info is not None and int(info.driver_info.pid) > 0
    store = ResultStore(output / "results")
    rows = store.rows(experiment="quickstart")
    assert len(rows) == 2 and {r.status for r in rows} == {"ok"}
    assert {r.method for r in rows} == {"multi_agent"} and len({r.trial_id for r in rows}) == 2
    summary = json.loads((output / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert 0.0 <= summary["final_accuracy"] <= 1.0
    assert summary["macs_reduction"] == pytest.approx(0.5, abs=0.01)
    assert summary["convergence_iterations"] == 1
    assert 0 < summary["total_time_minutes"] < 10
    assert summary["final_accuracy"] == pytest.approx(max(r.top1_after for r in rows))
    assert summary["output_dir"] == str(output) and (output / "best_model").is_dir()


def _submit(url: str, env: dict[str, str], *command: str) -> subprocess.CompletedProcess:
    return _ray("job", "submit", "--address", url, "--", *command, env=env)


def test_token_protected_job_server_refuses_submissions_without_the_token(tmp_path):
    token = tmp_path / "token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    wrong = tmp_path / "wrong"
    wrong.write_text(secrets.token_hex(32))
    probe = ("import ray; from multi_agent_pruning.config import load_config; "
             "from multi_agent_pruning.orchestrator.ray_runtime import init_ray; "
             f"started = init_ray(load_config({str(ROOT / 'tests/support/quickstart_single.yaml')!r})); "
             "print('started_local', started, 'cpus', ray.cluster_resources()['CPU'])")
    with ray_head(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token)) as (url, env):
        with pytest.raises(urllib.error.HTTPError) as http:
            urllib.request.urlopen(f"{url}/api/jobs/", timeout=5)
        assert http.value.code == 401
        anonymous = _submit(url, _ray_env(), "python", "-c", "print(42)")
        assert anonymous.returncode != 0
        assert "Unauthorized: Missing authentication token" in anonymous.stderr
        forged = _submit(url, _ray_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(wrong)), "python", "-c", "1")
        assert forged.returncode != 0
        assert "Forbidden: Invalid authentication token" in forged.stderr
        # With the token, the job's driver joins the protected cluster through mapruner's init_ray.
        allowed = _submit(url, env, "python", "-c", probe)
        assert allowed.returncode == 0, allowed.stdout + allowed.stderr
        assert "started_local False cpus 2.0" in allowed.stdout
