"""Fair comparisons: every method gets the same trial budget, seeds and fine-tune budget.

All trials of a comparison land in one result table with ``method`` and ``run`` columns.
``multi_agent`` is the master-driven search; ``optuna_tpe`` (``optuna_nsga2``) is Optuna over the
same strategy space; a baseline name (``magnitude_l2``, ``taylor`` ...) is that baseline with its
hyperparameters tuned by Optuna TPE within the budget (budget 1: its default strategy).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ray import tune

from multi_agent_pruning.agents import ProfilingAgent
from multi_agent_pruning.agents.policy import BuiltinPolicy
from multi_agent_pruning.config import ExperimentConfig, config_to_dict, load_config, load_config_dict
from multi_agent_pruning.exceptions import ConfigIssue, ConfigurationError, UnknownNameError
from multi_agent_pruning.methods import list_methods
from multi_agent_pruning.orchestrator.experiment import write_run_report
from multi_agent_pruning.orchestrator.prepare import (
    ExperimentPaths, base_strategy, build_context, print_progress, profile_request, profiling_agent_config,
)
from multi_agent_pruning.orchestrator.ray_runtime import init_ray
from multi_agent_pruning.orchestrator.tune_run import build_tuner, concurrency, fit_search, profile_with_actor, run_search
from multi_agent_pruning.orchestrator.targets import target_overrides
from multi_agent_pruning.results import ResultStore
from multi_agent_pruning.search.interrupt import SearchInterrupted, handle_stop_signals, raise_if_interrupted
from multi_agent_pruning.search.optuna_search import build_optuna_searcher, method_for, run_params_trial
from multi_agent_pruning.search.ordered import InOrderSearcher
from multi_agent_pruning.search.rows import RowRecorder, RowSink
from multi_agent_pruning.search.trial import evaluate_strategy
from multi_agent_pruning.utils.atomic import atomic_write_json

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_METHODS", "compare_methods", "run_single_strategy"]

DEFAULT_METHODS = ("multi_agent", "magnitude_l1", "magnitude_l2", "taylor", "isomorphic", "random", "optuna_tpe")


def _check_methods(methods: Sequence[str]) -> None:
    known = ["multi_agent", "optuna_tpe", "optuna_nsga2", *list_methods()]
    for name in methods:
        base = name.split(":", 1)[1] if name.startswith("optuna_") and ":" in name else name
        if base not in known:
            raise UnknownNameError("method", name, known)


def compare_methods(cfg: ExperimentConfig, methods: Sequence[str] | None = None, *, num_runs: int | None = None,
                    trials_per_method: int | None = None, output_dir: str | Path | None = None,
                    address: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Runs each method ``num_runs`` times at the same budget and returns per-method statistics.

    Returns:
        ``{method: {best_accuracy, mean, std, best_per_run, trials_used, wall_time_s,
        macs_reduction}}``; also written to ``comparison.json`` in the output directory.

    Raises:
        SearchInterrupted: SIGINT/SIGTERM: no further method runs; the rows are kept.
    """
    with handle_stop_signals():
        return _compare(cfg, methods, num_runs, trials_per_method, output_dir, address, progress)


