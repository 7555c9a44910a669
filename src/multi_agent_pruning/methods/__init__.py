"""Pruning methods as descriptions (Strategy factories and Optuna search spaces); see
:mod:`~multi_agent_pruning.methods.base`. :mod:`multi_agent_pruning.baselines` is their runnable
API form."""

from multi_agent_pruning.methods.base import (
    METHOD_REGISTRY,
    Dimension,
    PruningMethod,
    get_method,
    list_methods,
    register_method,
)
from multi_agent_pruning.methods.catalog import (
    FullSpaceMethod,
    IsomorphicOriginal,
    MagnitudePruning,
    RandomPruning,
    TaylorPruning,
)

__all__ = [
    "Dimension",
    "FullSpaceMethod",
    "IsomorphicOriginal",
    "METHOD_REGISTRY",
    "MagnitudePruning",
    "PruningMethod",
    "RandomPruning",
    "TaylorPruning",
    "get_method",
    "list_methods",
    "register_method",
]
