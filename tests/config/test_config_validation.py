"""Validation: every problem in one error, did-you-mean for unknown keys, section rules."""

from __future__ import annotations

import pydantic
import pytest

from multi_agent_pruning.config import ExperimentConfig, config_to_dict, load_config, load_config_dict
from multi_agent_pruning.exceptions import ConfigIssue, ConfigurationError


def _issues(data: dict) -> dict[str, ConfigIssue]:
    with pytest.raises(ConfigurationError) as info:
        load_config_dict(data)
    return {issue.path: issue for issue in info.value.issues}


def test_bad_value_unknown_key_and_missing_variable_in_one_error(write_yaml, monkeypatch) -> None:
    monkeypatch.delenv("MAPRUNER_TEST_UNSET", raising=False)
    path = write_yaml("all.yaml", """
        search:
          trials: 0
        serach:
          trials: 3
        dataset:
          path: ${MAPRUNER_TEST_UNSET}
    """)
    with pytest.raises(ConfigurationError) as info:
        load_config(path)
    issues = {issue.path: issue for issue in info.value.issues}
    assert len(info.value.issues) >= 3
    assert issues["search.trials"] == ConfigIssue("search.trials", "must be >= 1", 0)
    assert "did you mean 'search'?" in issues["serach"].rule
    assert "MAPRUNER_TEST_UNSET" in issues["dataset.path"].rule
    message = str(info.value)
    assert f"Invalid configuration {path} (3 problems)" in message
    assert "search.trials: must be >= 1 (got 0)" in message


def test_unknown_nested_key_suggests_the_field() -> None:
    issues = _issues({"search": {"trails": 4}, "datasets": {"imagenet": {"bath_size": 8}}})
    assert issues["search.trails"].rule == "unknown key; did you mean 'trials'?"
    assert issues["search.trails"].value == 4
    assert issues["datasets.imagenet.bath_size"].rule == "unknown key; did you mean 'batch_size'?"


def test_unknown_key_without_a_close_name_lists_the_known_ones() -> None:
    issues = _issues({"ray": {"zzzz": 1}})
    assert issues["ray.zzzz"].rule.startswith("unknown key; known keys: address, dashboard_host")


@pytest.mark.parametrize(
    ("data", "path", "rule"),
    [
        ({"target": {"kind": "flops"}}, "target.kind", "must be one of 'macs' or 'params'"),
        ({"target": {"reduction": 1.0}}, "target.reduction", "must be < 1.0"),
        ({"target": {"budget": 0}}, "target.budget", "must be > 0.0"),
        ({"target": {"tolerance": 0.5}}, "target.tolerance", "must be <= 0.1"),
        ({"finetune": {"steps": 2.5}}, "finetune.steps", "must be an integer"),
        ({"finetune": {"kd_weight": 1.5}}, "finetune.kd_weight", "must be <= 1.0"),
        ({"search": {"trials": True}}, "search.trials", "must be an integer, not true/false"),
        ({"search": {"reuse_actors": "maybe"}}, "search.reuse_actors", "must be true or false"),
        ({"search": 5}, "search", "must be a mapping of keys"),
        ({"dataset": {"batch_size": 0}}, "dataset.batch_size", "must be >= 1"),
        ({"safety_limits": {"max_mlp_pruning": 1.2}}, "safety_limits.max_mlp_pruning", "must be <= 1.0"),
        ({"agents": {"profiling_agent": {"sensitivity_fraction": 0}}},
         "agents.profiling_agent.sensitivity_fraction", "must be > 0.0"),
        ({"hardware": {"gpu": {"memory_limit": "lots"}}}, "hardware.gpu.memory_limit",
         'must be a size such as "40GB", "512MiB" or "1.5TB"'),
        ({"experiment": {"name": "../escape"}}, "experiment.name",
         "must be a directory name made of letters, digits, '.', '_', '-'"),
        ({"hardware": {"device": "cpu", "gpus_per_trial": 1}}, "hardware.gpus_per_trial",
         "must be 0 when hardware.device is 'cpu'"),
        ({"llm": {"replay": True}}, "llm.cache_dir", "must be set when llm.replay is true"),
    ],
)
def test_rules_name_path_and_rule(data: dict, path: str, rule: str) -> None:
    issues = _issues(data)
    assert list(issues) == [path]
    assert issues[path].rule == rule


def test_target_defaults_to_half_of_the_macs() -> None:
    target = load_config_dict({}).target
    assert (target.kind, target.reduction, target.budget) == ("macs", 0.5, None)
    budget_only = load_config_dict({"target": {"kind": "params", "budget": 5e6}}).target
    assert (budget_only.reduction, budget_only.budget) == (None, 5e6)
    assert budget_only.describe() == "keep 5e+06 params"


