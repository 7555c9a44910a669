"""Fair comparisons: every method gets the same trial budget, seeds and fine-tune budget.

All trials of a comparison land in one result table with ``method`` and ``run`` columns.
``multi_agent`` is the master-driven search; ``optuna_tpe`` (``optuna_nsga2``) is Optuna over the
same strategy space; a baseline name (``magnitude_l2``, ``taylor`` ...) is that baseline with its
hyperparameters tuned by Optuna TPE within the budget (budget 1: its default strategy).

A sweep of targets (``target.sweep``) keeps the budget per method the same in total:
``multi_agent`` searches all targets in one search of ``trials_per_method`` trials (the master
decides where to spend them); every Optuna method runs one study per target with the budget split
evenly (:func:`split_budget`); a custom method runs once per target. Each method's entry of the
comparison then has its frontier: the best top-1 per target and the frontier area
(:mod:`multi_agent_pruning.stats.frontier`).
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
from multi_agent_pruning.config import (
    ExperimentConfig, TargetConfig, apply_overrides, config_to_dict, load_config, load_config_dict,
)
from multi_agent_pruning.core.engine import count_macs_params
from multi_agent_pruning.core.strategy import Strategy
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
from multi_agent_pruning.orchestrator.tune_run import (
    build_tuner,
    rung_gate,
    concurrency,
    fit_search,
    profile_with_actor,
    run_search,
    finish_dense_evaluation,
    start_dense_evaluation,
)
from multi_agent_pruning.orchestrator.targets import target_overrides
from multi_agent_pruning.results import ResultStore, TargetKey, TrialResult, point_target, row_target
from multi_agent_pruning.search.interrupt import SearchInterrupted, handle_stop_signals, raise_if_interrupted
from multi_agent_pruning.search.optuna_search import build_optuna_searcher, method_for, run_params_trial
from multi_agent_pruning.search.ordered import InOrderSearcher
from multi_agent_pruning.search.rows import RowRecorder, RowSink
from multi_agent_pruning.search.trial import evaluate_dense, evaluate_strategy, seed_everything, with_dense_top1
from multi_agent_pruning.stats.frontier import analyze_frontier
from multi_agent_pruning.utils.atomic import atomic_write_json

logger = logging.getLogger(__name__)

__all__ = ["all_methods", "check_methods", "compare_methods", "format_comparison", "run_single_strategy",
           "split_budget", "summarise_comparison"]

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

    A sweep of targets (``cfg.target.sweep``) gives every method the same total budget:
    ``multi_agent`` spends ``trials_per_method`` trials over all targets in one search, each
    Optuna method (``optuna_tpe``, ``optuna_nsga2``, ``optuna_tpe:<method>``, a baseline name)
    runs one study per target with :func:`split_budget`'s share (its own journal
    ``optuna/<method>-<target slug>-run<run>.journal``, study and Tune run name), starting from
    that target's base strategy, and a custom method runs once per target and run.

    Returns:
        ``{method: {final_accuracy, best_accuracy, mean, std, best_per_run, trials_used,
        wall_time_s, macs_reduction, params_reduction, final_macs, error}}``; ``final_accuracy``
        is the mean over runs of each run's best top-1 (``best_accuracy`` the best of all), None
        with the reason in ``error`` for a method that produced no model. A sweep adds
        ``frontier``, ``frontier_area`` and ``best_target`` (see :func:`summarise_comparison`).
        Also written to ``comparison.json`` in the output directory.

    Raises:
        ConfigurationError: An unknown method, a budget or run count below 1, or a sweep whose
            budget is smaller than its number of targets (every method must be able to try each).
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
    targets = cfg.target.points()
    if len(targets) > 1 and budget < len(targets) and not all(_runs_own_pruning(m) for m in methods):
        raise ConfigurationError("Invalid trial budget:", [ConfigIssue(
            "trials_per_method", f"must be at least the number of targets of the sweep ({len(targets)}: "
                                 f"{cfg.target.describe()}) so that every method tries each target", budget)])
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
        contexts = _with_dense_top1(cfg, contexts)
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
    comparison = summarise_comparison(ResultStore(paths.results), cfg.experiment.name, methods, walls,
                                      targets=_target_keys(targets) if len(targets) > 1 else None)
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


def split_budget(budget: int, targets: int) -> list[int]:
    """Trials per target of a sweep, easiest target first: ``budget // targets`` each, and the
    remainder one more each to the hardest targets (they have the most to gain from a trial).

    A target whose share is 0 gets no trials at all (no study is started for it); that happens
    only when ``budget < targets``, which :func:`compare_methods` refuses.

    Raises:
        ConfigurationError: ``targets`` is below 1 or ``budget`` is negative.
    """
    if targets < 1 or budget < 0:
        raise ConfigurationError(f"split_budget needs targets >= 1 and budget >= 0 (got {targets}, {budget})")
    share, extra = divmod(budget, targets)
    return [share + (index >= targets - extra) for index in range(targets)]


def _with_dense_top1(cfg: ExperimentConfig, contexts: dict[int, Any]) -> dict[int, Any]:
    """The runs' contexts with the dense model's top-1, measured once: every run has the same
    dense model and evaluation set (``build_context`` seeds both with ``experiment.seed``)."""
    first = next(iter(contexts.values()))
    measured = finish_dense_evaluation(first, start_dense_evaluation(cfg, first)).dense_top1
    return {run: dataclasses.replace(context, dense_top1=measured) for run, context in contexts.items()}


def _runs_own_pruning(method: str) -> bool:
    return method in list_methods() and METHOD_REGISTRY.get(method).runs_own_pruning


def _target_keys(points: Sequence[TargetConfig]) -> list[TargetKey]:
    return [point_target(p) for p in points]


def _run_method(cfg: ExperimentConfig, paths: ExperimentPaths, context, method: str, run: int, budget: int,
                progress: bool) -> None:
    ctx = dataclasses.replace(context, method=method)
    if _runs_own_pruning(method):
        if not cfg.target.is_sweep:
            _run_custom(cfg, paths, ctx, method, run, progress)
            return
        for point in cfg.target.points():
            _run_custom(cfg, paths, ctx, method, run, progress, point=point)
        return
    if method == "multi_agent":
        run_cfg = cfg.model_copy(update={"search": cfg.search.model_copy(update={"trials": budget})})
        run_search(run_cfg, paths, ctx, progress=progress, save_best=False)
        return
    _run_optuna(cfg, paths, ctx, method, run, budget, progress)


def _run_optuna(cfg: ExperimentConfig, paths: ExperimentPaths, ctx, method: str, run: int, budget: int,
                progress: bool) -> None:
    """One Optuna study of ``method``; for a sweep, one per target with its share of the budget."""
    profile = profile_with_actor(cfg, ctx)
    if not cfg.target.is_sweep:
        _run_study(cfg, paths, ctx, method, run, budget, progress, profile, base_strategy(cfg), name=_safe(method))
        return
    points = cfg.target.points()
    for point, key, share in zip(points, _target_keys(points), split_budget(budget, len(points))):
        if share:  # 0 only for a budget below the number of targets, which _compare refuses
            _run_study(cfg, paths, ctx, method, run, share, progress, profile, base_strategy(cfg, point),
                       name=f"{_safe(method)}-{key.slug}")


def _run_study(cfg: ExperimentConfig, paths: ExperimentPaths, ctx, method: str, run: int, budget: int,
               progress: bool, profile: dict[str, Any], base: Strategy, *, name: str) -> None:
    """Optuna over ``method``'s space from ``base`` for ``budget`` trials; ``name`` (with the run)
    names its journal, its study and its Tune run."""
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
                                        storage_file=paths.root / "optuna" / f"{name}-run{run}.journal",
                                        study_name=f"{cfg.experiment.name}-{name}-run{run}",
                                        first_strategies=first, sampler=sampler)
    if cfg.effective_search().reproducible:
        searcher = InOrderSearcher(searcher, lag=parallel - 1, budget=budget)
    store = ResultStore(paths.results)
    sink = RowSink(store, total=budget, progress=print_progress if progress else None)
    ids = {k: v for k, v in ctx.identifiers("", 0).items() if k not in ("trial_id", "iteration")}
    with rung_gate(cfg, ctx) as (gated, gate):
        trainable = tune.with_parameters(run_params_trial, context=gated, method_name=method,
                                         base_json=base.to_json(), kinds=kinds)
        tuner = build_tuner(cfg, trainable, searcher, budget=budget, parallel=parallel,
                            name=f"{name}-run{run}", storage=paths.tune, gate=gate,
                            # A trial whose worker died still names its target (a sweep's frontier counts it).
                            callbacks=[RowRecorder(sink, {**ids, "target_reduction": base.target_reduction,
                                                          "target_value": base.target_budget}, base.target_kind)])
        fit_search(tuner, sink)
    if sink.error is not None:
        raise sink.error
    raise_if_interrupted()


def _run_custom(cfg: ExperimentConfig, paths: ExperimentPaths, ctx, method: str, run: int, progress: bool,
                point: TargetConfig | None = None) -> None:
    """A method with its own ``prune_to_target_macs`` runs once per run (it has no strategy for a
    searcher to vary), in this process, with the run's seed; its result dict becomes one row.

    ``point`` is one target of a sweep: the trial id names it, and a failed row records it too
    (so that it counts at that target).
    """
    impl = get_method(method)
    base = base_strategy(cfg, point)
    dense_macs, dense_params = count_macs_params(ctx.model, torch.zeros(ctx.input_shape))
    name = _safe(method) if point is None else f"{_safe(method)}-{_target_keys([point])[0].slug}"
    ids = {**ctx.identifiers(f"{name}-run{run}", 0), "target_kind": base.target_kind}
    where = {} if point is None else {"target_reduction": base.target_reduction, "target_value": base.target_budget}
    started = dt.datetime.now(dt.timezone.utc)
    seed_everything(ctx.seed)
    try:
        if base.target_kind != "macs":
            raise ConfigurationError(f"{method} takes a MACs target (prune_to_target_macs); this comparison's target "
                                     f"is {(point or cfg.target).describe()}")
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
        row = TrialResult.failed(error=err, **ids, **where, strategy_json=json.dumps({"method": method, "custom": True}),
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


def summarise_comparison(store: ResultStore, experiment: str, methods: Sequence[str], walls: dict[str, float], *,
                         targets: Sequence[TargetKey] | None = None) -> dict[str, Any]:
    """Per method: best accuracy per run, mean +- std over runs, trials used, wall time.

    ``targets`` are the targets of a sweep, easiest first (None: one target). Each method's entry
    then also has:

    - ``frontier``: one entry per target, easiest first: ``target`` (its label, as
      :class:`~multi_agent_pruning.results.TargetKey`), ``mean`` and ``std`` over runs of each
      run's best top-1 at that target, ``best_per_run`` (aligned with ``runs``; None for a run
      without a model there), ``macs`` (mean MACs of those bests), ``trials_used``, ``trials_ok``;
    - ``frontier_area``: ``mean``, ``std``, ``per_run`` and ``targets_reached`` (aligned with
      ``runs``; None for a run without a model at any target) of the normalised hypervolume of
      each run's frontier (:mod:`multi_agent_pruning.stats.frontier`: MACs as a fraction of the
      dense model's, reference accuracy 0);
    - ``best_target``: the hardest target at which the method produced a model in some run. The
      top-level ``final_accuracy``, ``best_accuracy``, ``mean``, ``std``, ``best_per_run``,
      ``macs_reduction``, ``params_reduction`` and ``final_macs`` are that target's (so
      ``final_accuracy`` is None, with ``error``, only when no target produced a model);
      ``trials_used`` and ``trials_ok`` count every target.
    """
    rows = store.rows(experiment=experiment)
    mine = {method: [r for r in rows if r.method == method] for method in methods}
    runs = {method: sorted({r.run for r in mine[method]}) for method in methods}
    out = {method: _summary(mine[method], runs[method], walls.get(method)) for method in methods}
    if not targets:
        return out
    frame = store.read(experiment=experiment).to_pandas()
    report = analyze_frontier(frame[frame["method"].isin(list(methods))])
    for method in methods:
        out[method] = _sweep_summary(out[method], mine[method], runs[method], list(targets), report.to_dict(), method)
    return out


def _summary(mine: list[TrialResult], runs: list[int], wall: float | None) -> dict[str, Any]:
    best = []
    for run in runs:
        scores = [r.top1_after for r in mine if r.run == run and r.status == "ok" and r.top1_after is not None]
        best.append(max(scores) if scores else None)
    measured = [b for b in best if b is not None]
    ok = [r for r in mine if r.status == "ok" and r.top1_after is not None]
    top = max(ok, key=lambda r: r.top1_after, default=None)
    mean, std = _spread(best)
    return {
        "final_accuracy": mean,
        "best_accuracy": max(measured) if measured else None,
        "mean": mean,
        "std": std,
        "best_per_run": best, "runs": runs,
        "trials_used": sum(1 for r in mine if r.status != "rejected"),
        "trials_ok": len(ok), "wall_time_s": wall,
        "macs_reduction": top.macs_reduction if top else None,
        "params_reduction": top.params_reduction if top else None,
        "final_macs": top.macs if top else None,
        "error": None if measured else no_model_reason(mine),
    }


def _spread(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation of the values present (std 0.0 for one, None for none)."""
    measured = [v for v in values if v is not None]
    mean = statistics.fmean(measured) if measured else None
    return mean, statistics.stdev(measured) if len(measured) > 1 else (0.0 if measured else None)


