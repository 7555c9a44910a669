"""Fair comparisons: every method gets the same trial budget, seeds and fine-tune budget.

All trials of a comparison land in one result table with ``method`` and ``run`` columns.
``multi_agent`` is the master-driven search; ``optuna_tpe`` (``optuna_nsga2``) is Optuna over the
same strategy space; a baseline name (``magnitude_l2``, ``taylor`` ...) is that baseline with its
hyperparameters tuned by Optuna TPE within the budget (budget 1: its default strategy).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from ray import tune

from multi_agent_pruning.agents import ProfilingAgent
from multi_agent_pruning.agents.policy import BuiltinPolicy
from multi_agent_pruning.config import ExperimentConfig, apply_overrides, config_to_dict, load_config, load_config_dict
from multi_agent_pruning.core.engine import count_macs_params
from multi_agent_pruning.exceptions import (
    ConfigIssue, ConfigurationError, ModelDownloadError, PruningError, UnknownNameError,
)
from multi_agent_pruning.methods import METHOD_REGISTRY, get_method, list_methods
from multi_agent_pruning.models import has_pretrained_weights
from multi_agent_pruning.orchestrator.experiment import no_model_reason, write_run_report
from multi_agent_pruning.orchestrator.prepare import (
    ExperimentPaths, base_strategy, build_context, check_target, default_output_dir, print_progress, profile_request,
    profiling_agent_config,
)
from multi_agent_pruning.orchestrator.ray_runtime import init_ray
from multi_agent_pruning.orchestrator.tune_run import build_tuner, concurrency, fit_search, profile_with_actor, run_search
from multi_agent_pruning.orchestrator.targets import target_overrides
from multi_agent_pruning.results import ResultStore, TrialResult
from multi_agent_pruning.search.interrupt import SearchInterrupted, handle_stop_signals, raise_if_interrupted
from multi_agent_pruning.search.optuna_search import build_optuna_searcher, method_for, run_params_trial
from multi_agent_pruning.search.ordered import InOrderSearcher
from multi_agent_pruning.search.rows import RowRecorder, RowSink
from multi_agent_pruning.search.trial import evaluate_strategy, seed_everything
from multi_agent_pruning.utils.atomic import atomic_write_json

logger = logging.getLogger(__name__)

__all__ = ["all_methods", "check_methods", "compare_methods", "run_single_strategy"]

def all_methods() -> list[str]:
    """Every method a comparison can run: ``multi_agent``, each registered pruning method (the
    built-in baselines and any registered with ``register_method``) and ``optuna_tpe``."""
    return ["multi_agent", *list_methods(), "optuna_tpe"]


def check_methods(methods: Sequence[str]) -> None:
    known = ["multi_agent", "optuna_tpe", "optuna_nsga2", *list_methods()]
    for name in methods:
        base = name.split(":", 1)[1] if name.startswith("optuna_") and ":" in name else name
        if base not in known:
            raise UnknownNameError("method", name, known)
        if base != name and METHOD_REGISTRY.get(base).runs_own_pruning:
            raise ConfigurationError("Invalid methods:", [ConfigIssue(
                "methods", f"{base} prunes with its own prune_to_target_macs; Optuna has no strategy of it to tune",
                name)])


def compare_methods(cfg: ExperimentConfig, methods: Sequence[str] | None = None, *, num_runs: int | None = None,
                    trials_per_method: int | None = None, output_dir: str | Path | None = None,
                    address: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Runs each method ``num_runs`` times at the same budget and returns per-method statistics.

    ``methods=None`` takes ``baselines.methods`` when the config sets it, else every method
    (:func:`all_methods`). A registered method that overrides ``prune_to_target_macs`` (a custom
    method as in the API reference) has no strategy to search: it runs once per run, with the
    run's seed, and its result is one row (its ``trials_used`` is 1). Without ``output_dir`` the
    comparison goes to a directory no earlier run uses
    (:func:`~multi_agent_pruning.orchestrator.prepare.default_output_dir`).

    Returns:
        ``{method: {final_accuracy, best_accuracy, mean, std, best_per_run, trials_used,
        wall_time_s, macs_reduction, params_reduction, final_macs, error}}``; ``final_accuracy``
        is the mean over runs of each run's best top-1 (``best_accuracy`` the best of all), None
        with the reason in ``error`` for a method that produced no model. Also written to
        ``comparison.json`` in the output directory.

    Raises:
        PruningError: No method produced a model (everything is stored first).
        SearchInterrupted: SIGINT/SIGTERM: no further method runs; the rows are kept.
    """
    with handle_stop_signals():
        return _compare(cfg, methods, num_runs, trials_per_method, output_dir, address, progress)


