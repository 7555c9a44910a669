"""Pruning methods as descriptions: how each makes its Strategy and what Optuna may tune.

Nothing here runs a model: the master search, the Optuna searches and the API's
``prune_to_target_macs`` (:mod:`multi_agent_pruning.baselines`) evaluate the strategies through
the one trial function. The registry maps method names (``magnitude_l1``, ``taylor``, ...) to
their classes (:mod:`~multi_agent_pruning.methods.catalog`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from multi_agent_pruning.core.strategy import Strategy
from multi_agent_pruning.utils.registry import Registry

__all__ = ["Dimension", "METHOD_REGISTRY", "PruningMethod", "get_method", "list_methods", "register_method"]

METHOD_REGISTRY: Registry[type[PruningMethod]] = Registry("pruning method")


def register_method(name: str):
    """Class decorator: registers a :class:`PruningMethod` subclass under ``name``."""

    def wrap(cls: type[PruningMethod]) -> type[PruningMethod]:
        cls.name = name
        return METHOD_REGISTRY.add(name, cls)

    return wrap


def get_method(name: str, **kwargs: Any) -> PruningMethod:
    return METHOD_REGISTRY.get(name)(**kwargs)


def list_methods() -> list[str]:
    return METHOD_REGISTRY.names()


@dataclass(frozen=True)
class Dimension:
    """One hyperparameter a method lets Optuna search.

    Attributes:
        name: Parameter name (``lr``, ``round_to``, ``mult_<kind>`` ...).
        kind: ``float_log``, ``float``, ``int`` or ``categorical``.
        low / high: Bounds of numeric dimensions; ``choices`` of categorical ones.
    """

    name: str
    kind: str
    low: float = 0.0
    high: float = 1.0
    choices: tuple = ()


class PruningMethod(ABC):
    """A pruning method: its default strategy and the hyperparameters Optuna may tune.

    Subclasses implement :meth:`make_strategy` (the method's default strategy) and may extend
    :meth:`search_space`. The API's runnable form, with ``prune_to_target_macs`` and the helpers
    of custom methods, is :class:`multi_agent_pruning.baselines.BasePruningMethod`.
    """

    name = "custom"
    #: Whether Optuna may tune per-kind ratio multipliers / global-vs-local ranking for this method.
    tunes_multipliers = False
    tunes_ranking = False
    #: Whether the method prunes with its own ``prune_to_target_macs`` (a custom method of the API
    #: reference) instead of a strategy for the shared trial function; set by
    #: :class:`~multi_agent_pruning.baselines.BasePruningMethod` for the subclasses that override it.
    runs_own_pruning = False

    def __init__(self) -> None:
        pass

    @abstractmethod
    def make_strategy(self, base: Strategy, kinds: Sequence[str] = ()) -> Strategy:
        """The method's strategy, from the experiment's base (target and recovery budget)."""

    # -- Optuna hyperparameters ----------------------------------------------------------------
    def search_space(self, base: Strategy, kinds: Sequence[str] = (), has_attention: bool = False) -> list[Dimension]:
        """Dimensions Optuna tunes: learning rate, round_to, KD weight (the split of the recovery
        loss between labels and the dense teacher), and (where the method allows) global/local
        ranking, per-kind multipliers and head ratio. Iterative pruning is not searched: its
        MACs cannot be planned from one dry run, so it misses tight targets too often."""
        dims = [
            Dimension("lr", "float_log", base.learning_rate / 10, min(1.0, base.learning_rate * 10)),
            Dimension("round_to", "categorical", choices=(1, 2, 4, 8)),
            Dimension("kd_weight", "categorical", choices=(0.0, 0.5)),
        ]
        if self.tunes_ranking:
            dims.append(Dimension("global_pruning", "categorical", choices=(True, False)))
        if self.tunes_multipliers:
            dims += [Dimension(f"mult_{k}", "float_log", 0.25, 2.5) for k in kinds]
        if has_attention:
            dims.append(Dimension("head_pruning_ratio", "float", 0.0, 0.5))
        return dims

    def params_of(self, strategy: Strategy, dims: Sequence[Dimension]) -> dict[str, Any]:
        """The point of the search space that is ``strategy`` (for Optuna's first trials)."""
        values = {"lr": strategy.learning_rate, "round_to": strategy.round_to or 1,
                  "iterative_steps": strategy.iterative_steps, "kd_weight": strategy.kd_weight,
                  "global_pruning": strategy.global_pruning, "importance": strategy.importance,
                  "isomorphic": strategy.isomorphic, "head_pruning_ratio": strategy.head_pruning_ratio}
        out = {}
        for dim in dims:
            if dim.name.startswith("mult_"):
                out[dim.name] = min(dim.high, max(dim.low, strategy.group_multipliers.get(dim.name[5:], 1.0)))
            elif dim.name in values:
                value = values[dim.name]
                out[dim.name] = value if dim.kind == "categorical" or value is None else min(dim.high, max(dim.low, value))
        return out

    def strategy_from_params(self, base: Strategy, params: dict[str, Any], kinds: Sequence[str] = ()) -> Strategy:
        """The method's strategy with Optuna's ``params`` applied."""
        strategy = self.make_strategy(base, kinds)
        changes: dict[str, Any] = {}
        if "lr" in params:
            changes["learning_rate"] = float(params["lr"])
        if "round_to" in params:
            changes["round_to"] = None if int(params["round_to"]) <= 1 else int(params["round_to"])
        for name in ("iterative_steps",):
            if name in params:
                changes[name] = int(params[name])
        for name in ("kd_weight", "head_pruning_ratio"):
            if name in params:
                changes[name] = float(params[name])
        for name in ("global_pruning", "isomorphic"):
            if name in params:
                changes[name] = bool(params[name])
        if changes.get("global_pruning") is False:
            changes["isomorphic"] = False
        if "importance" in params:
            changes["importance"] = str(params["importance"])
        if changes.get("head_pruning_ratio", 0.0) > 0:
            changes["prune_num_heads"] = True
        mult = {k[5:]: round(float(v), 4) for k, v in params.items() if k.startswith("mult_")}
        if mult:
            changes["group_multipliers"] = mult
        return strategy.replace(**changes)
