"""`ray job submit` of `mapruner prune` to a Ray head started here, and token-protected submission.

Each test starts its own head (`ray start --head --block`) on free ports under a short temp dir,
so it never touches another Ray on the machine. `ray stop` cannot target one cluster (it stops
every Ray process of the user), so the head is stopped through the `ray start` process this test
started, and any process left with this test's paths in its command line is killed by PID.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from ray.job_submission import JobSubmissionClient

from multi_agent_pruning.results import ResultStore

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RAY = BIN / "ray" if (BIN / "ray").exists() else shutil.which("ray")
pytestmark = pytest.mark.skipif(RAY is None, reason="the `ray` CLI is not installed (pip install 'ray[default]')")
TERMINAL = {"succeeded": "SUCCEEDED", "failed": "FAILED", "was stopped": "STOPPED"}
ANSI = re.compile(r"\x1b\[[0-9;]*m")
SUMMARY_KEYS = {"final_accuracy", "params_reduction", "macs_reduction", "convergence_iterations", "total_time_minutes"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ray_env(**extra: str) -> dict[str, str]:
    """This venv first on PATH (the job's `mapruner`), no inherited cluster address or token."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")}
    env.update({"PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "RAY_USAGE_STATS_ENABLED": "0",
                "RAY_AUTH_MODE": "disabled", **extra})
    return env


def _ray(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(RAY), *args], env=env, capture_output=True, text=True, timeout=timeout)


def _wait_for_job_server(url: str, head: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if head.poll() is not None:
            pytest.fail(f"`ray start --head` exited with {head.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/version", timeout=2) as reply:
                if reply.status == 200:
                    return
        except urllib.error.HTTPError as err:
            if err.code in (401, 403):  # token auth is on: the server is up
                return
        except OSError:
            pass
        time.sleep(1)
    pytest.fail(f"no job server at {url} after {timeout:.0f}s:\n{log.read_text()[-3000:]}")


def _kill_leftovers(session: int, markers: list[str]) -> None:
    """SIGKILLs processes of the head's session or naming one of ``markers`` (Linux /proc)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            sid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[3])
        except (OSError, IndexError, ValueError):
            continue
        if sid == session or any(m in cmdline for m in markers):
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except OSError:
                pass


@contextmanager
def ray_head(markers: tuple[str, ...] = (), **env_extra: str) -> Iterator[tuple[str, dict[str, str]]]:
    """A Ray head on free ports, its dashboard on 127.0.0.1; yields (job server URL, env).

    ``markers``: paths that only this test's processes name (e.g. the job's output folder).
    """
    env = _ray_env(**env_extra)
    temp = tempfile.mkdtemp(prefix="mr", dir="/tmp")  # short: Ray's unix sockets live under it
    gcs, dashboard, client, agent = (_free_port() for _ in range(4))
    log = Path(temp) / "head.log"
    url = f"http://127.0.0.1:{dashboard}"
    head = None
    try:
        with open(log, "w") as out:
            head = subprocess.Popen(
                [str(RAY), "start", "--head", "--block", f"--port={gcs}", "--dashboard-host=127.0.0.1",
                 f"--dashboard-port={dashboard}", f"--ray-client-server-port={client}",
                 f"--dashboard-agent-listen-port={agent}", "--num-cpus=2", f"--temp-dir={temp}",
                 "--include-dashboard=true"],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        _wait_for_job_server(url, head, log)
        yield url, env
    finally:
        if head is not None:
            _stop_head(head, [temp, *markers])
        shutil.rmtree(temp, ignore_errors=True)


def _stop_head(head: subprocess.Popen, markers: list[str]) -> None:
    if head.poll() is None:
        head.send_signal(signal.SIGTERM)  # `ray start --block` then stops the processes it started
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    _kill_leftovers(head.pid, markers)


def _wait_for_job(url: str, job: str, env: dict[str, str], timeout: float) -> str:
    """Polls `ray job status` until the job ends; returns its final status or "TIMEOUT"."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = _ray("job", "status", job, "--address", url, env=env)
        text = ANSI.sub("", reply.stdout + reply.stderr)
        # The CLI reports a finished job as "Job '<id>' succeeded / failed / was stopped".
        ended = re.search(rf"Job '{re.escape(job)}' (succeeded|failed|was stopped)", text)
        if ended:
            return TERMINAL[ended.group(1)]
        time.sleep(5)  # each `ray job status` is a Python start-up: poll gently on 2 cores
    _ray("job", "stop", job, "--address", url, env=env)
    return "TIMEOUT"


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
