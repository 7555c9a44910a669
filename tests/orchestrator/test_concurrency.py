"""The search's width on a joined cluster comes from the config, never from the cluster's size
when the search starts (``orchestrator.tune_run.concurrency``; the local-cluster rule is checked
end to end in test_ray_runtime.py)."""

from __future__ import annotations

import pytest

from multi_agent_pruning.config import load_config_dict
from multi_agent_pruning.orchestrator.ray_runtime import started_local
from multi_agent_pruning.orchestrator.tune_run import concurrency


@pytest.mark.parametrize(("search", "width"), [
    ({}, 4),                                              # ceil(16 trials / 4 iterations)
    ({"trials": 10, "max_iterations": 4}, 3),             # ceil(10 / 4)
    ({"batch_size": 5}, 5),
    ({"max_concurrent_trials": 7}, 7),                    # more than the 2 CPUs this Ray has
    ({"max_concurrent_trials": 7, "batch_size": 2}, 7),
])
def test_width_on_a_joined_cluster_follows_the_config(local_ray, search, width):
    assert not started_local()  # the suite's Ray was started by the test, not by init_ray
    cfg = load_config_dict({"hardware": {"device": "cpu", "cpus_per_trial": 1}, "search": search})
    assert concurrency(cfg) == width
