"""The search's width on a joined cluster comes from the config, never from the cluster's size
when the search starts (``orchestrator.tune_run.concurrency``; the local-cluster rule is checked
end to end in test_ray_runtime.py)."""

from __future__ import annotations

import pytest

from multi_agent_pruning.config import load_config_dict
from multi_agent_pruning.orchestrator import ray_runtime
from multi_agent_pruning.orchestrator.ray_runtime import started_local
from multi_agent_pruning.orchestrator.tune_run import concurrency


@pytest.mark.parametrize(("search", "width"), [
    ({}, 4),                                              # ceil(16 trials / 4 iterations)
    ({"trials": 10, "max_iterations": 4}, 3),             # ceil(10 / 4)
    ({"batch_size": 5}, 5),
    ({"max_concurrent_trials": 7}, 7),                    # more than the 2 CPUs this Ray has
    ({"max_concurrent_trials": 7, "batch_size": 2}, 7),
])
def test_width_on_a_joined_cluster_follows_the_config(local_ray, monkeypatch, search, width):
    # The suite's Ray counts as joined: started by a fixture, or by an earlier test's init_ray,
    # which this forgets (in the full suite that test may run first in the same process).
    monkeypatch.setattr(ray_runtime, "_LOCAL_GCS", None)
    assert not started_local()
    cfg = load_config_dict({"hardware": {"device": "cpu", "cpus_per_trial": 1}, "search": search})
    assert concurrency(cfg) == width
