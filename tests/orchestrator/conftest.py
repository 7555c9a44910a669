"""A small, fast experiment config and one local Ray cluster for the orchestration tests."""

from __future__ import annotations

import os

import pytest

from multi_agent_pruning.config import load_config

FAST = [
    "search.trials=3", "search.max_iterations=2", "search.batch_size=2", "search.convergence_threshold=0",
    "finetune.steps=5", "model.train_steps=40", "evaluation.latency=false", "agents.profiling_agent.calibration_batches=1",
]


@pytest.fixture
def fast_config(tmp_path):
    def make(*extra: str):
        return load_config("configs/quickstart.yaml",
                           overrides=FAST + [f"precomputation.cache_dir={tmp_path / 'cache'}", *extra])

    return make


@pytest.fixture(scope="session")
def local_ray(tmp_path_factory):
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
                 _temp_dir=str(tmp_path_factory.mktemp("ray")))
    yield ray
    ray.shutdown()
