"""compat: the private APIs of torch-pruning and Ray this package uses exist in the installed
versions (this test fails when an upgrade removes one), a missing or changed one is one clear
error naming it and what relies on it, and the patches select and prune as torch-pruning does."""

from __future__ import annotations

import copy
import importlib
import logging

import pytest
import ray
import torch
import torch_pruning as tp

from multi_agent_pruning import compat
from multi_agent_pruning.core import Strategy, apply_strategy
from multi_agent_pruning.exceptions import CompatibilityError, MultiAgentPruningError
from multi_agent_pruning.testing.tiny import TinyResNet

X = torch.randn(1, 1, 8, 8)


def pruner_of(model, ratio=0.5):
    return tp.pruner.BasePruner(model, X, importance=tp.importance.GroupMagnitudeImportance(), pruning_ratio=ratio,
                                in_channel_groups={}, out_channel_groups={}, num_heads={})


def users(name):
    return [use for use, (_, names) in compat.TORCH_PRUNING_USES.items() if name in names]


def owner_and_attribute(entry):
    module_name, _, path = entry.partition(":")
    *parents, name = path.partition("(")[0].split(".")
    owner = importlib.import_module(module_name)
    for part in parents:
        owner = getattr(owner, part)
    return owner, name


def test_every_private_api_exists_in_the_installed_packages():
    assert compat.missing_attributes(compat.TORCH_PRUNING_PRIVATE + compat.RAY_PRIVATE + compat.RAY_OPTIONAL) == []


def test_installed_versions_are_the_tested_ones():
    assert tp.__version__ in compat.TESTED_VERSIONS["torch_pruning"]
    assert ray.__version__ in compat.TESTED_VERSIONS["ray"]
    assert compat.check_torch_pruning() == tp.__version__ and compat.check_ray() == ray.__version__


def test_every_patch_names_its_version_and_what_it_relies_on():
    for use in ("counted_modules", "install_scopes", "schedule_ratios", "set_num_heads", "dry_step", "capped_step"):
        written_for, names = compat.TORCH_PRUNING_USES[use]
        assert written_for in compat.TESTED_VERSIONS["torch_pruning"] and names, use


def test_a_real_pruner_has_the_state_the_planner_uses():
    assert compat.check_torch_pruning(pruner_of(TinyResNet().eval())) == tp.__version__


@pytest.mark.parametrize("entry", compat.TORCH_PRUNING_PRIVATE)
def test_an_upgrade_removing_a_private_api_is_one_error_naming_it_and_its_users(monkeypatch, entry):
    monkeypatch.delattr(*owner_and_attribute(entry))
    with pytest.raises(CompatibilityError) as caught:
        compat.check_torch_pruning()
    message = str(caught.value)
    assert f"torch_pruning {tp.__version__} lacks what the exact-target planner" in message
    assert f"{entry} (relied on by {', '.join(users(entry))})" in message
    assert isinstance(caught.value, MultiAgentPruningError)


@pytest.mark.parametrize("name", compat.TORCH_PRUNING_PRUNER_STATE)
def test_a_pruner_without_an_attribute_a_patch_uses_is_refused_by_name(monkeypatch, name):
    pruner = pruner_of(TinyResNet().eval())
    monkeypatch.delattr(pruner, name)
    with pytest.raises(CompatibilityError) as caught:
        compat.check_torch_pruning(pruner)
    assert f"the pruner has no {name} (relied on by {', '.join(users('pruner.' + name))}), which" in str(caught.value)


def test_a_changed_signature_is_reported(monkeypatch):
    monkeypatch.setattr(tp.pruner.BasePruner, "step", lambda self: None)  # no ``interactive`` any more
    with pytest.raises(CompatibilityError, match=r"BasePruner\.step\(interactive\) \(relied on by dry_step, capped_step\)"):
        compat.check_torch_pruning()


def test_the_engine_fails_loudly_before_pruning(monkeypatch):
    monkeypatch.delattr(tp.pruner.BasePruner, "_downstream_node_as_root_if_attention")
    with pytest.raises(CompatibilityError, match="_downstream_node_as_root_if_attention .relied on by dry_step"):
        apply_strategy(TinyResNet().eval(), Strategy(importance="l1", target_reduction=0.3), X)


def test_a_missing_private_api_is_one_error_naming_it_and_the_version(monkeypatch):
    monkeypatch.setattr(compat, "TORCH_PRUNING_PRIVATE",
                        (*compat.TORCH_PRUNING_PRIVATE, "torch_pruning.pruner:BasePruner._gone_in_2_0"))
    with pytest.raises(CompatibilityError) as caught:
        compat.check_torch_pruning()
    message = str(caught.value)
    assert f"torch_pruning {tp.__version__} lacks" in message and "BasePruner._gone_in_2_0" in message
    assert "_downstream_node_as_root_if_attention" not in message  # only what is missing


def test_a_pruner_without_its_state_is_refused():
    with pytest.raises(CompatibilityError, match="the pruner has no .*num_heads"):
        compat.check_torch_pruning(object())


def test_dry_step_selects_what_torch_pruning_selects_and_unhooks():
    torch.manual_seed(0)
    model = TinyResNet().eval()
    twin = copy.deepcopy(model)
    names = {m: n for net in (model, twin) for n, m in net.named_modules()}
    ours, theirs = pruner_of(model), pruner_of(twin)
    groups = list(ours.DG.get_all_groups(ignored_layers=ours.ignored_layers, root_module_types=ours.root_module_types))
    selected = compat.dry_step(ours, lambda module, fn, idxs: [int(i) for i in idxs], groups, {})
    expected = [(names[g[0].dep.target.module], g[0].dep.handler.__name__, sorted(g[0].idxs))
                for g in theirs.step(interactive=True)]
    assert selected and [(names[s.module], s.fn.__name__, sorted(s.idxs)) for s in selected] == expected
    assert "get_pruning_group" not in vars(ours.DG) and "_downstream_node_as_root_if_attention" not in vars(ours)


def test_capped_step_with_no_cap_prunes_as_torch_pruning_does():
    torch.manual_seed(0)
    model, reference = TinyResNet().eval(), TinyResNet().eval()
    reference.load_state_dict(model.state_dict())
    compat.capped_step(pruner_of(model), lambda module, fn, idxs: idxs)
    pruner_of(reference).step()
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in model.state_dict().items())


def test_a_missing_optional_ray_api_only_warns(monkeypatch, caplog):
    monkeypatch.setattr(compat, "RAY_OPTIONAL", ("ray.tune.execution.class_cache:NOT_THERE",))
    monkeypatch.setattr(compat, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="multi_agent_pruning.compat"):
        assert compat.check_ray() == ray.__version__
    assert "has no ray.tune.execution.class_cache:NOT_THERE" in caplog.text
