"""The arguments of the local cluster ``init_ray`` starts (the end-to-end check that workers
preload the modules asked for: tests/reliability/test_secrets_and_network.py)."""

from __future__ import annotations

from multi_agent_pruning.config import load_config_dict
from multi_agent_pruning.orchestrator.ray_runtime import local_init_kwargs


def test_local_cluster_arguments_and_no_preloading_by_default():
    kwargs = local_init_kwargs(load_config_dict({"hardware": {"device": "cpu", "num_cpus": 3},
                                                 "ray": {"temp_dir": "/tmp/x"}}))
    assert "_system_config" not in kwargs
    assert (kwargs["num_cpus"], kwargs["num_gpus"], kwargs["_temp_dir"], kwargs["_node_ip_address"]) == (
        3, 0, "/tmp/x", "127.0.0.1")


def test_preloaded_modules_go_to_rays_system_config():
    more = load_config_dict({"ray": {"preload_modules": ["ray.tune", "multi_agent_pruning.search.tune_trial"]}})
    assert local_init_kwargs(more)["_system_config"] == {
        "preload_python_modules": ["ray.tune", "multi_agent_pruning.search.tune_trial"]}
