"""The master-driven Ray Tune search of one experiment."""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.search import ConcurrencyLimiter

from multi_agent_pruning.actors import ProfilingActor, create_actors, on_driver_node
from multi_agent_pruning.config import ExperimentConfig
from multi_agent_pruning.core.strategy import Strategy
from multi_agent_pruning.orchestrator.prepare import (
    ExperimentPaths,
    base_strategies,
    print_progress,
    profile_request,
    profiling_agent_config,
)
from multi_agent_pruning.orchestrator.ray_runtime import started_local
from multi_agent_pruning.search.interrupt import InterruptStopper, raise_if_interrupted, requested, searching
from multi_agent_pruning.results import ResultStore, TargetKey, point_target, row_target
from multi_agent_pruning.search.rows import RowSink
from multi_agent_pruning.search.fidelity import build_scheduler, start_gate
from multi_agent_pruning.search.searcher import MasterSearcher
from multi_agent_pruning.search.trial import TrialContext, evaluate_dense, with_dense_top1
from multi_agent_pruning.search.tune_trial import run_tune_trial
from multi_agent_pruning.utils.atomic import atomic_replace_dir

logger = logging.getLogger(__name__)

_MODEL_FILES = ("model.json", "model.safetensors")

__all__ = ["build_tuner", "cluster_fits", "concurrency", "finish_dense_evaluation", "find_trial_checkpoint",
           "fit_search", "profile_with_actor", "rung_gate", "run_search", "save_best_model", "save_best_models",
           "saved_trial_id",
           "start_dense_evaluation", "trial_resources", "use_prestarted_workers"]


def trial_resources(cfg: ExperimentConfig) -> dict[str, float]:
    hw = cfg.hardware
    resources = {"cpu": float(hw.cpus_per_trial)}
    if hw.gpus_per_trial:
        resources["gpu"] = float(hw.gpus_per_trial)
    return resources


def concurrency(cfg: ExperimentConfig) -> int:
    """The search's width: the most trials in flight at once (Tune's ``ConcurrencyLimiter``; Tune
    keeps that many trials pending when they do not fit, which an autoscaler sees as demand), the
    smallest batch of the master, and the reveal lag + 1 of a reproducible search.

    On the local cluster :func:`init_ray` started (its size is fixed for the run by
    ``hardware.num_cpus`` / ``num_gpus``): the trials that fit in it, at most
    ``search.max_concurrent_trials``. On a joined cluster, which may grow and shrink during the
    search: ``search.max_concurrent_trials``, else the batch size (``search.batch_size``, else
    ``ceil(trials / max_iterations)``); never the size the cluster happens to have when the
    search starts (docs/cluster.md, "How many trials at once").
    """
    search_cfg = cfg.effective_search()
    limit = search_cfg.max_concurrent_trials
    if not started_local():
        return limit or search_cfg.batch_size or math.ceil(search_cfg.trials / search_cfg.max_iterations)
    return max(1, min(cluster_fits(cfg) + ([limit] if limit else [])))


def cluster_fits(cfg: ExperimentConfig) -> list[int]:
    """Trials that fit in the cluster's resources now: by CPUs, and by GPUs when trials take some."""
    total = ray.cluster_resources()
    fits = [math.floor(total.get("CPU", 1) / max(cfg.hardware.cpus_per_trial, 1e-9))]
    if cfg.hardware.gpus_per_trial:
        fits.append(math.floor(total.get("GPU", 0) / cfg.hardware.gpus_per_trial + 1e-9))
    return fits


def profile_with_actor(cfg: ExperimentConfig, context: TrialContext) -> dict[str, Any]:
    """Runs the profiling agent as a Ray actor on the dense model."""
    actor = ProfilingActor.options(**on_driver_node()).remote(profiling_agent_config(cfg))
    out = ray.get(actor.execute.remote(profile_request(cfg, context)))
    ray.kill(actor)
    return out["profile"]


@ray.remote(max_retries=0)
def _dense_top1(context: TrialContext) -> float:
    return evaluate_dense(context)