def _compare(cfg: ExperimentConfig, methods: Sequence[str] | None, num_runs: int | None,
             trials_per_method: int | None, output_dir: str | Path | None, address: str | None,
             progress: bool) -> dict[str, Any]:
    methods = list(cfg.baselines.methods if methods is None else methods)
    if not methods:
        raise ConfigurationError("Invalid methods:", [ConfigIssue("methods", "must name at least one method", methods)])
    _check_methods(methods)
    num_runs = num_runs or cfg.baselines.num_runs
    budget = trials_per_method or cfg.baselines.trials_per_method or cfg.effective_search().trials
    if num_runs < 1 or budget < 1:
        raise ConfigurationError(f"num_runs and trials_per_method must be >= 1 (got {num_runs}, {budget})")
    paths = ExperimentPaths(Path(output_dir) if output_dir else cfg.output_path())
    if paths.state.exists():
        raise ConfigurationError(f"output directory {paths.root} already holds an experiment; choose another")
    contexts = {run: build_context(cfg, method="", run=run, seed=cfg.experiment.seed + run) for run in range(num_runs)}
    atomic_write_json(paths.state, {"experiment": cfg.experiment.name, "status": "running", "kind": "comparison",
                                    "methods": methods, "config": config_to_dict(cfg)})
    walls: dict[str, float] = {m: 0.0 for m in methods}
    try:
        raise_if_interrupted()
        init_ray(cfg, address)
        for run, context in contexts.items():
            for method in methods:
                start = time.perf_counter()
                _run_method(cfg, paths, context, method, run, budget, progress)
                walls[method] += time.perf_counter() - start
    except SearchInterrupted as stop:
        atomic_write_json(paths.state, {"experiment": cfg.experiment.name, "status": "interrupted", "kind": "comparison",
                                        "methods": methods, "config": config_to_dict(cfg), "signal": stop.signum,
                                        "rows": ResultStore(paths.results).count(experiment=cfg.experiment.name)})
        raise
    comparison = summarise_comparison(ResultStore(paths.results), cfg.experiment.name, methods, walls)
    atomic_write_json(paths.root / "comparison.json", comparison)
    write_run_report(paths, cfg.experiment.name)
    atomic_write_json(paths.state, {"experiment": cfg.experiment.name, "status": "finished", "kind": "comparison",
                                    "methods": methods, "config": config_to_dict(cfg)})
    return comparison


def _run_method(cfg: ExperimentConfig, paths: ExperimentPaths, context, method: str, run: int, budget: int,
                progress: bool) -> None:
    ctx = dataclasses.replace(context, method=method)
    if method == "multi_agent":
        run_cfg = cfg.model_copy(update={"search": cfg.search.model_copy(update={"trials": budget})})
        run_search(run_cfg, paths, ctx, progress=progress, save_best=False)
        return
    _run_optuna(cfg, paths, ctx, method, run, budget, progress)


def _run_optuna(cfg: ExperimentConfig, paths: ExperimentPaths, ctx, method: str, run: int, budget: int,
                progress: bool) -> None:
    base = base_strategy(cfg)
    profile = profile_with_actor(cfg, ctx)
    kinds = list(profile["kinds"])
    has_attention = "attention" in kinds
    impl = method_for(method)
    parallel = concurrency(cfg)
    if method.startswith("optuna_") and ":" not in method:
        # The same first points as the master's first batch: no head start either way.
        batch = cfg.effective_search().batch_size or parallel
        first = BuiltinPolicy(seed=ctx.seed).propose(profile["kinds"], base, [], batch, 0, has_attention=has_attention)
    else:
        first = [impl.make_strategy(base, kinds)]
    sampler = "nsga2" if method.startswith("optuna_nsga2") else "tpe"
    searcher, _ = build_optuna_searcher(impl, base, kinds, has_attention=has_attention, seed=ctx.seed,
                                        storage_file=paths.root / "optuna" / f"{_safe(method)}-run{run}.journal",
                                        study_name=f"{cfg.experiment.name}-{_safe(method)}-run{run}",
                                        first_strategies=first, sampler=sampler)
    if cfg.effective_search().reproducible:
        searcher = InOrderSearcher(searcher, lag=parallel - 1, budget=budget)
    store = ResultStore(paths.results)
    sink = RowSink(store, total=budget, progress=print_progress if progress else None)
    ids = {k: v for k, v in ctx.identifiers("", 0).items() if k not in ("trial_id", "iteration")}
    trainable = tune.with_parameters(run_params_trial, context=ctx, method_name=method, base_json=base.to_json(),
                                     kinds=kinds)
    tuner = build_tuner(cfg, trainable, searcher, budget=budget, parallel=parallel,
                        name=f"{_safe(method)}-run{run}", storage=paths.tune,
                        callbacks=[RowRecorder(sink, ids, base.target_kind)])
    fit_search(tuner, sink)
    if sink.error is not None:
        raise sink.error
    raise_if_interrupted()


