"""Helpers that Ray workers and the benchmarks import by module path, so they ship with the
package: tiny trained models (:mod:`multi_agent_pruning.testing.tiny`) and the idle workers Ray
prestarts (:mod:`multi_agent_pruning.testing.ray_workers`). The scripted OpenAI-compatible
server of the tests lives in ``tests/support/llm_server.py``.
"""
