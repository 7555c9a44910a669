"""Files: ``extends`` chains, deep merging, cycles and YAML errors with file and line."""

from __future__ import annotations

import pytest

from multi_agent_pruning.config import load_config, load_config_dict
from multi_agent_pruning.exceptions import ConfigurationError


def test_extends_deep_merges_with_the_child_winning(write_yaml) -> None:
    write_yaml("base.yaml", """
        experiment: {name: base, seed: 1}
        search: {trials: 10, max_iterations: 3}
        evaluation: {custom_metrics: [a, b]}
    """)
    child = write_yaml("child.yaml", """
        extends: base.yaml
        experiment: {name: child}
        search: {trials: 4}
        evaluation: {custom_metrics: [c]}
    """)
    cfg = load_config(child)
    assert (cfg.experiment.name, cfg.experiment.seed) == ("child", 1)
    assert (cfg.search.trials, cfg.search.max_iterations) == (4, 3)
    assert cfg.evaluation.custom_metrics == ("c",)  # lists are replaced, not concatenated


def test_extends_list_and_relative_paths(write_yaml) -> None:
    write_yaml("common/a.yaml", "search: {trials: 5, max_iterations: 5}\n")
    write_yaml("common/b.yaml", "search: {trials: 6}\n")
    child = write_yaml("exp/run.yaml", "extends: [../common/a.yaml, ../common/b.yaml]\n")
    cfg = load_config(child)
    assert (cfg.search.trials, cfg.search.max_iterations) == (6, 5)  # later parents win


def test_three_level_chain(write_yaml) -> None:
    write_yaml("a.yaml", "finetune: {lr: 0.1, epochs: 2}\n")
    write_yaml("b.yaml", "extends: a.yaml\nfinetune: {lr: 0.2}\n")
    c = write_yaml("c.yaml", "extends: b.yaml\nfinetune: {epochs: 3}\n")
    cfg = load_config(c)
    assert (cfg.finetune.lr, cfg.finetune.epochs) == (0.2, 3.0)


def test_cycle_is_detected(write_yaml) -> None:
    write_yaml("a.yaml", "extends: b.yaml\n")
    b = write_yaml("b.yaml", "extends: a.yaml\n")
    with pytest.raises(ConfigurationError, match="Circular 'extends'") as info:
        load_config(b)
    message = str(info.value)
    assert "a.yaml" in message and message.count("b.yaml") == 2


def test_self_extension_is_a_cycle(write_yaml) -> None:
    path = write_yaml("self.yaml", "extends: self.yaml\n")
    with pytest.raises(ConfigurationError, match="Circular"):
        load_config(path)


def test_missing_parent_names_both_files(write_yaml) -> None:
    path = write_yaml("child.yaml", "extends: nowhere.yaml\n")
    with pytest.raises(ConfigurationError) as info:
        load_config(path)
    assert "child.yaml" in str(info.value) and "nowhere.yaml" in str(info.value)


def test_missing_file() -> None:
    with pytest.raises(ConfigurationError, match="not found: /no/such/config.yaml"):
        load_config("/no/such/config.yaml")


def test_yaml_syntax_error_names_file_and_line(write_yaml) -> None:
    path = write_yaml("broken.yaml", """
        search:
          trials: 3
          max_iterations: [1, 2
        finetune: {}
    """)
    with pytest.raises(ConfigurationError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert "line 4" in message


def test_syntax_error_in_a_parent_names_the_parent(write_yaml) -> None:
    parent = write_yaml("parent.yaml", "search:\n  trials: 3\n bad: indent\n")
    child = write_yaml("child.yaml", "extends: parent.yaml\n")
    with pytest.raises(ConfigurationError) as info:
        load_config(child)
    assert str(parent) in str(info.value) and "line 3" in str(info.value)


def test_duplicate_keys_are_rejected_with_line(write_yaml) -> None:
    path = write_yaml("dup.yaml", "search:\n  trials: 3\n  trials: 4\n")
    with pytest.raises(ConfigurationError, match=r"line 3.*duplicate key 'trials'"):
        load_config(path)


def test_top_level_must_be_a_mapping(write_yaml) -> None:
    path = write_yaml("list.yaml", "- a\n- b\n")
    with pytest.raises(ConfigurationError, match="must be a mapping of sections, got list"):
        load_config(path)


def test_empty_file_gives_defaults(write_yaml) -> None:
    cfg = load_config(write_yaml("empty.yaml", ""))
    assert cfg.search.trials == 16 and cfg.target.reduction == 0.5


def test_child_budget_replaces_parent_reduction(write_yaml) -> None:
    write_yaml("base.yaml", "target: {kind: macs, reduction: 0.5}\n")
    child = write_yaml("child.yaml", "extends: base.yaml\ntarget: {budget: 2.61e9}\n")
    cfg = load_config(child)
    assert (cfg.target.kind, cfg.target.reduction, cfg.target.budget) == ("macs", None, 2.61e9)


def test_dict_extends_resolves_from_the_working_directory(write_yaml, monkeypatch, tmp_path) -> None:
    write_yaml("base.yaml", "search: {trials: 7}\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_config_dict({"extends": "base.yaml", "search": {"max_iterations": 2}})
    assert (cfg.search.trials, cfg.search.max_iterations) == (7, 2)