def _compare(cfg: ExperimentConfig, methods: Sequence[str] | None, num_runs: int | None,
             trials_per_method: int | None, output_dir: str | Path | None, address: str | None,
             progress: bool) -> dict[str, Any]:
    if methods is None:
        methods = cfg.baselines.methods if cfg.baselines.methods is not None else all_methods()
    methods = list(methods)
    if not methods:
        raise ConfigurationError("Invalid methods:", [ConfigIssue("methods", "must name at least one method", methods)])
    check_methods(methods)
    num_runs = num_runs or cfg.baselines.num_runs
    budget = trials_per_method or cfg.baselines.trials_per_method or cfg.effective_search().trials
    if num_runs < 1 or budget < 1:
        raise ConfigurationError(f"num_runs and trials_per_method must be >= 1 (got {num_runs}, {budget})")
    paths = ExperimentPaths(Path(output_dir) if output_dir else default_output_dir(cfg))
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
    produced = [m for m, c in comparison.items() if c["final_accuracy"] is not None]
    atomic_write_json(paths.state, {"experiment": cfg.experiment.name, "status": "finished" if produced else "failed",
                                    "kind": "comparison", "methods": methods, "config": config_to_dict(cfg)})
    if not produced:
        raise PruningError(f"no method produced a model; {comparison[methods[0]]['error']} "
                           f"(and likewise for the others; {paths.results})", result=comparison)
    for method in methods:
        if comparison[method]["final_accuracy"] is None:
            logger.warning("%s produced no model: %s", method, comparison[method]["error"])
    return comparison


def _run_method(cfg: ExperimentConfig, paths: ExperimentPaths, context, method: str, run: int, budget: int,
                progress: bool) -> None:
    ctx = dataclasses.replace(context, method=method)
    if method in list_methods() and METHOD_REGISTRY.get(method).runs_own_pruning:
        _run_custom(cfg, paths, ctx, method, run, progress)
        return
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


def _run_custom(cfg: ExperimentConfig, paths: ExperimentPaths, ctx, method: str, run: int, progress: bool) -> None:
    """A method with its own ``prune_to_target_macs`` runs once per run (it has no strategy for a
    searcher to vary), in this process, with the run's seed; its result dict becomes one row."""
    impl = get_method(method)
    base = base_strategy(cfg)
    dense_macs, dense_params = count_macs_params(ctx.model, torch.zeros(ctx.input_shape))
    ids = {**ctx.identifiers(f"{_safe(method)}-run{run}", 0), "target_kind": base.target_kind}
    started = dt.datetime.now(dt.timezone.utc)
    seed_everything(ctx.seed)
    try:
        if base.target_kind != "macs":
            raise ConfigurationError(f"{method} takes a MACs target (prune_to_target_macs); this comparison's target "
                                     f"is {cfg.target.describe()}")
        target = base.target_budget if base.target_budget is not None else dense_macs * (1 - base.target_reduction)
        out = impl.prune_to_target_macs(cfg.model.name, float(target), ctx.dataset)
        accuracy, macs = _number(out, "final_accuracy"), _number(out, "final_macs")
        params = out.get("final_params", out.get("params"))
        row = TrialResult(**ids, strategy_json=json.dumps({"method": method, "custom": True}), status="ok",
                          target_value=target, target_reduction=base.target_reduction, base_macs=dense_macs,
                          base_params=dense_params, macs=macs, params=params, top1_after=accuracy,
                          macs_reduction=1 - macs / dense_macs,
                          params_reduction=None if params is None else 1 - params / dense_params,
                          target_error=macs / target - 1, started_at=started,
                          finished_at=dt.datetime.now(dt.timezone.utc),
                          seconds_total=(dt.datetime.now(dt.timezone.utc) - started).total_seconds())
    except Exception as err:  # noqa: BLE001 - the user's code failed: one failed row, like any trial
        logger.warning("%s (run %d) failed: %s", method, run, err)
        row = TrialResult.failed(error=err, **ids, strategy_json=json.dumps({"method": method, "custom": True}),
                                 started_at=started, finished_at=dt.datetime.now(dt.timezone.utc))
    sink = RowSink(ResultStore(paths.results), total=1, progress=print_progress if progress else None)
    sink(row)
    if sink.error is not None:
        raise sink.error


