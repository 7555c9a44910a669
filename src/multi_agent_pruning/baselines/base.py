"""Baseline pruning methods: each is a Strategy factory evaluated by the one trial function."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from multi_agent_pruning.core.strategy import Strategy
from multi_agent_pruning.utils.registry import Registry

__all__ = ["BasePruningMethod", "Dimension", "METHOD_REGISTRY", "get_method", "list_methods", "register_method"]

METHOD_REGISTRY: Registry[type[BasePruningMethod]] = Registry("pruning method")


def register_method(name: str):
    """Class decorator: registers a :class:`BasePruningMethod` subclass under ``name``."""

    def wrap(cls: type[BasePruningMethod]) -> type[BasePruningMethod]:
        cls.name = name
        return METHOD_REGISTRY.add(name, cls)

    return wrap


def get_method(name: str, **kwargs: Any) -> BasePruningMethod:
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


class BasePruningMethod(ABC):
    """A pruning method for comparisons and user extensions.

    Subclasses implement :meth:`make_strategy` (the method's default strategy) and may extend
    :meth:`search_space` with the hyperparameters Optuna may tune. The default
    :meth:`prune_to_target_macs` runs the strategy through the same trial function as the
    agents; a custom method may override it completely (see the API reference), using the
    helpers :meth:`load_model`, :meth:`compute_macs` and :meth:`fine_tune_and_evaluate`.
    """

    name = "custom"
    #: Whether Optuna may tune per-kind ratio multipliers / global-vs-local ranking for this method.
    tunes_multipliers = False
    tunes_ranking = False

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

    # -- running one strategy --------------------------------------------------------------------
    def prune_to_target_macs(self, model_name: str, target_macs: float, dataset: str, *,
                             config_path: str | Path | None = None, output_dir: str | Path | None = None,
                             overrides: Sequence[str] = ()) -> dict[str, Any]:
        """Prunes ``model_name`` to ``target_macs`` (absolute MACs, or a fraction < 1 of the dense
        MACs to keep) with this method's strategy; one trial through the shared trial function.

        Returns:
            ``final_accuracy``, ``final_macs``, ``params``, ``macs_reduction``, ``method``,
            ``status``, ``error`` and ``results_path`` (the row is stored there).
        """
        from multi_agent_pruning.orchestrator.compare import run_single_strategy

        return run_single_strategy(self, model_name, target_macs, dataset, config_path=config_path,
                                   output_dir=output_dir, overrides=list(overrides))

    def load_model(self, model_name: str, **kwargs: Any):
        """A registry model (no weights are downloaded unless ``pretrained=True``)."""
        from multi_agent_pruning.models import create_model

        return create_model(model_name, **kwargs)

    def compute_macs(self, model, input_shape: tuple[int, ...] = (1, 3, 224, 224)) -> float:
        from multi_agent_pruning.utils.metrics import compute_macs

        return compute_macs(model, input_shape)

    def fine_tune_and_evaluate(self, model, dataset: str, *, steps: int = 100, lr: float = 1e-3,
                               batch_size: int = 128, path: str | None = None) -> float:
        """Fine-tunes ``model`` briefly on ``dataset`` and returns its top-1 on the val split."""
        from multi_agent_pruning.core.evaluation import evaluate
        from multi_agent_pruning.core.training import FineTuneConfig, fine_tune
        from multi_agent_pruning.data import create_loaders, load_dataset

        bundle = load_dataset(dataset, path=path)
        train, val = create_loaders(bundle, batch_size)
        fine_tune(model, train, FineTuneConfig(epochs=0.0, steps=steps, lr=lr))
        return float(evaluate(model, val)["top1"])