def test_target_reduction_and_budget_together_is_an_error() -> None:
    issues = _issues({"target": {"reduction": 0.4, "budget": 1e9}})
    assert issues["target"].rule == "set exactly one of reduction and budget"
    assert issues["target"].value == {"reduction": 0.4, "budget": 1e9}


def test_config_is_frozen() -> None:
    cfg = load_config_dict({})
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        cfg.search.trials = 3  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        cfg.search = cfg.search  # type: ignore[misc]
    assert cfg.search.trials == 16


def test_openai_is_an_alias_of_llm() -> None:
    cfg = load_config_dict({"openai": {"model": "llama3", "base_url": "http://127.0.0.1:8000/v1"}})
    assert (cfg.llm.model, cfg.llm.base_url) == ("llama3", "http://127.0.0.1:8000/v1")
    assert ExperimentConfig.model_validate({"openai": {"model": "m"}}).llm.model == "m"


def test_openai_and_llm_together_is_an_error() -> None:
    issues = _issues({"openai": {"model": "a"}, "llm": {"model": "b"}})
    assert issues["openai"].rule == "is an alias of 'llm'; give only one of them"


def test_datasets_entry_is_merged_for_the_selected_dataset_only() -> None:
    cfg = load_config_dict({
        "dataset": {"name": "imagenet", "path": "/old", "batch_size": 64, "num_workers": 4},
        "safety_limits": {"max_mlp_pruning": 0.5, "min_channels": 8},
        "datasets": {
            "imagenet": {"path": "/new", "safety_limits": {"max_mlp_pruning": 0.15}},
            "cifar10": {"batch_size": 32},
        },
    })
    dataset = cfg.effective_dataset()
    assert (dataset.path, dataset.batch_size, dataset.num_workers) == ("/new", 64, 4)
    limits = cfg.effective_safety_limits()
    assert (limits.max_mlp_pruning, limits.min_channels) == (0.15, 8)
    assert cfg.dataset.path == "/old"  # the section itself is unchanged


def test_dataset_without_entry_uses_top_level_values() -> None:
    cfg = load_config_dict({"datasets": {"cifar10": {"batch_size": 32}}})
    assert cfg.effective_dataset() is cfg.dataset
    assert cfg.effective_safety_limits() is cfg.safety_limits


def test_non_mapping_input() -> None:
    with pytest.raises(ConfigurationError, match="must be a mapping, got list"):
        load_config_dict([1, 2])  # type: ignore[arg-type]


def test_trial_timeout_defaults_to_six_hours() -> None:
    cfg = load_config_dict({})
    assert cfg.search.trial_timeout_s == 21600.0
    assert config_to_dict(cfg)["search"]["trial_timeout_s"] == 21600.0


@pytest.mark.parametrize(("given", "expected"), [(90, 90.0), (0.5, 0.5), ("1e4", 1e4), (None, None)])
def test_trial_timeout_accepts_a_positive_number_or_null(given, expected) -> None:
    assert load_config_dict({"search": {"trial_timeout_s": given}}).search.trial_timeout_s == expected


def test_trial_timeout_from_an_override_and_the_environment() -> None:
    assert load_config_dict({}, overrides=["search.trial_timeout_s=null"]).search.trial_timeout_s is None
    cfg = load_config_dict({"search": {"trial_timeout_s": "${T}"}}, environ={"T": "120"})
    assert cfg.search.trial_timeout_s == 120.0
    cfg = load_config_dict({"search": {"trial_timeout_s": "${T:-}"}}, environ={})
    assert cfg.search.trial_timeout_s is None


@pytest.mark.parametrize(("given", "rule"), [
    (0, "must be > 0.0"),
    (-60, "must be > 0.0"),
    (True, "must be a number, not true/false"),
    ("6h", "must be a number"),
    (float("inf"), "must be a finite number"),
    (float("nan"), "must be a finite number"),
])
def test_trial_timeout_rules(given, rule) -> None:
    issues = _issues({"search": {"trial_timeout_s": given}})
    assert list(issues) == ["search.trial_timeout_s"]
    assert issues["search.trial_timeout_s"].rule == rule


@pytest.mark.parametrize(("data", "path"), [
    ({"llm": {"timeout": float("inf")}}, "llm.timeout"),
    ({"finetune": {"lr": float("nan")}}, "finetune.lr"),
    ({"target": {"budget": float("inf")}}, "target.budget"),
])
def test_infinite_and_nan_numbers_are_refused_everywhere(data, path) -> None:
    issues = _issues(data)
    assert list(issues) == [path]
    assert issues[path].rule == "must be a finite number"
