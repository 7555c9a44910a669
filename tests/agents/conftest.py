"""Fixtures for the agent tests: a scripted OpenAI-compatible server on 127.0.0.1 and clients
of it with tiny timeouts, plus a small strategy-proposal context."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from multi_agent_pruning.agents.llm import LLMClient, LLMSettings
from multi_agent_pruning.core.strategy import Strategy
from support.llm_server import OpenAICompatibleServer

TEST_API_KEY = "sk-test-planted-0123456789abcdef"


@pytest.fixture(autouse=True)
def _no_llm_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's own LLM variables must not reach the client under test."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def llm_api_key() -> str:
    """The key planted in ``llm_settings``; tests check it never leaks."""
    return TEST_API_KEY


@pytest.fixture
def llm_server() -> Iterator[OpenAICompatibleServer]:
    """A started server with an empty script (unscripted requests get HTTP 500)."""
    with OpenAICompatibleServer(model="test-model") as server:
        yield server


@pytest.fixture
def llm_settings(llm_server: OpenAICompatibleServer) -> LLMSettings:
    """Settings pointing at ``llm_server``: 0.5 s timeout, 2 retries (openai's backoff)."""
    return LLMSettings(model="test-model", base_url=llm_server.base_url, api_key=TEST_API_KEY,
                       temperature=0.0, timeout=0.5, max_retries=2)


@pytest.fixture
def make_llm_client(llm_settings: LLMSettings) -> Callable[..., LLMClient]:
    """``make_llm_client(**changes)``: a client of ``llm_settings`` with ``changes`` applied."""

    def make(**changes: Any) -> LLMClient:
        return LLMClient(LLMSettings.from_config(llm_settings, **changes))

    return make


@pytest.fixture
def base_strategy() -> Strategy:
    """The master's starting point; its target and safety caps must survive any reply."""
    return Strategy(importance="taylor", target_kind="macs", target_reduction=0.5, max_layer_pruning=0.8,
                    kind_max_pruning={"mlp": 0.6}, min_channels=2)


@pytest.fixture
def proposal_kwargs(base_strategy: Strategy) -> dict[str, Any]:
    """Keyword arguments of ``propose_with_llm`` for a small ViT profile."""
    context = {
        "model_name": "deit_tiny",
        "architecture_type": "vision_transformer",
        "groups": {"attention": {"macs_share": 0.35, "sensitivity": 0.12},
                   "mlp": {"macs_share": 0.61, "sensitivity": 0.05}},
        "target": {"kind": "macs", "reduction": 0.5},
        "safety_limits": {"max_layer_pruning": 0.9, "head_pruning_ratio": 0.5},
        "history": [{"strategy": {"importance": "l2", "max_layer_pruning": 0.7},
                     "result": {"status": "ok", "top1": 0.713, "macs_reduction": 0.497}}],
        "batch_size": 2,
        "base_strategy": base_strategy.to_dict(),
    }
    return {"context": context, "base": base_strategy, "known_kinds": {"attention", "mlp"},
            "limits": {"max_layer_pruning": 0.9, "head_pruning_ratio": 0.5}, "batch_size": 2}
