"""The arguments of the local cluster ``init_ray`` starts (the end-to-end check that workers
preload ``ray.tune``: tests/reliability/test_secrets_and_network.py)."""

from __future__ import annotations

from multi_agent_pruning.config import load_config_dict
from multi_agent_pruning.orchestrator.ray_runtime import local_init_kwargs


def test_local_cluster_preloads_ray_tune_in_its_workers_by_default():
    kwargs = local_init_kwargs(load_config_dict({"hardware": {"device": "cpu", "num_cpus": 3},
                                                 "ray": {"temp_dir": "/tmp/x"}}))
    assert kwargs["_system_config"] == {"preload_python_modules": ["ray.tune"]}
    assert (kwargs["num_cpus"], kwargs["num_gpus"], kwargs["_temp_dir"], kwargs["_node_ip_address"]) == (
        3, 0, "/tmp/x", "127.0.0.1")


def test_preloading_is_configurable_and_can_be_turned_off():
    more = load_config_dict({"ray": {"preload_modules": ["ray.tune", "multi_agent_pruning.search.tune_trial"]}})
    assert local_init_kwargs(more)["_system_config"]["preload_python_modules"] == [
        "ray.tune", "multi_agent_pruning.search.tune_trial"]
    assert "_system_config" not in local_init_kwargs(load_config_dict({"ray": {"preload_modules": []}}))
