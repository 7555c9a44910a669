"""How the local cluster that ``init_ray`` starts authenticates (``local_auth``), on plain dicts:
the end-to-end check (a client without the token is refused) is
tests/reliability/test_secrets_and_network.py::test_local_ray_requires_a_per_run_token."""

from __future__ import annotations

import re

from multi_agent_pruning.orchestrator.ray_runtime import local_auth


def test_unset_mode_means_token_auth_with_a_fresh_token_per_run():
    first, second = {}, {}
    assert local_auth(first) == "token" and local_auth(second) == "token"
    assert first["RAY_AUTH_MODE"] == "token" and re.fullmatch(r"[0-9a-f]{64}", first["RAY_AUTH_TOKEN"])
    assert first["RAY_AUTH_TOKEN"] != second["RAY_AUTH_TOKEN"]


def test_the_users_setting_wins():
    disabled = {"RAY_AUTH_MODE": "disabled"}
    assert local_auth(disabled) == "disabled" and disabled == {"RAY_AUTH_MODE": "disabled"}
    own = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "mine"}
    assert local_auth(own) == "token" and own["RAY_AUTH_TOKEN"] == "mine"
    # A token of the user's (variable or file) is kept when only the mode is unset.
    with_token = {"RAY_AUTH_TOKEN": "mine"}
    assert local_auth(with_token) == "token" and with_token == {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "mine"}
    with_path = {"RAY_AUTH_TOKEN_PATH": "/secrets/ray"}
    assert local_auth(with_path) == "token" and "RAY_AUTH_TOKEN" not in with_path
