"""``${VAR}`` / ``${VAR:-default}`` substitution, typing of the result, and missing variables."""

from __future__ import annotations

import pytest

from multi_agent_pruning.config import load_config, load_config_dict
from multi_agent_pruning.exceptions import ConfigurationError


def test_variables_and_defaults(write_yaml, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATA_ROOT", "/mnt/data")
    monkeypatch.setenv("EMPTY_VAR", "")
    monkeypatch.delenv("UNSET_VAR", raising=False)
    path = write_yaml("env.yaml", """
        dataset:
          path: ${DATA_ROOT}/imagenet
        experiment:
          output_dir: ${UNSET_VAR:-runs/default}
          description: ${EMPTY_VAR:-fallback}
        model:
          name: ${DATA_ROOT:-unused}
    """)
    cfg = load_config(path)
    assert cfg.dataset.path == "/mnt/data/imagenet"
    assert cfg.experiment.output_dir == "runs/default"
    assert cfg.experiment.description == "fallback"  # empty counts as unset, as in the shell
    assert cfg.model.name == "/mnt/data"


def test_whole_value_takes_the_type_of_the_field(write_yaml, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIALS", "5")
    monkeypatch.setenv("AMP", "false")
    monkeypatch.setenv("LR", "2.5e-4")
    monkeypatch.setenv("RUN", "123")
    monkeypatch.setenv("METRICS", "[a, b]")
    path = write_yaml("typed.yaml", """
        search: {trials: "${TRIALS}"}
        finetune: {amp: "${AMP}", lr: "${LR}"}
        experiment: {name: "${RUN}"}
        model: {checkpoint: "${NO_CHECKPOINT:-}"}
        evaluation: {custom_metrics: "${METRICS}"}
    """)
    cfg = load_config(path)
    assert cfg.search.trials == 5 and isinstance(cfg.search.trials, int)
    assert cfg.finetune.amp is False
    assert cfg.finetune.lr == 2.5e-4
    assert cfg.experiment.name == "123"  # a string field keeps the text
    assert cfg.model.checkpoint is None  # empty whole value in an optional field is null
    assert cfg.evaluation.custom_metrics == ("a", "b")


def test_dollar_dollar_is_a_literal(write_yaml) -> None:
    path = write_yaml("lit.yaml", "experiment: {description: 'costs $${PRICE}'}\n")
    assert load_config(path).experiment.description == "costs ${PRICE}"


def test_missing_variable_names_variable_and_key_path(write_yaml, monkeypatch) -> None:
    monkeypatch.delenv("MAPRUNER_TEST_MISSING", raising=False)
    path = write_yaml("missing.yaml", "datasets:\n  imagenet:\n    path: ${MAPRUNER_TEST_MISSING}\n")
    with pytest.raises(ConfigurationError) as info:
        load_config(path)
    (issue,) = info.value.issues
    assert issue.path == "datasets.imagenet.path"
    assert "MAPRUNER_TEST_MISSING" in issue.rule
    assert issue.value == "${MAPRUNER_TEST_MISSING}"


def test_missing_variable_overridden_by_child_is_not_an_error(write_yaml, monkeypatch) -> None:
    monkeypatch.delenv("MAPRUNER_TEST_MISSING", raising=False)
    write_yaml("base.yaml", "dataset: {path: '${MAPRUNER_TEST_MISSING}'}\n")
    child = write_yaml("child.yaml", "extends: base.yaml\ndataset: {path: /data}\n")
    assert load_config(child).dataset.path == "/data"


def test_missing_variable_replaced_by_override(write_yaml, monkeypatch) -> None:
    monkeypatch.delenv("MAPRUNER_TEST_MISSING", raising=False)
    path = write_yaml("a.yaml", "dataset: {path: '${MAPRUNER_TEST_MISSING}'}\n")
    assert load_config(path, ["dataset.path=/x"]).dataset.path == "/x"


def test_bad_substituted_value_is_reported_at_its_path(write_yaml, monkeypatch) -> None:
    monkeypatch.setenv("TRIALS", "many")
    path = write_yaml("bad.yaml", "search: {trials: '${TRIALS}'}\n")
    with pytest.raises(ConfigurationError) as info:
        load_config(path)
    (issue,) = info.value.issues
    assert (issue.path, issue.rule, issue.value) == ("search.trials", "must be an integer", "many")


def test_explicit_environ_mapping() -> None:
    cfg = load_config_dict({"dataset": {"path": "${ROOT}"}}, environ={"ROOT": "/r"})
    assert cfg.dataset.path == "/r"
