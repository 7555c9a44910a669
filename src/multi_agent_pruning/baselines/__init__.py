"""Baselines as the API reference names them: runnable pruning methods
(:meth:`BasePruningMethod.prune_to_target_macs`), built on the descriptions of
:mod:`multi_agent_pruning.methods` (whose registry, ``Dimension`` and ``FullSpaceMethod`` are
re-exported here)."""

from multi_agent_pruning.baselines.base import BasePruningMethod
from multi_agent_pruning.baselines.methods import IsomorphicOriginal, MagnitudePruning, RandomPruning, TaylorPruning
from multi_agent_pruning.methods import (
    METHOD_REGISTRY,
    Dimension,
    FullSpaceMethod,
    get_method,
    list_methods,
    register_method,
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