def _sweep_summary(entry: dict[str, Any], mine: list[TrialResult], runs: list[int], targets: list[TargetKey],
                   report: dict[str, Any], method: str) -> dict[str, Any]:
    """``entry`` with the method's frontier, its area and the top-level values of ``best_target``."""
    frontier, best_target = [], None
    for key in targets:
        here = [r for r in mine if row_target(r) == key]
        found = report["per_target"].get(key.label, {}).get(method, {})
        best = [found.get("per_run", {}).get(run) for run in runs]
        mean, std = _spread(best)
        frontier.append({"target": key.label, "target_kind": key.kind, "target_reduction": key.reduction,
                         "target_budget": key.budget, "mean": mean, "std": std, "best_per_run": best,
                         "macs": found.get("macs"), "trials_used": sum(1 for r in here if r.status != "rejected"),
                         "trials_ok": sum(1 for r in here if r.status == "ok" and r.top1_after is not None)})
        if mean is not None:
            best_target = key
    area = report["areas"].get(method, {})
    per_run = [area.get("per_run", {}).get(run) for run in runs]
    mean, std = _spread(per_run)
    out = dict(entry)
    if best_target is not None:
        chosen = _summary([r for r in mine if row_target(r) == best_target], runs, entry["wall_time_s"])
        out.update({k: chosen[k] for k in ("final_accuracy", "best_accuracy", "mean", "std", "best_per_run",
                                           "macs_reduction", "params_reduction", "final_macs")})
    out.update(best_target=None if best_target is None else best_target.label, frontier=frontier,
               frontier_area={"mean": mean, "std": std, "per_run": per_run,
                              "targets_reached": [area.get("targets_reached", {}).get(run) for run in runs]})
    return out


