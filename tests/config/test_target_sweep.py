"""Targets as a list: ``target.sweep`` in YAML, ``--target-macs 0.7,0.5``, ``target_ratio=[...]``."""

from __future__ import annotations

import pytest
import torch

from multi_agent_pruning.config import load_config_dict
from multi_agent_pruning.exceptions import ConfigurationError, InfeasibleTargetError
from multi_agent_pruning.models import create_model
from multi_agent_pruning.orchestrator.prepare import base_strategies, base_strategy, check_target
from multi_agent_pruning.orchestrator.targets import target_overrides
from multi_agent_pruning.results import TargetKey, row_target, target_key


def test_a_sweep_is_stored_easiest_first_and_gives_one_point_per_target():
    cfg = load_config_dict({"target": {"sweep": [0.7, 0.3, 0.5]}})
    assert cfg.target.sweep == (0.3, 0.5, 0.7) and cfg.target.reduction is None and cfg.target.is_sweep
    assert [(p.reduction, p.budget, p.is_sweep) for p in cfg.target.points()] == [
        (0.3, None, False), (0.5, None, False), (0.7, None, False)]
    assert cfg.target.describe() == "sweep: remove 30%, 50%, 70% of MACs"
    counts = load_config_dict({"target": {"sweep": ["1.2G", "2.3G"]}}).target
    assert counts.sweep == (2.3e9, 1.2e9)  # counts kept: the largest (easiest) first
    assert [p.budget for p in counts.points()] == [2.3e9, 1.2e9]
    assert counts.describe() == "sweep: keep 2.3e+09, 1.2e+09 MACs"
    # One target: as before, no sweep.
    single = load_config_dict({}).target
    assert single.points() == [single] and single.reduction == 0.5 and not single.is_sweep


@pytest.mark.parametrize(("target", "message"), [
    ({"sweep": [0.5]}, "needs at least two targets"),
    ({"sweep": [0.5, 0.5]}, "targets must be distinct"),
    ({"sweep": [0.5, 2e9]}, "not a mix"),
    ({"sweep": [0.0, 0.5]}, "every target must be > 0"),
    ({"sweep": [0.3, "lots"]}, "target.sweep"),
    ({"sweep": [0.3, 0.6], "reduction": 0.5}, "set either sweep or one of reduction and budget"),
])
def test_a_bad_sweep_is_one_clear_error(target, message):
    with pytest.raises(ConfigurationError, match=message):
        load_config_dict({"target": target})


@pytest.mark.parametrize(("kwargs", "sweep"), [
    ({"target_macs": "0.7,0.5,0.3,0.2"}, (0.3, 0.5, 0.7, 0.8)),  # kept fractions -> removed
    ({"target_macs": [0.7, 0.5]}, (0.3, 0.5)),
    ({"target_ratio": [0.3, 0.5, 0.7]}, (0.3, 0.5, 0.7)),
    ({"target_ratio": "0.3, 0.7"}, (0.3, 0.7)),
    ({"target_macs": "2.3G,1.2G"}, (2.3e9, 1.2e9)),
])
def test_target_lists_become_a_sweep(kwargs, sweep):
    cfg = load_config_dict({}, overrides=target_overrides(**kwargs))
    assert cfg.target.sweep == pytest.approx(sweep) and cfg.target.reduction is None and cfg.target.budget is None


def test_a_single_target_override_replaces_a_configured_sweep():
    cfg = load_config_dict({"target": {"sweep": [0.3, 0.5]}}, overrides=target_overrides(target_ratio=0.6))
    assert (cfg.target.reduction, cfg.target.sweep) == (0.6, None)
    cfg = load_config_dict({"target": {"sweep": [0.3, 0.5]}}, overrides=target_overrides(target_macs="2G"))
    assert (cfg.target.budget, cfg.target.sweep) == (2e9, None)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"target_ratio": "0.3,1.5"}, "must be in \\(0, 1\\)"),
    ({"target_macs": "0.5,2G"}, "not a mix"),
    ({"target_macs": "0.5,lots"}, "must be a number"),
    ({"target_macs": ","}, "at least one target"),
])
def test_bad_target_lists_name_the_argument(kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        target_overrides(**kwargs)


def test_base_strategies_carry_each_target():
    cfg = load_config_dict({"target": {"sweep": [0.3, 0.5]}})
    assert [(s.target_reduction, s.target_budget) for s in base_strategies(cfg)] == [(0.3, None), (0.5, None)]
    assert base_strategy(cfg, cfg.target.points()[1]).target_reduction == 0.5
    with pytest.raises(ValueError, match="base_strategies"):
        base_strategy(cfg)


def test_an_impossible_target_of_a_sweep_is_named_before_any_trial():
    from types import SimpleNamespace

    model = create_model("compact_cnn")
    context = SimpleNamespace(model=model, input_shape=(1, 1, 16, 16))
    cfg = load_config_dict({"model": {"name": "compact_cnn"}, "target": {"sweep": [0.5, 0.85, 0.9999]}})
    with pytest.raises(InfeasibleTargetError) as caught:
        check_target(cfg, context)
    text = str(caught.value)
    # 0.85 is beyond max_overall_pruning (0.8 by default); 0.9999 below what any pruning keeps.
    assert "target.sweep[1]" in text and "max_overall_pruning=0.8" in text
    assert "target.sweep[2]" in text and "must keep at least" in text and "target.sweep[0]" not in text
    raised = load_config_dict({"model": {"name": "compact_cnn"}, "target": {"sweep": [0.5, 0.85]},
                               "safety_limits": {"max_overall_pruning": 0.9}})
    check_target(raised, context)  # within the raised limit: fine
    assert torch.is_tensor(next(model.parameters()))


def test_rows_group_by_their_stated_target():
    assert target_key("macs", 0.5, 6.1e6) == TargetKey("macs", 0.5, None)  # the reduction wins
    assert target_key("macs", None, 2.3e9) == TargetKey("macs", None, 2.3e9)
    assert target_key("macs", None, None) is None and target_key(None, 0.5, None) is None
    assert row_target({"target_kind": "params", "target_reduction": 0.3, "target_value": None}).label == \
        "remove 30% of params"
    assert TargetKey("macs", 0.875).slug == "macs-remove-87.5pct"
    assert TargetKey("macs", None, 2.3e9).label == "keep 2.3e+09 MACs"


def test_a_child_config_sweep_replaces_the_parents_single_target(tmp_path):
    from multi_agent_pruning.config import load_config

    parent = tmp_path / "parent.yaml"
    parent.write_text("target:\n  reduction: 0.4\n")
    (tmp_path / "child.yaml").write_text("extends: parent.yaml\ntarget:\n  sweep: [0.3, 0.6]\n")
    (tmp_path / "back.yaml").write_text("extends: child.yaml\ntarget:\n  budget: 2.0e6\n")
    assert load_config(tmp_path / "child.yaml").target.sweep == (0.3, 0.6)
    back = load_config(tmp_path / "back.yaml").target
    assert (back.budget, back.sweep, back.reduction) == (2e6, None, None)
    # An override of one target replaces the file's sweep.
    assert load_config(tmp_path / "child.yaml", overrides=["target.reduction=0.5"]).target.sweep is None
