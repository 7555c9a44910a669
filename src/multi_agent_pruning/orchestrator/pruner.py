"""``MultiAgentPruner``: the Python entry point of the API reference."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from multi_agent_pruning.config import ExperimentConfig, apply_overrides, load_config, load_config_dict
from multi_agent_pruning.exceptions import PruningError
from multi_agent_pruning.orchestrator.compare import compare_methods
from multi_agent_pruning.orchestrator.experiment import run_experiment
from multi_agent_pruning.orchestrator.targets import target_overrides

__all__ = ["MultiAgentPruner"]


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
        return apply_overrides(self.config, overrides)

    def prune_model(self, model_name: str | None, dataset: str | None,
                    target_ratio: float | Sequence[float] | None = None, *,
                    output_dir: str | Path | None = None, max_iterations: int | None = None,
                    enable_caching: bool | None = None, trials: int | None = None, target_macs: Any = None,
                    target_kind: str | None = None, resume: bool = False, address: str | None = None,
                    progress: bool = False) -> dict[str, Any]:
        """Searches the best structurally pruned ``model_name`` at the target.

        ``target_ratio`` is the fraction of ``target.kind`` removed (MACs by default; pass
        ``target_kind="params"`` for a parameter reduction as in the original API reference).
        A list (``target_ratio=[0.3, 0.5, 0.7]``, or ``target_macs=[0.7, 0.5]`` / ``"2.3G,1.2G"``)
        searches all those targets together in one run (a sweep: the accuracy-MACs frontier),
        with ``trials`` trials in all.

        Returns:
            ``final_accuracy``, ``params_reduction``, ``macs_reduction``,
            ``convergence_iterations``, ``total_time_minutes``, ``best_model_path``,
            ``results_path`` and more (the content of ``summary.json``). For a sweep also
            ``frontier``: one entry per target (``target``, ``final_accuracy``, ``macs``,
            ``params``, ``macs_reduction``, ``params_reduction``, ``best_trial_id``,
            ``best_model_path``); the top-level values are then those of the hardest target that
            produced a model (``best_target``).

        Raises:
            PruningError: No trial produced a model; the message gives the counts of failed and
                rejected trials and the main reasons. The results table and ``summary.json`` are
                written first, and the summary is the error's ``result``.
            ConfigurationError: Bad input (unknown model or dataset, target out of range, ...).
        """
        extra = target_overrides(target_ratio=target_ratio, target_macs=target_macs, target_kind=target_kind)
        if max_iterations is not None:
            extra.append(f"search.max_iterations={max_iterations}")
        if trials is not None:
            extra.append(f"search.trials={trials}")
        if enable_caching is not None:
            extra.append(f"precomputation.enabled={str(bool(enable_caching)).lower()}")
        cfg = self._configure(model_name, dataset, extra)
        summary = run_experiment(cfg, output_dir=output_dir, resume=resume, address=address, progress=progress)
        if summary.get("final_accuracy") is None:
            raise PruningError(f"{summary.get('error')} ({summary['results_path']})", result=summary)
        return summary

    def compare_methods(self, model_name: str | None, dataset: str | None,
                        target_ratio: float | Sequence[float] | None = None,
                        methods: list[str] | None = None, *, num_runs: int | None = None,
                        trials_per_method: int | None = None, target_macs: Any = None,
                        target_kind: str | None = None, output_dir: str | Path | None = None,
                        address: str | None = None, progress: bool = False) -> dict[str, Any]:
        """Runs every method at the same trial budget, seeds and fine-tune budget.

        Returns:
            ``{method: {final_accuracy, best_accuracy, mean, std, best_per_run, trials_used,
            wall_time_s, ...}}`` (see :func:`~multi_agent_pruning.orchestrator.compare.compare_methods`);
            all trials are in one result table with ``method`` and ``run`` columns. ``methods=None``
            runs every method, ``multi_agent`` included; without ``output_dir`` the comparison goes
            to a directory no earlier run uses.

        Raises:
            PruningError: No method produced a model (the table and ``comparison.json`` are written first).
        """
        extra = target_overrides(target_ratio=target_ratio, target_macs=target_macs, target_kind=target_kind)
        cfg = self._configure(model_name, dataset, extra)
        return compare_methods(cfg, methods, num_runs=num_runs, trials_per_method=trials_per_method,
                               output_dir=output_dir, address=address, progress=progress)
