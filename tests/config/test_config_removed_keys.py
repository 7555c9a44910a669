"""Keys that were accepted and never read are refused, each with what to use instead (issue 19
item 7), including the API reference's memory and caching examples, and in one error with the
config's other problems."""

from __future__ import annotations

import pytest

from multi_agent_pruning.config import load_config_dict
from multi_agent_pruning.config._removed import REMOVED_KEYS
from multi_agent_pruning.exceptions import ConfigurationError


def _nested(path: str, value) -> dict:
    data: dict = {}
    node = data
    *parents, last = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return data


@pytest.mark.parametrize("path", sorted(REMOVED_KEYS))
def test_each_removed_key_is_refused_with_what_to_use_instead(path):
    value = {"enabled": True, "cache_duration": 3600} if path.endswith("importance_scores") else True
    with pytest.raises(ConfigurationError) as caught:
        load_config_dict(_nested(path, value))
    [issue] = caught.value.issues
    assert issue.path == path and issue.rule == REMOVED_KEYS[path]
    assert issue.rule.startswith("removed: it was accepted and never read; ")


def test_the_api_references_memory_example_names_the_replacement():
    reference = {"agents": {"pruning_agent": {"memory_efficient": True, "gradient_checkpointing": True,
                                              "batch_processing": True}}}
    with pytest.raises(ConfigurationError) as caught:
        load_config_dict(reference)
    rules = {issue.path: issue.rule for issue in caught.value.issues}
    assert sorted(rules) == ["agents.pruning_agent.batch_processing", "agents.pruning_agent.gradient_checkpointing",
                             "agents.pruning_agent.memory_efficient"]
    assert "use hardware.gpu.gradient_checkpointing" in rules["agents.pruning_agent.gradient_checkpointing"]
    # The replacement it names exists and loads.
    assert load_config_dict({"hardware": {"gpu": {"gradient_checkpointing": True}}}).hardware.gpu.gradient_checkpointing


def test_removed_and_other_problems_are_one_error():
    with pytest.raises(ConfigurationError) as caught:
        load_config_dict({"agents": {"evaluation_agent": {"comprehensive_metrics": True}}, "search": {"trials": 0},
                          "precomputation": {"importance_scorez": {}}})
    rules = {issue.path: issue.rule for issue in caught.value.issues}
    assert "evaluation.latency" in rules["agents.evaluation_agent.comprehensive_metrics"]
    assert "search.trials" in rules and rules["precomputation.importance_scorez"].startswith("unknown key")


def test_keys_kept_still_load():
    cfg = load_config_dict({"agents": {"pruning_agent": {"global_pruning": False},
                                       "master_agent": {"exploration": 0.6}}})
    assert cfg.agents.pruning_agent.global_pruning is False and cfg.agents.master_agent.exploration == 0.6
