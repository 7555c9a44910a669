"""``MultiAgentPruner``: the Python entry point of the API reference."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from multi_agent_pruning.config import ExperimentConfig, load_config, load_config_dict
from multi_agent_pruning.exceptions import ConfigurationError, ConfigIssue

__all__ = ["MultiAgentPruner", "target_overrides"]


def target_overrides(*, target_ratio: Any = None, target_macs: Any = None, target_kind: str | None = None) -> list[str]:
    """Config overrides for a target given as a reduction ratio or as MACs to keep.

    ``target_ratio`` is the fraction of the dense model's ``target.kind`` (MACs unless told
    otherwise) to remove, in (0, 1). ``target_macs`` is what to keep: a fraction of the dense
    MACs in (0, 1) ("keep half") or an absolute count >= 1 ("2.3e9", "2.3G").
    """
    if target_ratio is not None and target_macs is not None:
        raise ConfigurationError("give either a target ratio or a target MACs budget, not both")
    overrides: list[str] = []
    if target_ratio is not None:
        value = _number("target_ratio", target_ratio)
        if not 0 < value < 1:
            raise ConfigurationError("Invalid target:", [ConfigIssue("target_ratio", "must be in (0, 1): the fraction removed", target_ratio)])
        overrides += [f"target.reduction={value}", "target.budget=null"]
        if target_kind:
            overrides.append(f"target.kind={target_kind}")
    if target_macs is not None:
        value = _number("target_macs", target_macs)
        if value <= 0:
            raise ConfigurationError("Invalid target:", [ConfigIssue("target_macs", "must be > 0", target_macs)])
        overrides += ["target.kind=macs"]
        overrides += ([f"target.reduction={1 - value}", "target.budget=null"] if value < 1
                      else [f"target.budget={value}", "target.reduction=null"])
    return overrides


_SUFFIX = {"k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ConfigurationError("Invalid target:", [ConfigIssue(name, "must be a number", value)])
    if isinstance(value, str):
        text = value.strip().lower().removesuffix("macs").strip()
        scale = _SUFFIX.get(text[-1:], 1.0) if text else 1.0
        try:
            value = float(text[:-1] if scale != 1.0 else text) * scale
        except ValueError:
            raise ConfigurationError("Invalid target:", [ConfigIssue(name, "must be a number (e.g. 0.5, 2.3e9, 2.3G)", value)]) from None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigurationError("Invalid target:", [ConfigIssue(name, "must be a finite number", value)])
    return float(value)


class MultiAgentPruner:
    """Multi-agent structural pruning search (see ``docs`` and the API reference).

    Args:
        config_path: Experiment YAML; without it the shipped defaults are used.
        config: An already loaded config (instead of ``config_path``).
        overrides: ``key=value`` strings applied on top (as ``mapruner --set``).
    """

    def __init__(self, config_path: str | Path | None = None, *, config: ExperimentConfig | None = None,
                 overrides: list[str] | None = None) -> None:
        self.config_path = str(config_path) if config_path else None
        self.overrides = list(overrides or [])
        self.config = config if config is not None else self._load([])

    def _load(self, extra: list[str]) -> ExperimentConfig:
        if self.config_path:
            return load_config(self.config_path, overrides=self.overrides + extra)
        return load_config_dict({}, overrides=self.overrides + extra)

    def _configure(self, model_name: str | None, dataset: str | None, extra: list[str]) -> ExperimentConfig:
        overrides = list(extra)
        if model_name:
            overrides.append(f"model.name={model_name}")
        if dataset:
            overrides.append(f"dataset.name={dataset}")
        if not overrides:
            return self.config
        from multi_agent_pruning.config import apply_overrides

        return apply_overrides(self.config, overrides)

    def prune_model(self, model_name: str | None, dataset: str | None, target_ratio: float | None = None, *,
                    output_dir: str | Path | None = None, max_iterations: int | None = None,
                    enable_caching: bool | None = None, trials: int | None = None, target_macs: Any = None,
                    target_kind: str | None = None, resume: bool = False, address: str | None = None,
                    progress: bool = False) -> dict[str, Any]:
        """Searches the best structurally pruned ``model_name`` at the target.

        ``target_ratio`` is the fraction of ``target.kind`` removed (MACs by default; pass
        ``target_kind="params"`` for a parameter reduction as in the original API reference).

        Returns:
            ``final_accuracy``, ``params_reduction``, ``macs_reduction``,
            ``convergence_iterations``, ``total_time_minutes``, ``best_model_path``,
            ``results_path`` and more (the content of ``summary.json``).
        """
        from multi_agent_pruning.orchestrator.experiment import run_experiment

        extra = target_overrides(target_ratio=target_ratio, target_macs=target_macs, target_kind=target_kind)
        if max_iterations is not None:
            extra.append(f"search.max_iterations={max_iterations}")
        if trials is not None:
            extra.append(f"search.trials={trials}")
        if enable_caching is not None:
            extra.append(f"precomputation.enabled={str(bool(enable_caching)).lower()}")
        cfg = self._configure(model_name, dataset, extra)
        return run_experiment(cfg, output_dir=output_dir, resume=resume, address=address, progress=progress)

    def compare_methods(self, model_name: str | None, dataset: str | None, target_ratio: float | None = None,
                        methods: list[str] | None = None, *, num_runs: int | None = None,
                        trials_per_method: int | None = None, target_macs: Any = None,
                        target_kind: str | None = None, output_dir: str | Path | None = None,
                        address: str | None = None, progress: bool = False) -> dict[str, Any]:
        """Runs every method at the same trial budget, seeds and fine-tune budget.

        Returns:
            ``{method: {best_accuracy, mean, std, best_per_run, trials_used, wall_time_s, ...}}``;
            all trials are in one result table with ``method`` and ``run`` columns.
        """
        from multi_agent_pruning.orchestrator.compare import compare_methods

        extra = target_overrides(target_ratio=target_ratio, target_macs=target_macs, target_kind=target_kind)
        cfg = self._configure(model_name, dataset, extra)
        return compare_methods(cfg, methods, num_runs=num_runs, trials_per_method=trials_per_method,
                               output_dir=output_dir, address=address, progress=progress)
