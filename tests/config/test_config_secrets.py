"""The API key is usable but never serialised, logged or shown in errors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from multi_agent_pruning.config import config_to_dict, load_config, load_config_dict, redact_urls
from multi_agent_pruning.exceptions import ConfigurationError

ENV_KEY = "sk-env-0123456789"
FILE_KEY = "sk-file-9876543210"
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


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


# -- keys in the wrong place: api_key_env holding the key, credentials inside URLs --------------

PASTED_KEYS = [
    "sk-proj-Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56",  # OpenAI
    "sk-ant-api03-Zy98Xw76Vu54",  # Anthropic (also invalid as a name: '-')
    "gsk_Ab12Cd34Ef56Gh78Ij90Kl12",  # Groq: a valid identifier, but a key
    "hf_AbCdEfGhIjKlMnOpQrStUvWxYz012345",  # Hugging Face: a valid identifier too
    "Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56Qr78",  # no prefix: 36 mixed-case letters and digits
]


@pytest.mark.parametrize("pasted", PASTED_KEYS)
def test_api_key_env_holding_the_key_is_refused_without_showing_it(pasted, write_yaml, caplog) -> None:
    path = write_yaml("pasted.yaml", f"llm:\n  api_key_env: {pasted}\n")
    with caplog.at_level(logging.DEBUG), pytest.raises(ConfigurationError) as info:
        load_config(path)
    assert [(i.path, i.value) for i in info.value.issues] == [("llm.api_key_env", "**********")]
    assert info.value.issues[0].rule.startswith("must be the name of an environment variable")
    for text in (str(info.value), repr(info.value.issues), caplog.text):
        assert pasted not in text and pasted[4:20] not in text


@pytest.mark.parametrize("bad", ["MY KEY", "1PASSWORD", "OPENAI_API_KEY=x", "${X}-y"])
def test_api_key_env_must_be_a_variable_name(bad) -> None:
    with pytest.raises(ConfigurationError) as info:
        load_config_dict({"llm": {"api_key_env": bad}}, environ={"X": "x"})
    (issue,) = info.value.issues
    assert (issue.path, issue.value) == ("llm.api_key_env", "**********")
    assert issue.rule == ("must be the name of an environment variable (letters, digits and '_', not "
                          "starting with a digit), not the key itself")


@pytest.mark.parametrize(("name", "stored"), [
    ("MY_LLM_KEY", "MY_LLM_KEY"), ("openai_key_2", "openai_key_2"), ("", None), (None, None),
])
def test_api_key_env_names_are_kept(name, stored) -> None:
    cfg = load_config_dict({"llm": {"api_key_env": name}})
    assert cfg.llm.api_key_env == stored
    assert config_to_dict(cfg)["llm"]["api_key_env"] == stored


def test_a_key_pasted_under_a_misspelt_name_is_not_shown() -> None:
    key = PASTED_KEYS[0]
    with pytest.raises(ConfigurationError) as info:
        load_config_dict({"llm": {"apikey": key}, "openai_settings": {"token": key}})
    issues = {issue.path: issue for issue in info.value.issues}
    assert issues["llm.apikey"].rule == "unknown key; did you mean 'api_key'?"
    assert issues["llm.apikey"].value == "**********"
    assert issues["openai_settings"].value == {"token": "**********"}
    assert key not in str(info.value)


@pytest.mark.parametrize(("url", "redacted"), [
    ("https://user:sk-secret-123@llm.example.com/v1", "https://***@llm.example.com/v1"),
    ("https://sk-secret-123@llm.example.com/v1", "https://***@llm.example.com/v1"),
    ("http://127.0.0.1:8000/v1?api_key=sk-secret-123&model=m",
     "http://127.0.0.1:8000/v1?api_key=***&model=m"),
    ("https://h.example/v1?Key=sk-secret-123", "https://h.example/v1?Key=***"),
    ("https://h.example/v1?access_token=sk-secret-123;password=sk-secret-123",
     "https://h.example/v1?access_token=***;password=***"),
    ("https://b.s3.amazonaws.com/d.tar?X-Amz-Credential=AKIA1/x&X-Amz-Signature=sk-secret-123&v=1",
     "https://b.s3.amazonaws.com/d.tar?X-Amz-Credential=***&X-Amz-Signature=***&v=1"),
    ("https://h.example/cb#access_token=sk-secret-123&state=1",
     "https://h.example/cb#access_token=***&state=1"),
    ("ray://admin:sk-secret-123@head.example:10001", "ray://***@head.example:10001"),
    ("see https://u:sk-secret-123@h.example/x and http://ok.example/a@b", "see https://***@h.example/x and "
     "http://ok.example/a@b"),
    ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
    ("https://h.example/models?sort=downloads&page=2", "https://h.example/models?sort=downloads&page=2"),
    ("/data/imagenet", "/data/imagenet"),
    ("someone@example.com", "someone@example.com"),
])
def test_redact_urls(url, redacted) -> None:
    assert redact_urls(url) == redacted


URL_SECRET = "sk-secret-123"


def _config_with_credentials(write_yaml):
    path = write_yaml("urls.yaml", f"""
        llm:
          base_url: https://user:{URL_SECRET}@llm.example.com/v1?api_key={URL_SECRET}&model=m
        ray:
          address: ray://admin:{URL_SECRET}@head.example:10001
        dataset:
          name: imagenet
          path: https://data.example/imagenet.tar?token={URL_SECRET}
        experiment:
          description: mirror at s3://AKIA:{URL_SECRET}@bucket/x
    """)
    return load_config(path)


def test_credentials_in_urls_are_redacted_in_config_to_dict(write_yaml) -> None:
    cfg = _config_with_credentials(write_yaml)
    assert cfg.llm.base_url.startswith(f"https://user:{URL_SECRET}@")  # the client still gets them
    dumped = config_to_dict(cfg)
    assert URL_SECRET not in json.dumps(dumped)
    assert dumped["llm"]["base_url"] == "https://***@llm.example.com/v1?api_key=***&model=m"
    assert dumped["ray"]["address"] == "ray://***@head.example:10001"
    assert dumped["dataset"]["path"] == "https://data.example/imagenet.tar?token=***"
    assert dumped["experiment"]["description"] == "mirror at s3://***@bucket/x"
    assert load_config_dict(dumped).llm.base_url == dumped["llm"]["base_url"]  # still a valid record


def test_credentials_in_urls_are_redacted_in_repr_and_str(write_yaml) -> None:
    cfg = _config_with_credentials(write_yaml)
    for text in (repr(cfg), str(cfg), repr(cfg.llm), str(cfg.ray), repr(cfg.dataset)):
        assert URL_SECRET not in text
    assert "base_url='https://***@llm.example.com/v1?api_key=***&model=m'" in repr(cfg.llm)


def test_credentials_in_urls_are_redacted_in_errors(write_yaml, caplog) -> None:
    path = write_yaml("bad.yaml", f"""
        llm:
          base_urll: https://user:{URL_SECRET}@llm.example.com/v1
        ray:
          address: [ray://admin:{URL_SECRET}@head.example:10001]
        dataset:
          batch_size: https://data.example/x?token={URL_SECRET}
    """)
    with caplog.at_level(logging.DEBUG), pytest.raises(ConfigurationError) as info:
        load_config(path)
    issues = {issue.path: issue.value for issue in info.value.issues}
    assert issues == {"llm.base_urll": "https://***@llm.example.com/v1",
                      "ray.address": ["ray://***@head.example:10001"],
                      "dataset.batch_size": "https://data.example/x?token=***"}
    assert URL_SECRET not in str(info.value) and URL_SECRET not in caplog.text


def test_cli_never_shows_or_writes_a_key_pasted_into_api_key_env(write_yaml, tmp_path, capsys) -> None:
    from multi_agent_pruning.cli import main

    key = PASTED_KEYS[0]
    text = f"extends: {CONFIGS / 'quickstart.yaml'}\nllm:\n  api_key_env: {key}\n"
    path = write_yaml("pasted.yaml", text)
    out = tmp_path / "out"
    for argv in (["validate-config", str(path)], ["prune", "--config", str(path), "--output-dir", str(out)]):
        assert main(argv) == 2
        captured = capsys.readouterr()
        assert key not in captured.err + captured.out
        header = f"mapruner {argv[0]}: error: Invalid configuration {path} (1 problem):"
        assert captured.err.startswith(header), captured.err
        assert "llm.api_key_env: must be the name of an environment variable" in captured.err
    assert not out.exists()
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["pasted.yaml"]
