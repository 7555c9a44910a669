"""``key.path=value`` overrides, on load and on an existing configuration."""

from __future__ import annotations

import pytest

from multi_agent_pruning.config import apply_overrides, load_config, load_config_dict
from multi_agent_pruning.config._overrides import parse_override_value
from multi_agent_pruning.exceptions import ConfigurationError


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3", 3),
        ("2.61e9", 2.61e9),
        ("true", True),
        ("null", None),
        ("", None),
        ("[a, b]", ["a", "b"]),
        ("{x: 1}", {"x": 1}),
        ("a: b", "a: b"),
        ("deit_small", "deit_small"),
        ("2024-01-01", "2024-01-01"),
        ("[unclosed", "[unclosed"),
    ],
)
def test_values_are_parsed_as_yaml(text: str, value) -> None:
    assert parse_override_value(text) == value


def test_overrides_apply_after_merge(write_yaml) -> None:
    path = write_yaml("a.yaml", "search: {trials: 10, max_iterations: 3}\n")
    cfg = load_config(path, ["search.trials=3", "evaluation.custom_metrics=[m1, m2]", "model.checkpoint="])
    assert (cfg.search.trials, cfg.search.max_iterations) == (3, 3)
    assert cfg.evaluation.custom_metrics == ("m1", "m2")
    assert cfg.model.checkpoint is None


def test_mapping_overrides_keep_python_values() -> None:
    cfg = load_config_dict({}, overrides={"search.trials": 2, "experiment.name": "007"})
    assert (cfg.search.trials, cfg.experiment.name) == (2, "007")


def test_budget_override_replaces_reduction(write_yaml) -> None:
    path = write_yaml("a.yaml", "target: {reduction: 0.3}\n")
    target = load_config(path, ["target.budget=2e9"]).target
    assert (target.reduction, target.budget) == (None, 2e9)


def test_unknown_override_key_gets_did_you_mean() -> None:
    with pytest.raises(ConfigurationError) as info:
        load_config_dict({}, overrides=["search.trails=3"])
    (issue,) = info.value.issues
    assert issue.path == "search.trails"
    assert issue.rule == "unknown key; did you mean 'trials'? (from an override)"


def test_malformed_overrides_are_collected_with_other_problems() -> None:
    with pytest.raises(ConfigurationError) as info:
        load_config_dict({"search": {"trials": 0}}, overrides=["no_equals_sign", "extends=x.yaml"])
    rules = {issue.path: issue.rule for issue in info.value.issues}
    assert rules == {
        "no_equals_sign": "override must look like key.path=value",
        "extends": "'extends' cannot be overridden; load another file",
        "search.trials": "must be >= 1",
    }


def test_openai_alias_in_overrides() -> None:
    assert load_config_dict({}, overrides=["openai.model=local-model"]).llm.model == "local-model"


def test_apply_overrides_returns_a_new_validated_config() -> None:
    cfg = load_config_dict({"search": {"trials": 10}})
    new = apply_overrides(cfg, ["search.trials=4", "target.budget=1e6"])
    assert (new.search.trials, new.target.budget, new.target.reduction) == (4, 1e6, None)
    assert (cfg.search.trials, cfg.target.reduction) == (10, 0.5)
    with pytest.raises(ConfigurationError, match="search.trials: must be >= 1"):
        apply_overrides(cfg, {"search.trials": 0})


def test_apply_overrides_keeps_the_secret() -> None:
    cfg = load_config_dict({"llm": {"api_key": "sk-keep-me"}})
    assert apply_overrides(cfg, ["llm.model=x"]).llm_api_key() == "sk-keep-me"
