"""multi_agent_pruning: a Ray-based parallel search orchestrator for structural pruning.

Heavy entry points (``MultiAgentPruner`` pulls in Ray) are imported lazily, so
``import multi_agent_pruning`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "MultiAgentPruner": "multi_agent_pruning.orchestrator",
    "load_config": "multi_agent_pruning.config",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'multi_agent_pruning' has no attribute {name!r}")
