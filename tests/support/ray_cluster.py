"""Ray clusters the tests start with Ray's own tools, on free ports under short temp dirs, and stop
without touching any other Ray on the machine.

`ray stop` cannot target one cluster (it stops every Ray process of the user), and Ray's
``AutoscalingCluster`` runs `ray stop --force` on start and shutdown; so a head is started here
with `ray start --head --block` in a session of its own, stopped through that process, and any
process left in its session or naming one of the test's paths is killed by PID. The nodes Ray's
fake multi-node provider launches (``RAY_FAKE_CLUSTER=1``) run in the head's session too.
"""

from __future__ import annotations

import json
import os
import re
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

BIN = Path(sys.executable).parent
RAY = BIN / "ray" if (BIN / "ray").exists() else shutil.which("ray")
TERMINAL = {"succeeded": "SUCCEEDED", "failed": "FAILED", "was stopped": "STOPPED"}
ANSI = re.compile(r"\x1b\[[0-9;]*m")

__all__ = ["RAY", "autoscaling_config", "free_port", "kill_leftovers", "ray_env", "ray_head", "run_ray",
           "wait_for_job"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ray_env(**extra: str) -> dict[str, str]:
    """This venv first on PATH (the job's `mapruner`), no inherited cluster address or token."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")}
    env.update({"PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "RAY_USAGE_STATS_ENABLED": "0",
                "RAY_AUTH_MODE": "disabled", **extra})
    return env


def run_ray(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
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


def kill_leftovers(session: int, markers: list[str]) -> None:
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


def autoscaling_config(*, gcs_port: int, head_cpus: int, worker_types: dict, max_workers: int) -> dict:
    """A cluster config for Ray's fake multi-node provider (what ``ray.cluster_utils.AutoscalingCluster``
    generates from Ray's ``fake_multi_node/example.yaml``, which the wheel does not ship), with the
    GCS on ``gcs_port``: the provider launches each worker as a raylet on this machine."""
    return {
        "cluster_name": "fake_multinode", "max_workers": max_workers,
        "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                     "disable_launch_config_check": True, "gcs_address": f"127.0.0.1:{gcs_port}"},
        "available_node_types": {"ray.head.default": {"resources": {"CPU": head_cpus, "GPU": 0}, "node_config": {},
                                                      "max_workers": 0}, **worker_types},
        "head_node_type": "ray.head.default", "auth": {}, "upscaling_speed": 1.0, "idle_timeout_minutes": 5,
        "docker": {}, "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
        "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": [],
        "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
        "rsync_exclude": [], "rsync_filter": [],
    }


@contextmanager
def ray_head(markers: tuple[str, ...] = (), *, num_cpus: int = 2, autoscaling: dict | None = None,
             **env_extra: str) -> Iterator[tuple[str, dict[str, str]]]:
    """A Ray head on free ports, its dashboard on 127.0.0.1; yields (job server URL, env).

    ``markers``: paths that only this test's processes name (e.g. the job's output folder).
    ``autoscaling``: keyword arguments of :func:`autoscaling_config` (``gcs_port`` and
    ``head_cpus`` are filled in): the head then runs Ray's autoscaler with the fake provider.
    """
    env = ray_env(**env_extra)
    temp = tempfile.mkdtemp(prefix="mr", dir="/tmp")  # short: Ray's unix sockets live under it
    gcs, dashboard, client, agent = (free_port() for _ in range(4))
    log = Path(temp) / "head.log"
    url = f"http://127.0.0.1:{dashboard}"
    args = [str(RAY), "start", "--head", "--block", f"--port={gcs}", "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}", f"--ray-client-server-port={client}",
            f"--dashboard-agent-listen-port={agent}", f"--num-cpus={num_cpus}", f"--temp-dir={temp}",
            "--include-dashboard=true"]
    if autoscaling is not None:
        config = Path(temp) / "autoscaling.json"
        config.write_text(json.dumps(autoscaling_config(gcs_port=gcs, head_cpus=num_cpus, **autoscaling)))
        args += ["--num-gpus=0", "--node-ip-address=127.0.0.1", f"--autoscaling-config={config}"]
        env.update(RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1")
    head = None
    try:
        with open(log, "w") as out:
            head = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
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
    kill_leftovers(head.pid, markers)


def wait_for_job(url: str, job: str, env: dict[str, str], timeout: float) -> str:
    """Polls `ray job status` until the job ends; returns its final status or "TIMEOUT"."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = run_ray("job", "status", job, "--address", url, env=env)
        text = ANSI.sub("", reply.stdout + reply.stderr)
        # The CLI reports a finished job as "Job '<id>' succeeded / failed / was stopped".
        ended = re.search(rf"Job '{re.escape(job)}' (succeeded|failed|was stopped)", text)
        if ended:
            return TERMINAL[ended.group(1)]
        time.sleep(5)  # each `ray job status` is a Python start-up: poll gently on 2 cores
    run_ray("job", "stop", job, "--address", url, env=env)
    return "TIMEOUT"
