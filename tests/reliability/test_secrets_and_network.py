"""Security: a planted API key is used (the LLM server receives it) but written nowhere, and the
local Ray cluster that ``mapruner`` starts is not open to the network without authentication
(token mode with a per-run token that is written nowhere).

Checkpoints are loaded with ``weights_only=True`` unless ``model.trust_checkpoint`` is set:
tests/models/test_model_checkpoint.py::test_pickled_module_needs_trust and, end to end,
tests/reliability/test_bad_inputs.py.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from support.llm_server import CHAT_PATH

REPO = Path(__file__).resolve().parents[2]


def _files(*roots: Path) -> list[Path]:
    return sorted(p for root in roots for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def test_planted_key_reaches_the_llm_server_and_is_written_nowhere(llm_chaos_run):
    run, key = llm_chaos_run.run, llm_chaos_run.key
    assert run.returncode == 0, run.explain()
    chats = [r for r in llm_chaos_run.requests if r.path == CHAT_PATH]
    # 429 (echoing the key), batch 1, a malformed reply (echoing the key), its repair: batch 2.
    assert len(chats) == 4
    assert all(r.headers["authorization"] == f"Bearer {key}" for r in chats)  # the key was really used
    assert key not in "".join(r.messages_text() for r in chats)  # and never put in a prompt
    rows = run.rows()
    assert {r.importance for r in rows if r.iteration == 0} == {"l2", "taylor"}  # the LLM's batches ran
    assert {r.importance for r in rows if r.iteration == 1} == {"lamp", "fpgm"}
    # Every file the run wrote: results, summary, report, best model, Tune state, LLM cache,
    # profile and dense-model cache, and Ray's session directory (logs of every process).
    files = _files(run.out, run.cache, run.ray_dir)
    logs = [p for p in files if "/logs/" in str(p)]
    cached_replies = list((run.out / "llm_cache").glob("*"))
    assert len(files) >= 50 and len(logs) >= 10 and len(cached_replies) >= 2
    leaked = [str(p) for p in files if key.encode() in p.read_bytes()]
    assert leaked == []
    assert key not in run.stdout and key not in run.stderr


_PROBE = textwrap.dedent("""
    import json, os, pathlib, subprocess, sys
    import ray
    import psutil  # Ray ships psutil in ray/thirdparty_files
    from ray._raylet import AuthenticationMode, get_authentication_mode
    from multi_agent_pruning.config import load_config
    from multi_agent_pruning.orchestrator.ray_runtime import init_ray

    cfg = load_config("tests/support/quickstart_single.yaml",
                      overrides=[f"ray.temp_dir={sys.argv[1]}"])
    assert init_ray(cfg)
    assert ray.get(ray.remote(lambda: 1).remote()) == 1  # a worker is up too, and authenticated
    # ray.preload_modules (default ["ray.tune"]): the worker imported ray.tune when it started
    preloaded = ray.get(ray.remote(lambda: "ray.tune" in sys.modules).remote())
    # The agents' actors get processes of their own; Ray's prestarted workers stay for the trials.
    from multi_agent_pruning.testing.ray_workers import wait_for_idle_workers
    prestarted = wait_for_idle_workers(2)
    from multi_agent_pruning.actors import create_actors
    master, analysis = create_actors({"batch_size": 2}, {}, store_root=None, experiment="probe", method="m")
    agent_pids = set(ray.get([master.ping.remote(), analysis.ping.remote()]))
    trial_pid = ray.get(ray.remote(num_cpus=1)(lambda: os.getpid()).remote())
    agents = {"prestarted": len(prestarted), "agents_in_prestarted": len(agent_pids & prestarted),
              "agent_processes": len(agent_pids), "trial_in_prestarted": trial_pid in prestarted}
    ray.kill(master); ray.kill(analysis)
    me = psutil.Process()
    mine = {p.pid: p.name() for p in me.children(recursive=True)} | {me.pid: "driver"}
    listeners = sorted({(c.laddr.ip, c.laddr.port, mine[c.pid]) for c in psutil.net_connections("inet")
                        if c.status == psutil.CONN_LISTEN and c.pid in mine})
    # A client on this machine without the run's token (what anyone who reaches the ports has).
    gcs = ray.get_runtime_context().gcs_address
    stranger = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    stranger["RAY_AUTH_MODE"] = "disabled"
    join = f"import ray; ray.init(address={gcs!r}); print('JOINED', ray.get(ray.remote(lambda: 2).remote()))"
    probe = subprocess.run([sys.executable, "-c", join], env=stranger, capture_output=True, text=True, timeout=120)
    # The same client with the run's token (the positive control: it is the token that matters).
    friend = subprocess.run([sys.executable, "-c", join], env=dict(os.environ), capture_output=True, text=True,
                            timeout=120)
    token = os.environ.get("RAY_AUTH_TOKEN", "")
    files = [p for p in pathlib.Path(sys.argv[1]).rglob("*") if p.is_file() and not p.is_symlink()]
    print(json.dumps({"nodes": [n["NodeManagerAddress"] for n in ray.nodes()],
                      "token_auth": get_authentication_mode() == AuthenticationMode.TOKEN,
                      "token_len": len(token), "listeners": listeners,
                      "stranger_joined": "JOINED" in probe.stdout, "stranger_error": probe.stderr[-4000:],
                      "friend_joined": "JOINED 2" in friend.stdout,
                      "files": len(files), "preloaded": preloaded, "agents": agents,
                      "files_with_token": [str(p) for p in files if token and token.encode() in p.read_bytes()]}))
    ray.shutdown()
