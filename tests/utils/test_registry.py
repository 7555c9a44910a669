"""The shared Registry: duplicates rejected, unknown names get suggestions."""

from __future__ import annotations

import pytest

from multi_agent_pruning.exceptions import MultiAgentPruningError, UnknownNameError
from multi_agent_pruning.utils.registry import Registry


def test_register_get_list_and_errors():
    reg: Registry[int] = Registry("widget")

    @reg.register("alpha")
    def alpha():
        return 1

    reg.add("beta", 2)
    assert reg.get("alpha") is alpha and reg.get("beta") == 2
    assert reg.names() == ["alpha", "beta"] and list(reg) == ["alpha", "beta"] and len(reg) == 2
    assert "alpha" in reg and "gamma" not in reg
    with pytest.raises(MultiAgentPruningError, match="already registered"):
        reg.add("alpha", 3)
    with pytest.raises(UnknownNameError) as err:
        reg.get("alpah")
    assert err.value.suggestions[0] == "alpha" and "Unknown widget 'alpah'" in str(err.value)
    assert isinstance(err.value, KeyError)
    reg.remove("beta")
    assert reg.names() == ["alpha"]
