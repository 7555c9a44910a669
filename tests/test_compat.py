"""compat: the private APIs of torch-pruning and Ray this package uses exist in the installed
versions (this test fails when an upgrade removes one), and a missing one is one clear error."""

from __future__ import annotations

import logging

import pytest
import ray
import torch
import torch_pruning as tp

from multi_agent_pruning import compat
from multi_agent_pruning.exceptions import CompatibilityError, MultiAgentPruningError
from multi_agent_pruning.testing.tiny import TinyResNet


def test_every_private_api_exists_in_the_installed_packages():
    assert compat.missing_attributes(compat.TORCH_PRUNING_PRIVATE + compat.RAY_PRIVATE + compat.RAY_OPTIONAL) == []


def test_installed_versions_are_the_tested_ones():
    assert tp.__version__ in compat.TESTED_VERSIONS["torch_pruning"]
    assert ray.__version__ in compat.TESTED_VERSIONS["ray"]
    assert compat.check_torch_pruning() == tp.__version__ and compat.check_ray() == ray.__version__


def test_a_real_pruner_has_the_state_the_planner_uses():
    model = TinyResNet().eval()
    pruner = tp.pruner.BasePruner(model, torch.randn(1, 1, 8, 8), importance=tp.importance.GroupMagnitudeImportance(),
                                  pruning_ratio=0.5)
    assert compat.check_torch_pruning(pruner) == tp.__version__


def test_a_missing_private_api_is_one_error_naming_it_and_the_version(monkeypatch):
    monkeypatch.setattr(compat, "TORCH_PRUNING_PRIVATE",
                        (*compat.TORCH_PRUNING_PRIVATE, "torch_pruning.pruner:BasePruner._gone_in_2_0"))
    with pytest.raises(CompatibilityError) as caught:
        compat.check_torch_pruning()
    message = str(caught.value)
    assert f"torch_pruning {tp.__version__} lacks" in message and "BasePruner._gone_in_2_0" in message
    assert "BasePruner._prune," not in message  # only what is missing
    assert isinstance(caught.value, MultiAgentPruningError)


def test_a_pruner_without_its_state_is_refused():
    with pytest.raises(CompatibilityError, match="the pruner has no .*num_heads"):
        compat.check_torch_pruning(object())


def test_a_missing_optional_ray_api_only_warns(monkeypatch, caplog):
    monkeypatch.setattr(compat, "RAY_OPTIONAL", ("ray.tune.execution.class_cache:NOT_THERE",))
    monkeypatch.setattr(compat, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="multi_agent_pruning.compat"):
        assert compat.check_ray() == ray.__version__
    assert "has no ray.tune.execution.class_cache:NOT_THERE" in caplog.text