def start_dense_evaluation(cfg: ExperimentConfig, context: TrialContext) -> ray.ObjectRef | None:
    """Starts measuring the dense model's top-1 (``TrialContext.dense_top1``) as one Ray task with
    one trial's resources (its GPU share where trials have one), so it runs beside profiling.
    None when ``context`` already has it (a comparison measures it once for all its methods)."""
    if context.dense_top1 is not None:
        return None
    resources = trial_resources(cfg)
    gpus = resources.get("gpu", 0.0) if cfg.hardware.device != "cpu" else 0.0
    return _dense_top1.options(num_cpus=resources["cpu"], num_gpus=gpus).remote(context)


def finish_dense_evaluation(context: TrialContext, pending: ray.ObjectRef | None) -> TrialContext:
    """``context`` with the dense top-1 that :func:`start_dense_evaluation` is measuring
    (``search.trial.with_dense_top1``: a failure is a warning, not an error)."""
    return context if pending is None else with_dense_top1(context, lambda: ray.get(pending))


def master_settings(cfg: ExperimentConfig, context: TrialContext, batch_size: int) -> dict[str, Any]:
    """The master agent's config for one search. Its policy is seeded with the run's seed
    (``experiment.seed + run`` in comparisons), so repeated runs are independent searches."""
    search_cfg = cfg.effective_search()
    return {"max_iterations": search_cfg.max_iterations, "convergence_threshold": search_cfg.convergence_threshold,
            "batch_size": batch_size, "exploration": cfg.agents.master_agent.exploration, "seed": context.seed}


def run_search(cfg: ExperimentConfig, paths: ExperimentPaths, context: TrialContext, *, resume: bool = False,
               progress: bool = True, save_best: bool = True) -> dict[str, Any]:
    """Profiles, then lets the master actor drive a Ray Tune search; every row lands in the store."""
    store = ResultStore(paths.results)
    method = context.method
    existing = usable_history([r for r in store.read(experiment=cfg.experiment.name, method=method).to_pylist()
                               if r["run"] == context.run]) if resume else []
    search_cfg = cfg.effective_search()
    budget = search_cfg.trials - sum(1 for r in existing if r["status"] != "rejected")
    points = [{"kind": t.kind, "reduction": t.reduction, "budget": t.budget} for t in cfg.target.points()]
    target = points[0] if len(points) == 1 else points
    bases = base_strategies(cfg)
    parallel = concurrency(cfg)
    batch_size = search_cfg.batch_size or max(parallel, math.ceil(search_cfg.trials / search_cfg.max_iterations))
    master_config = master_settings(cfg, context, batch_size)
    start_iteration = 1 + max((r["iteration"] for r in existing), default=-1)
    if existing and budget > 0:
        # The interrupted run may have used rounds whose trials were lost with it (a new round
        # starts as soon as one trial finishes): a resumed search gets the rounds its remaining
        # trials need, so --resume always finishes the trial budget.
        master_config["max_iterations"] = max(master_config["max_iterations"],
                                              start_iteration + math.ceil(budget / batch_size))
    if cfg.llm_enabled():
        from multi_agent_pruning.agents.llm import LLMSettings

        master_config["llm_settings"] = LLMSettings.from_config(cfg.llm)
    # Started first: their processes (torch and the agents to import, seconds each) boot while the
    # profiling actor works, instead of after it.
    master, analysis = create_actors(master_config, {"safety_enforcement": cfg.agents.analysis_agent.safety_enforcement},
                                     store_root=str(paths.results) if resume else None,
                                     experiment=cfg.experiment.name, method=method)
    try:
        dense = start_dense_evaluation(cfg, context)
        profile = profile_with_actor(cfg, context)
        context = finish_dense_evaluation(context, dense)
        record = RowSink(store, existing={r["trial_id"] for r in existing}, total=len(existing) + max(budget, 0),
                         progress=print_progress if progress else None)
        searcher = MasterSearcher(master, analysis, profile=profile, target=target,
                                  base=bases[0] if len(bases) == 1 else bases,
                                  budget=max(budget, 0), batch_size=batch_size,
                                  identifiers={k: v for k, v in context.identifiers("", 0).items()
                                               if k not in ("trial_id", "iteration")},
                                  history=existing, record=record, start_iteration=start_iteration,
                                  reveal_lag=parallel - 1 if search_cfg.reproducible else None)
        if budget > 0:
            with rung_gate(cfg, context) as (gated, gate):
                trainable = tune.with_parameters(run_tune_trial, context=gated)
                fit_search(build_tuner(cfg, trainable, searcher, budget=budget, parallel=parallel,
                                       name=f"{method}-run{context.run}", storage=paths.tune, gate=gate), record)
    finally:
        # Free their processes now: a comparison runs one search per method and run, and the
        # Tune state may keep the handles (and so the actors, ~0.8 GB each) alive until exit.
        for actor in (master, analysis):
            ray.kill(actor)
    if record.error is not None:
        raise record.error  # rows already stored are intact; --resume continues once fixed
    if save_best:
        save_best_models(cfg, store, paths, method)
    raise_if_interrupted()
    return {"method": method, "iterations": searcher.iterations_run + (start_iteration if resume else 0),
            "stop_reason": searcher.stop_reason, "profile": profile, "concurrency": parallel,
            "batch_size": batch_size}


