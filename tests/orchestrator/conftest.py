"""A small, fast experiment config and one local Ray cluster for the orchestration tests."""

from __future__ import annotations


import pytest

from multi_agent_pruning.config import load_config

FAST = [
    "search.trials=3", "search.max_iterations=2", "search.batch_size=2", "search.convergence_threshold=0",
    "finetune.steps=5", "model.train_steps=40", "evaluation.latency=false", "agents.profiling_agent.calibration_batches=1",
]


@pytest.fixture
def fast_config(tmp_path):
    def make(*extra: str):
        # The quickstart with one target (configs/quickstart.yaml is a sweep; test_sweep.py sets one).
        return load_config("tests/support/quickstart_single.yaml",
                           overrides=FAST + [f"precomputation.cache_dir={tmp_path / 'cache'}", *extra])

    return make
