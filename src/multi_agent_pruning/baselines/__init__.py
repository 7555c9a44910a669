"""Baselines: Strategy factories evaluated by the same trial function as the agents."""

from multi_agent_pruning.baselines.base import (
    METHOD_REGISTRY,
    BasePruningMethod,
    Dimension,
    get_method,
    list_methods,
    register_method,
)
from multi_agent_pruning.baselines.methods import (
    FullSpaceMethod,
    IsomorphicOriginal,
    MagnitudePruning,
    RandomPruning,
    TaylorPruning,
)

__all__ = [
    "BasePruningMethod",
    "Dimension",
    "FullSpaceMethod",
    "IsomorphicOriginal",
    "METHOD_REGISTRY",
    "MagnitudePruning",
    "RandomPruning",
    "TaylorPruning",
    "get_method",
    "list_methods",
    "register_method",
]
