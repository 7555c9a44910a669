"""The API key is usable but never serialised, logged or shown in errors."""

from __future__ import annotations

import json
import logging

import pytest

from multi_agent_pruning.config import config_to_dict, load_config, load_config_dict
from multi_agent_pruning.exceptions import ConfigurationError

ENV_KEY = "sk-env-0123456789"
FILE_KEY = "sk-file-9876543210"


def test_config_to_dict_never_contains_the_key(write_yaml, monkeypatch, caplog) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", ENV_KEY)
    path = write_yaml("secret.yaml", f"openai:\n  api_key: {FILE_KEY}\n")
    with caplog.at_level(logging.WARNING):
        cfg = load_config(path)
    assert cfg.llm_api_key() == FILE_KEY  # an explicit key wins over the environment
    dumped = json.dumps(config_to_dict(cfg))
    for secret in (ENV_KEY, FILE_KEY):
        assert secret not in dumped
        assert secret not in repr(cfg) and secret not in str(cfg)
        assert secret not in caplog.text
    assert "api_key" not in config_to_dict(cfg)["llm"]
    assert "plain text" in caplog.text


def test_key_from_the_named_environment_variable(monkeypatch) -> None:
    monkeypatch.setenv("MY_LLM_KEY", ENV_KEY)
    cfg = load_config_dict({"llm": {"api_key_env": "MY_LLM_KEY"}})
    assert cfg.llm_api_key() == ENV_KEY
    assert ENV_KEY not in json.dumps(config_to_dict(cfg))


def test_substituted_key_is_secret_too(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", ENV_KEY)
    cfg = load_config_dict({"openai": {"api_key": "${OPENAI_API_KEY}"}})
    assert cfg.llm_api_key() == ENV_KEY
    assert ENV_KEY not in json.dumps(config_to_dict(cfg))


def test_round_trip_without_the_key() -> None:
    cfg = load_config_dict({"llm": {"api_key": FILE_KEY}, "search": {"trials": 3}})
    again = load_config_dict(config_to_dict(cfg))
    assert again.llm.api_key is None
    assert again.model_copy(update={"llm": cfg.llm}) == cfg


def test_invalid_key_value_is_masked_in_errors() -> None:
    with pytest.raises(ConfigurationError) as info:
        load_config_dict({"llm": {"api_key": [FILE_KEY]}})
    assert FILE_KEY not in str(info.value)
    assert info.value.issues[0].path == "llm.api_key"


@pytest.mark.parametrize(
    ("policy", "llm", "env_key", "enabled"),
    [
        ("auto", {}, None, False),
        ("auto", {}, ENV_KEY, True),
        ("auto", {"base_url": "http://127.0.0.1:8000/v1"}, None, True),
        ("builtin", {}, ENV_KEY, False),
        ("llm", {}, None, True),
    ],
)
def test_llm_enabled(policy, llm, env_key, enabled, monkeypatch) -> None:
    if env_key:
        monkeypatch.setenv("OPENAI_API_KEY", env_key)
    cfg = load_config_dict({"search": {"policy": policy}, "llm": llm})
    assert cfg.llm_enabled() is enabled