def usable_history(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stored rows a resumed search can learn from: a row whose strategy no longer parses
    (an edited file, a criterion since removed) is skipped with a warning, like an unreadable
    file, and its trial is run again."""
    usable, skipped = [], []
    for row in rows:
        try:
            Strategy.from_json(row["strategy_json"])
        except Exception as err:  # any reason a strategy cannot be rebuilt
            skipped.append(f"{row.get('trial_id')!r} ({type(err).__name__}: {str(err)[:200]})")
        else:
            usable.append(row)
    if skipped:
        logger.warning("Skipped %d stored row(s) whose strategy cannot be read; their trials run again: %s",
                       len(skipped), "; ".join(skipped[:5]))
    return usable


def use_prestarted_workers() -> bool:
    """Lets Tune's trial actors start in the idle worker processes Ray prestarts.

    Tune gives every trial actor ``runtime_env={"env_vars": {"PL_DISABLE_FORK": "1"}}`` (a
    PyTorch Lightning workaround, ``ray/tune/execution/class_cache.py``). An actor whose
    runtime_env differs from the job's cannot use the workers Ray prestarts at ``ray.init``: each
    trial slot then starts a new Python process first (about 1-2 s here,
    benchmarks/history/orchestration_overhead.md). This
    project does not use Lightning, so the default is dropped; the variables Tune propagates from
    the driver (AWS credentials, Ray Train flags) are still propagated when they are set. Returns
    True when Tune's default was there to drop (False on a Ray without it: nothing to do).
    """
    try:
        from ray.tune.execution import class_cache
    except ImportError:  # pragma: no cover - a Ray that moved the module
        return False
    defaults = getattr(class_cache, "DEFAULT_ENV_VARS", None)
    if not isinstance(defaults, dict) or "PL_DISABLE_FORK" not in defaults:
        return False
    defaults.pop("PL_DISABLE_FORK")
    logger.debug("Tune trial actors: dropped PL_DISABLE_FORK from their runtime_env (prestarted workers)")
    return True


def fit_search(tuner: tune.Tuner, sink: RowSink) -> tune.ResultGrid:
    """``tuner.fit()``, stopped cleanly by SIGINT/SIGTERM (:mod:`~multi_agent_pruning.search.interrupt`);
    the caller raises ``SearchInterrupted`` after keeping what it needs.

    Raises:
        ResultStoreError: The rows could not be stored (a full disk): the search stopped, and
            whatever Tune raised on the way out (it cannot read back the error files it could
            not write either) is only the consequence.
    """
    with searching():
        try:
            grid = tuner.fit()
        except Exception as err:
            if sink.error is not None:
                raise sink.error from err
            raise
    if requested():
        logger.warning("search interrupted: the rows stored so far are kept; --resume continues it")
    return grid


@contextlib.contextmanager
def rung_gate(cfg: ExperimentConfig, context: TrialContext) -> Iterator[tuple[TrialContext, Any]]:
    """``(context, gate)`` for one search: with ``search.scheduler: asha`` and
    ``search.reproducible``, a new :class:`~multi_agent_pruning.search.fidelity.RungGate` (named in
    ``context.rung_gate``, killed on exit); otherwise ``(context, None)``."""
    search_cfg = cfg.effective_search()
    name, gate = start_gate(search_cfg.reproducible, context.rungs)
    try:
        yield (replace(context, rung_gate=name) if name else context), gate
    finally:
        if gate is not None:
            ray.kill(gate)


def build_tuner(cfg: ExperimentConfig, trainable: Any, searcher: Any, *, budget: int, parallel: int, name: str,
                storage: Any, callbacks: list | None = None, gate: Any = None) -> tune.Tuner:
    """The Tuner every search uses: per-trial resources, concurrency limit, retries, actor reuse,
    and the scheduler of ``search.scheduler`` (FIFO, or ASHA over the rungs; ``gate``: its
    :func:`rung_gate`)."""
    search_cfg = cfg.effective_search()
    use_prestarted_workers()
    scheduler = build_scheduler(search_cfg.rung_budgets(), search_cfg.reduction_factor, gate)
    return tune.Tuner(
        tune.with_resources(trainable, trial_resources(cfg)),
        tune_config=tune.TuneConfig(search_alg=ConcurrencyLimiter(searcher, max_concurrent=parallel),
                                    num_samples=budget, reuse_actors=search_cfg.reuse_actors, scheduler=scheduler),
        run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=search_cfg.max_failures),
                                  callbacks=callbacks, stop=InterruptStopper()),
    )


def save_best_model(store: ResultStore, paths: ExperimentPaths, experiment: str, method: str, *,
                    target: TargetKey | None = None, destination: Path | None = None) -> str | None:
    """Puts the best ``ok`` row's model in ``best_model/``, whatever run of the experiment (a
    resumed one, or the one before an interruption) produced it; returns its trial id.

    With ``target``, only the rows of that target count (a sweep), and the model goes to
    ``destination``. The table decides which trial is best; its model is the checkpoint Tune
    stored for that trial under ``tune/``. A best model already in place is kept when the
    checkpoint is gone.
    """
    rows = [r for r in store.rows(experiment=experiment, method=method) if r.status == "ok" and r.top1_after is not None
            and (target is None or row_target(r) == target)]
    if not rows:
        return None
    destination = destination or paths.best_model
    best = max(rows, key=lambda r: (r.top1_after, -(r.macs or math.inf)))
    if saved_trial_id(destination) == best.trial_id:
        return best.trial_id
    source = find_trial_checkpoint(paths.tune, best.trial_id)
    if source is None:
        logger.warning("the best trial's model (%s) is not among the stored checkpoints under %s; %s "
                       "is left as it was", best.trial_id, paths.tune, destination)
        return None
    destination.parent.mkdir(parents=True, exist_ok=True)
    atomic_replace_dir(source, destination)
    return best.trial_id


def save_best_models(cfg: ExperimentConfig, store: ResultStore, paths: ExperimentPaths, method: str) -> None:
    """``best_model/`` of the run; for a sweep also ``best_models/<target>/``, one per target,
    and ``best_model/`` is the model of the hardest target that produced one."""
    if not cfg.target.is_sweep:
        save_best_model(store, paths, cfg.experiment.name, method)
        return
    saved = None
    for point in cfg.target.points():
        key = point_target(point)
        trial = save_best_model(store, paths, cfg.experiment.name, method, target=key,
                                destination=paths.best_models / key.slug)
        if trial is not None:
            saved = key
    if saved is not None and (paths.best_models / saved.slug / "model.json").is_file():
        if saved_trial_id(paths.best_model) != saved_trial_id(paths.best_models / saved.slug):
            atomic_replace_dir(paths.best_models / saved.slug, paths.best_model)


def find_trial_checkpoint(tune_root: Path, trial_id: str) -> Path | None:
    """The last checkpoint folder Tune stored for ``trial_id`` (the ``trial_id`` of the trial's
    config, as in the table) under ``tune_root``, holding a complete saved model; else None."""
    for params in sorted(tune_root.glob("*/*/params.json")):
        try:
            config = json.loads(params.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(config, dict) or config.get("trial_id") != trial_id:
            continue
        for checkpoint in sorted(params.parent.glob("checkpoint_*"), reverse=True):
            if all((checkpoint / name).is_file() for name in _MODEL_FILES):
                return checkpoint
    return None


def saved_trial_id(directory: Path) -> str | None:
    """The trial id of the saved model in ``directory``, None when there is none."""
    try:
        return json.loads((directory / "model.json").read_text())["metadata"]["trial_id"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
