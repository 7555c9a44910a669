"""Optuna (TPE / NSGA-II) over a method's hyperparameters, run by Ray Tune on the same trial path.

The study lives in an Optuna JournalStorage file (``optuna-dashboard <file>`` opens it), and
starts from the same default points the master's first batch uses (no head start either way).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ray import tune

from multi_agent_pruning.methods import Dimension, FullSpaceMethod, PruningMethod, get_method
from multi_agent_pruning.core.strategy import Strategy
from multi_agent_pruning.search.trial import TrialContext
from multi_agent_pruning.search.tune_trial import run_tune_trial

__all__ = ["StrategySpace", "build_optuna_searcher", "method_for", "run_params_trial"]


def method_for(name: str) -> PruningMethod:
    """``optuna_tpe`` / ``optuna_nsga2`` search the full space; ``optuna_tpe:<baseline>`` one baseline's."""
    if name.startswith("optuna_"):
        _, _, inner = name.partition(":")
        return get_method(inner) if inner else FullSpaceMethod()
    return get_method(name)


class StrategySpace:
    """Optuna define-by-run space (picklable): suggests each dimension and returns the Optuna trial's
    number as the constant ``iteration`` (the row's ``iteration``: 0, 1, ... in the order Optuna
    asked, the enqueued default points first)."""

    def __init__(self, dims: Sequence[Dimension]) -> None:
        self.dims = list(dims)

    def __call__(self, trial) -> dict[str, int]:
        for d in self.dims:
            if d.kind == "categorical":
                trial.suggest_categorical(d.name, list(d.choices))
            elif d.kind == "int":
                trial.suggest_int(d.name, int(d.low), int(d.high))
            else:
                trial.suggest_float(d.name, d.low, d.high, log=d.kind == "float_log")
        return {"iteration": int(trial.number)}


def build_optuna_searcher(method: PruningMethod, base: Strategy, kinds: Sequence[str], *, has_attention: bool,
                          seed: int, storage_file: Path, study_name: str, first_strategies: Sequence[Strategy],
                          sampler: str = "tpe"):
    """An ``OptunaSearch`` over ``method``'s space, stored in ``storage_file``."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from ray.tune.search.optuna import OptunaSearch

    dims = method.search_space(base, kinds, has_attention)
    points = []
    for strategy in first_strategies:
        point = method.params_of(strategy, dims)
        if point not in points:
            points.append(point)
    storage_file.parent.mkdir(parents=True, exist_ok=True)
    storage = JournalStorage(JournalFileBackend(str(storage_file)))
    chosen = (optuna.samplers.NSGAIISampler(seed=seed) if sampler == "nsga2"
              else optuna.samplers.TPESampler(seed=seed))
    return OptunaSearch(space=StrategySpace(dims), metric="score", mode="max", points_to_evaluate=points or None,
                        sampler=chosen, study_name=study_name, storage=storage), dims


def run_params_trial(config: dict[str, Any], context: TrialContext, method_name: str, base_json: str,
                     kinds: Sequence[str]) -> None:
    """Tune trainable for Optuna: hyperparameters -> the method's strategy -> the shared trial."""
    method = method_for(method_name)
    strategy = method.strategy_from_params(Strategy.from_json(base_json), config, kinds)
    run_tune_trial({"strategy": strategy.to_json(), "trial_id": tune.get_context().get_trial_id(),
                    "iteration": int(config.get("iteration", 0)), "issue_index": config.get("issue_index")}, context)