def _number(out: Any, key: str) -> float:
    if not isinstance(out, dict) or not isinstance(out.get(key), (int, float)) or isinstance(out.get(key), bool):
        raise PruningError(f"prune_to_target_macs must return a dict with a number {key!r}; got {out!r:.200}")
    return float(out[key])


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
        mean = statistics.fmean(measured) if measured else None
        out[method] = {
            "final_accuracy": mean,
            "best_accuracy": max(measured) if measured else None,
            "mean": mean,
            "std": statistics.stdev(measured) if len(measured) > 1 else (0.0 if measured else None),
            "best_per_run": best, "runs": runs,
            "trials_used": sum(1 for r in mine if r.status != "rejected"),
            "trials_ok": len(ok), "wall_time_s": walls.get(method),
            "macs_reduction": top.macs_reduction if top else None,
            "params_reduction": top.params_reduction if top else None,
            "final_macs": top.macs if top else None,
            "error": None if measured else no_model_reason(mine),
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
    """One baseline strategy through the shared trial function, stored as one row (no Ray needed).

    Without a config, a model that has pretrained weights is pruned from them (as a user of the
    API reference expects); where they cannot be loaded (offline) it falls back to random
    initialisation with one warning.

    Raises:
        PruningError: The target is infeasible for this model, or the trial produced no model
            (the row is stored first and is the error's ``result``).
    """
    extra = [f"model.name={model_name}", f"dataset.name={dataset}", *target_overrides(target_macs=target_macs),
             *(overrides or [])]
    cfg = load_config(config_path, overrides=extra) if config_path else load_config_dict({}, overrides=extra)
    paths = ExperimentPaths(Path(output_dir) if output_dir else cfg.output_path() / method.name)
    chosen = {o.split("=", 1)[0].strip() for o in overrides or []} & {"model.pretrained", "model.checkpoint"}
    context, pretrained = _baseline_context(cfg, method.name, pretrained_default=config_path is None and not chosen)
    check_target(cfg, context)
    kinds = list(ProfilingAgent(profiling_agent_config(cfg)).execute(profile_request(cfg, context))["profile"]["kinds"])
    strategy = method.make_strategy(base_strategy(cfg), kinds)
    row = evaluate_strategy(strategy, context, trial_id=f"{method.name}-{int(time.time() * 1000)}", iteration=0)
    sink = RowSink(ResultStore(paths.results))
    sink(row)
    if sink.error is not None:
        raise sink.error
    result = {"method": method.name, "status": row.status, "error": row.error, "final_accuracy": row.top1_after,
              "accuracy_before_finetune": row.top1_before, "final_macs": row.macs, "params": row.params,
              "macs_reduction": row.macs_reduction, "params_reduction": row.params_reduction,
              "target_error": row.target_error, "pretrained": pretrained,
              "strategy": json.loads(row.strategy_json), "results_path": str(paths.results)}
    if row.status != "ok" or row.top1_after is None:
        raise PruningError(f"{method.name} produced no model of {model_name} at {cfg.target.describe()}: "
                           f"{row.error_type or 'failed'}: {row.error} (row stored in {paths.results})", result=result)
    return result


def _baseline_context(cfg: ExperimentConfig, method: str, *, pretrained_default: bool):
    """The trial context of a single baseline run, from pretrained weights where the model has them."""
    if cfg.model.pretrained or cfg.model.checkpoint or cfg.model.train_steps:
        return build_context(cfg, method=method, run=0), cfg.model.pretrained
    if not (pretrained_default and has_pretrained_weights(cfg.model.name)):
        logger.warning("%s: %s is randomly initialised (no pretrained weights, model.checkpoint or model.train_steps), "
                       "so its accuracy is near chance", method, cfg.model.name)
        return build_context(cfg, method=method, run=0), False
    try:
        return build_context(apply_overrides(cfg, ["model.pretrained=true"]), method=method, run=0), True
    except ModelDownloadError as err:
        logger.warning("%s: pretrained weights of %s could not be loaded (%s); pruning a randomly initialised model, "
                       "whose accuracy is near chance. Fill the weight cache with "
                       "multi_agent_pruning.tools.ModelDownloader on a machine with internet, or pass a config with "
                       "model.checkpoint.", method, cfg.model.name, err)
        return build_context(cfg, method=method, run=0), False
