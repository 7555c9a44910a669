"""The standard baselines of :mod:`multi_agent_pruning.methods.catalog`, runnable: each is the
catalog's method with :class:`~multi_agent_pruning.baselines.base.BasePruningMethod`'s
``prune_to_target_macs`` and helpers. Their registry names (``magnitude_l1``, ``taylor``, ...)
stay those of the catalog."""

from __future__ import annotations

from multi_agent_pruning.baselines.base import BasePruningMethod
from multi_agent_pruning.methods import catalog

__all__ = ["IsomorphicOriginal", "MagnitudePruning", "RandomPruning", "TaylorPruning"]


class MagnitudePruning(BasePruningMethod, catalog.MagnitudePruning):
    __doc__ = catalog.MagnitudePruning.__doc__


class TaylorPruning(BasePruningMethod, catalog.TaylorPruning):
    __doc__ = catalog.TaylorPruning.__doc__


class IsomorphicOriginal(BasePruningMethod, catalog.IsomorphicOriginal):
    __doc__ = catalog.IsomorphicOriginal.__doc__


class RandomPruning(BasePruningMethod, catalog.RandomPruning):
    __doc__ = catalog.RandomPruning.__doc__
