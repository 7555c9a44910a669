"""Helpers for testing code built on multi_agent_pruning (shipped, like ``optuna.testing``).

:mod:`multi_agent_pruning.testing.llm_server` holds a scripted OpenAI-compatible HTTP server;
:mod:`multi_agent_pruning.testing.ray_workers` finds the idle workers Ray prestarts.
"""

from multi_agent_pruning.testing.llm_server import (
    Behaviour,
    OpenAICompatibleServer,
    RecordedRequest,
    close_connection,
    delay,
    empty,
    reply,
    reply_json,
    status,
    unused_port,
)

__all__ = [
    "Behaviour",
    "OpenAICompatibleServer",
    "RecordedRequest",
    "close_connection",
    "delay",
    "empty",
    "reply",
    "reply_json",
    "status",
    "unused_port",
]
