"""Test helpers that are not part of the package: a scripted OpenAI-compatible server on
127.0.0.1 (``support.llm_server``). ``pyproject.toml`` puts ``tests/`` on pytest's path."""