def _safe(method: str) -> str:
    return method.replace(":", "-")


def summarise_comparison(store: ResultStore, experiment: str, methods: Sequence[str],
                         walls: dict[str, float]) -> dict[str, Any]:
    """Per method: best accuracy per run, mean +- std over runs, trials used, wall time."""
    rows = store.rows(experiment=experiment)
    out: dict[str, Any] = {}
    for method in methods:
        mine = [r for r in rows if r.method == method]
        runs = sorted({r.run for r in mine})
        best = []
        for run in runs:
            scores = [r.top1_after for r in mine if r.run == run and r.status == "ok" and r.top1_after is not None]
            best.append(max(scores) if scores else None)
        measured = [b for b in best if b is not None]
        ok = [r for r in mine if r.status == "ok" and r.top1_after is not None]
        top = max(ok, key=lambda r: r.top1_after, default=None)
        out[method] = {
            "best_accuracy": max(measured) if measured else None,
            "mean": statistics.fmean(measured) if measured else None,
            "std": statistics.stdev(measured) if len(measured) > 1 else (0.0 if measured else None),
            "best_per_run": best, "runs": runs,
            "trials_used": sum(1 for r in mine if r.status != "rejected"),
            "trials_ok": len(ok), "wall_time_s": walls.get(method),
            "macs_reduction": top.macs_reduction if top else None,
        }
    return out


def format_comparison(comparison: dict[str, Any]) -> str:
    lines = [f"{'method':<16} {'mean top-1':>10} {'std':>7} {'best':>7} {'trials':>7} {'ok':>4} {'wall s':>8}"]
    ranked = sorted(comparison.items(), key=lambda kv: -(kv[1]["mean"] if kv[1]["mean"] is not None else -1))
    for method, c in ranked:
        def f(v, spec):
            return "-" if v is None else format(v, spec)
        lines.append(f"{method:<16} {f(c['mean'], '>10.4f')} {f(c['std'], '>7.4f')} {f(c['best_accuracy'], '>7.4f')} "
                     f"{c['trials_used']:>7} {c['trials_ok']:>4} {f(c['wall_time_s'], '>8.1f')}")
    return "\n".join(lines)


def run_single_strategy(method, model_name: str, target_macs: float, dataset: str, *, config_path=None,
                        output_dir=None, overrides: list[str] | None = None) -> dict[str, Any]:
    """One baseline strategy through the shared trial function, stored as one row (no Ray needed)."""
    extra = [f"model.name={model_name}", f"dataset.name={dataset}", *target_overrides(target_macs=target_macs),
             *(overrides or [])]
    cfg = load_config(config_path, overrides=extra) if config_path else load_config_dict({}, overrides=extra)
    paths = ExperimentPaths(Path(output_dir) if output_dir else cfg.output_path() / method.name)
    context = build_context(cfg, method=method.name, run=0)
    kinds = list(ProfilingAgent(profiling_agent_config(cfg)).execute(profile_request(cfg, context))["profile"]["kinds"])
    strategy = method.make_strategy(base_strategy(cfg), kinds)
    row = evaluate_strategy(strategy, context, trial_id=f"{method.name}-{int(time.time() * 1000)}", iteration=0)
    sink = RowSink(ResultStore(paths.results))
    sink(row)
    if sink.error is not None:
        raise sink.error
    return {"method": method.name, "status": row.status, "error": row.error, "final_accuracy": row.top1_after,
            "accuracy_before_finetune": row.top1_before, "final_macs": row.macs, "params": row.params,
            "macs_reduction": row.macs_reduction, "target_error": row.target_error,
            "strategy": json.loads(row.strategy_json), "results_path": str(paths.results)}