def format_comparison(comparison: dict[str, Any]) -> str:
    """The comparison as text: one line per method, ranked by mean top-1; for a sweep, ranked by
    frontier area, then the best top-1 per target (mean over runs) of each method."""
    if any("frontier" in c for c in comparison.values()):
        return _format_sweep(comparison)
    lines = [f"{'method':<16} {'mean top-1':>10} {'std':>7} {'best':>7} {'trials':>7} {'ok':>4} {'wall s':>8}"]
    ranked = sorted(comparison.items(), key=lambda kv: -(kv[1]["mean"] if kv[1]["mean"] is not None else -1))
    for method, c in ranked:
        lines.append(f"{method:<16} {_fmt(c['mean'], '>10.4f')} {_fmt(c['std'], '>7.4f')} "
                     f"{_fmt(c['best_accuracy'], '>7.4f')} {c['trials_used']:>7} {c['trials_ok']:>4} "
                     f"{_fmt(c['wall_time_s'], '>8.1f')}")
    return "\n".join(lines)


def _fmt(value: float | None, spec: str) -> str:
    """``value`` formatted by ``spec`` (``">7.4f"``); ``-`` in the same width for None."""
    return format("-", spec.split(".")[0]) if value is None else format(value, spec)


def _format_sweep(comparison: dict[str, Any]) -> str:
    ranked = sorted(comparison.items(), key=lambda kv: -(_area(kv[1]) if _area(kv[1]) is not None else -1))
    lines = [f"{'method':<16} {'area':>7} {'std':>7} {'trials':>7} {'ok':>4} {'wall s':>8}  best target"]
    for method, c in ranked:
        area = c.get("frontier_area") or {}
        lines.append(f"{method:<16} {_fmt(area.get('mean'), '>7.4f')} {_fmt(area.get('std'), '>7.4f')} "
                     f"{c['trials_used']:>7} {c['trials_ok']:>4} {_fmt(c['wall_time_s'], '>8.1f')}  "
                     f"{c.get('best_target') or '-'}")
    lines.append("area: normalised hypervolume of (MACs kept / dense MACs, top-1) per run, mean over runs; "
                 "1 = all accuracy at no MACs")
    targets = [e["target"] for e in next(c["frontier"] for _, c in ranked if "frontier" in c)]
    width = max(len("best top-1 per target"), *(len(t) for t in targets))
    columns = [(method, max(len(method), 7)) for method, _ in ranked]
    lines += ["", f"{'best top-1 per target':<{width}}" + "".join(f" {m:>{w}}" for m, w in columns)]
    for index, target in enumerate(targets):
        cells = []
        for (method, w), (_, c) in zip(columns, ranked):
            entries = c.get("frontier") or []
            cells.append(f" {_fmt(entries[index]['mean'] if index < len(entries) else None, f'>{w}.4f')}")
        lines.append(f"{target:<{width}}" + "".join(cells))
    return "\n".join(lines)


def _area(entry: dict[str, Any]) -> float | None:
    return (entry.get("frontier_area") or {}).get("mean")


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
    context = with_dense_top1(context, lambda: evaluate_dense(context))
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
