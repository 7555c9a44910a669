"""Strategy: frozen, hashable, JSON round trip, every invalid field reported at once."""

from __future__ import annotations

import dataclasses
import json
import pickle

import pytest
import torch
import torch_pruning as tp

from multi_agent_pruning.config import load_config_dict
from multi_agent_pruning.core.engine import apply_strategy
from multi_agent_pruning.core.importance import IMPORTANCE_REGISTRY
from multi_agent_pruning.core.strategy import Strategy
from multi_agent_pruning.exceptions import ConfigurationError
from multi_agent_pruning.testing.tiny import TinyResNet


def test_roundtrip_equality_and_hash():
    s = Strategy(importance="l2", group_multipliers={"mlp": 1.5, "attention": 0.5}, ignored_layers=["head"],
                 target_reduction=None, target_budget=2.3e9)
    again = Strategy.from_json(s.to_json())
    assert again == s and hash(again) == hash(s) and again.key() == s.key()
    assert list(json.loads(s.to_json())["group_multipliers"]) == ["attention", "mlp"]  # canonical order
    assert Strategy.from_dict({**s.to_dict(), "importance_criterion": "l2", "pruning_ratio": None}) == s
    assert s.target_macs_or_params(4.6e9) == 2.3e9
    assert Strategy(target_reduction=0.25).target_macs_or_params(100.0) == 75.0


def test_frozen_and_read_only_multipliers():
    s = Strategy(group_multipliers={"mlp": 1.0})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.importance = "l1"
    with pytest.raises(TypeError, match="read-only"):
        s.group_multipliers["mlp"] = 2.0
    assert s.replace(target_budget=1e9).target_reduction is None


def test_every_problem_is_reported_together():
    with pytest.raises(ConfigurationError) as err:
        Strategy(importance="magic", group_multipliers={"mlp": -1}, round_to=0, target_reduction=1.2,
                 learning_rate=0, kd_weight=2, iterative_steps=0)
    paths = {issue.path for issue in err.value.issues}
    assert paths >= {"strategy.importance", "strategy.group_multipliers.mlp", "strategy.round_to",
                     "strategy.target_reduction", "strategy.learning_rate", "strategy.kd_weight",
                     "strategy.iterative_steps"}
    with pytest.raises(ConfigurationError, match="did you mean importance"):
        Strategy.from_dict({"importanse": "l1"})
    with pytest.raises(ConfigurationError, match="exactly one"):
        Strategy(target_reduction=0.5, target_budget=1e9)
    with pytest.raises(ConfigurationError, match="needs prune_num_heads"):
        Strategy(head_pruning_ratio=0.3)


def test_pickle_round_trip():  # Ray sends strategies between processes
    s = Strategy(group_multipliers={"mlp": 1.5, "attention": 0.5}, kind_max_pruning={"mlp": 0.6}, ignored_layers=["x"])
    again = pickle.loads(pickle.dumps(s))
    assert again == s and hash(again) == hash(s) and again.to_json() == s.to_json()
    with pytest.raises(TypeError, match="read-only"):
        again.group_multipliers["mlp"] = 2.0


def test_any_registered_criterion_is_accepted_and_prunes():
    IMPORTANCE_REGISTRY.add("max_magnitude", lambda: tp.importance.GroupMagnitudeImportance(p=1, group_reduction="max"))
    try:
        strategy = Strategy(importance="max_magnitude", target_reduction=0.4)
        cfg = load_config_dict({"strategy_defaults": {"importance": "max_magnitude"}})
        assert cfg.strategy_defaults.importance == "max_magnitude"
        torch.manual_seed(0)
        result = apply_strategy(TinyResNet(), strategy, torch.randn(1, 1, 16, 16))
        assert abs(result.error) <= 0.005
    finally:
        IMPORTANCE_REGISTRY.remove("max_magnitude")
    with pytest.raises(ConfigurationError, match=r"strategy.importance: must be one of l1, l2, .*, random \(got 'max"):
        Strategy(importance="max_magnitude")
