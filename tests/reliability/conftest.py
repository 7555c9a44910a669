"""Helpers for the reliability tests: `mapruner prune` as a subprocess with its own local Ray.

Faults are injected through ``MAPRUNER_FAULT_INJECTION`` (see
``multi_agent_pruning.search.trial.inject_fault``). Ray workers inherit the environment of the
process that starts the local cluster, so a fault reaches the trials only when the search runs
in a fresh process; that is why these runs are subprocesses and not in-process calls.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MAPRUNER = str(Path(sys.executable).with_name("mapruner"))

# The smallest search that still has two master iterations on the quickstart CNN.
FAST = {"finetune.steps": "5", "model.train_steps": "40", "evaluation.latency": "false",
        "agents.profiling_agent.calibration_batches": "1", "search.convergence_threshold": "0",
        "search.max_iterations": "3"}


@dataclass
class PruneRun:
    """One finished ``mapruner prune`` subprocess."""

    returncode: int
    stdout: str
    stderr: str
    out: Path
    cache: Path
    ray_dir: Path

    def rows(self):
        from multi_agent_pruning.results import ResultStore

        return ResultStore(self.out / "results").rows()

    def summary(self) -> dict:
        return json.loads((self.out / "summary.json").read_text())

    def explain(self) -> str:
        """The end of both streams, for assertion messages."""
        return f"exit {self.returncode}\n--- stdout\n{self.stdout[-1500:]}\n--- stderr\n{self.stderr[-3000:]}"


def search_env(**extra: str) -> dict[str, str]:
    """The test's environment without LLM keys or a Ray address (a fresh local cluster, builtin policy)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("OPENAI_") and k not in ("RAY_ADDRESS", "MAPRUNER_FAULT_INJECTION")}
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", **extra)
    return env


@pytest.fixture(scope="session")
def clean_env() -> Callable[..., dict[str, str]]:
    """:func:`search_env` as a fixture."""
    return search_env


@pytest.fixture(scope="session")
def short_tmp() -> Iterator[Callable[[str], Path]]:
    """Short directories under /tmp: Ray's socket paths must stay under 107 characters."""
    made: list[Path] = []

    def make(prefix: str) -> Path:
        made.append(Path(tempfile.mkdtemp(prefix=f"mr-{prefix}-", dir="/tmp")))
        return made[-1]

    yield make
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def shared_cache(short_tmp) -> Path:
    """One precomputation cache for every reliability test: the dense CNN is trained once
    (about 20 s on 2 busy cores) and its profile is computed once."""
    return short_tmp("cache")


@pytest.fixture(scope="session")
def run_prune(short_tmp, shared_cache) -> Callable[..., PruneRun]:
    """``run_prune(name, trials=..., settings={...}, env={...}, prepare=fn)`` runs one search.

    ``settings`` are ``--set`` overrides on top of :data:`FAST` (``{out}`` in a value is the
    output directory); ``env`` is added to :func:`search_env`; ``prepare(out)`` runs before the
    search (to plant a fault on disk). Output and Ray's session directory live under one short
    temporary directory; the precomputation cache is :func:`shared_cache`.
    """

    def run(name: str, *, trials: int, settings: dict[str, str] | None = None, env: dict[str, str] | None = None,
            prepare: Callable[[Path], None] | None = None, timeout: float = 420) -> PruneRun:
        root = short_tmp(name)
        out, cache, ray_dir = root / "out", shared_cache, root / "ray"
        if prepare is not None:
            prepare(out)
        overrides = {**FAST, "precomputation.cache_dir": str(cache), "ray.temp_dir": str(ray_dir),
                     "search.policy": "builtin", **(settings or {})}
        argv = [MAPRUNER, "prune", "--config", "tests/support/quickstart_single.yaml", "--output-dir", str(out),
                "--trials", str(trials)]
        for key, value in overrides.items():
            argv += ["--set", f"{key}={value.replace('{out}', str(out))}"]
        done = subprocess.run(argv, check=False, cwd=REPO, env=search_env(**(env or {})), capture_output=True,
                              text=True, timeout=timeout)
        return PruneRun(done.returncode, done.stdout, done.stderr, out, cache, ray_dir)

    return run


PLANTED_KEY = "sk-planted-" + secrets.token_hex(16)
# Two batches of distinct strategies, as an LLM would send them (compact_cnn has no attention).
LLM_BATCHES = (
    {"strategies": [{"importance": "l2"}, {"importance": "taylor", "global_pruning": False}],
     "reasoning": "start from the two usual criteria"},
    {"strategies": [{"importance": "lamp"}, {"importance": "fpgm", "global_pruning": False}],
     "reasoning": "try the other criteria"},
)


@dataclass
class LLMRun:
    """A search driven by the LLM policy, and what the scripted LLM server received."""

    run: PruneRun
    key: str
    requests: list
    marker: Path


@pytest.fixture(scope="session")
def llm_chaos_run(run_prune, short_tmp) -> LLMRun:
    """One search that uses the LLM policy against a scripted OpenAI-compatible server with a
    planted ``OPENAI_API_KEY``, in which the first trial to start pruning kills its worker once
    (``exit_once``; Tune retries it).

    The server echoes the key back in an error body and in a malformed reply, so a leak through
    logs, records or caches would show. It is shared by the secret-leak test and the worker-death
    test: each search costs about a minute on 2 cores.
    """
    from support.llm_server import (
        OpenAICompatibleServer,
        reply,
        reply_json,
        status,
    )

    marker = short_tmp("marker") / "died"
    fault = {"stage": "prune", "kind": "exit_once", "importance": None, "marker": str(marker)}
    echo = {"error": {"message": f"rate limited for key {PLANTED_KEY}", "type": "rate_limit"}}
    with OpenAICompatibleServer(model="test-model") as server:
        server.script(status(429, echo, headers={"Retry-After": "0"}), reply_json(LLM_BATCHES[0]),
                      reply(f"not JSON; your key is {PLANTED_KEY}"), reply_json(LLM_BATCHES[1]))
        run = run_prune("llm", trials=4, settings={
            "search.batch_size": "2", "search.max_iterations": "2", "search.max_failures": "1",
            "search.policy": "llm", "llm.base_url": server.base_url, "llm.model": "test-model",
            "llm.max_retries": "2", "llm.timeout": "30", "llm.cache_dir": "{out}/llm_cache"},
            env={"OPENAI_API_KEY": PLANTED_KEY, "MAPRUNER_FAULT_INJECTION": json.dumps(fault)})
        requests = server.requests
    return LLMRun(run, PLANTED_KEY, requests, marker)