""")


@pytest.fixture(scope="module")
def local_cluster(short_tmp, clean_env):
    """What the local cluster of a plain ``mapruner prune`` listens on: ``init_ray`` in a fresh
    process whose user set no RAY_AUTH_MODE (HOME is a temporary directory, so a token Ray may
    generate does not land in the real one)."""
    home, ray_dir = short_tmp("home"), short_tmp("ray")
    env = {k: v for k, v in clean_env().items() if k != "RAY_AUTH_MODE"}
    env["HOME"] = str(home)
    done = subprocess.run([sys.executable, "-c", _PROBE, str(ray_dir)], check=False, cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "home": home}


def _loopback(ip: str) -> bool:
    return ipaddress.ip_address(ip).is_loopback


def test_local_ray_workers_start_with_ray_tune_imported(local_cluster):
    assert local_cluster["preloaded"] is True


def test_agent_actors_leave_the_prestarted_workers_to_the_trials(local_cluster):
    agents = local_cluster["agents"]
    assert agents["prestarted"] >= 2 and agents["agent_processes"] == 2
    assert agents["agents_in_prestarted"] == 0 and agents["trial_in_prestarted"] is True


def test_local_ray_runs_no_dashboard_ui(local_cluster):
    ports = {port for _, port, _ in local_cluster["listeners"]}
    assert local_cluster["listeners"] and len(local_cluster["nodes"]) == 1
    assert 8265 not in ports  # ray.include_dashboard is false: no dashboard / job-submission server


def test_local_ray_requires_a_per_run_token(local_cluster):
    # Ray listens on all interfaces (it maps 127.0.0.1 to the host's address), so the cluster that
    # init_ray starts must authenticate: a fresh random token for this run, known to its processes.
    exposed = [entry for entry in local_cluster["listeners"] if not _loopback(entry[0])]
    assert exposed, "Ray now binds to loopback only: update docs/reliability.md (B3)"
    assert local_cluster["token_auth"] and local_cluster["token_len"] == 64
    # A client without the token is refused; the same client with it joins and runs a task.
    assert not local_cluster["stranger_joined"]
    assert "InvalidAuthToken" in local_cluster["stranger_error"], local_cluster["stranger_error"]
    assert local_cluster["friend_joined"]
    # The token is not written anywhere: not under the Ray session directory (logs of every
    # process) and not in the user's home (Ray's default token file).
    assert local_cluster["files"] >= 10 and local_cluster["files_with_token"] == []


def test_local_ray_writes_no_token_to_home(local_cluster):
    assert not (local_cluster["home"] / ".ray" / "auth_token").exists()
    assert sorted(p.name for p in local_cluster["home"].rglob("*")) == []
