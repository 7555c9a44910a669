"""One experiment end to end: profile, master-driven Ray Tune search, results, best model, summary."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from multi_agent_pruning.config import ExperimentConfig, config_to_dict
from multi_agent_pruning.orchestrator.prepare import (
    ExperimentPaths,
    build_context,
    check_output_dir,
    check_resources,
    check_target,
    check_writable,
    default_output_dir,
    warn_unplaceable,
)
from multi_agent_pruning.orchestrator.ray_runtime import init_ray
from multi_agent_pruning.orchestrator.tune_run import run_search, saved_trial_id
from multi_agent_pruning.reports import write_report
from multi_agent_pruning.results import ResultStore, TrialResult, point_target, row_target
from multi_agent_pruning.search.interrupt import SearchInterrupted, handle_stop_signals, raise_if_interrupted
from multi_agent_pruning.utils.atomic import atomic_write_json

logger = logging.getLogger(__name__)

__all__ = ["frontier_entries", "no_model_reason", "run_experiment", "summarise", "write_run_report"]


def _state(cfg: ExperimentConfig, method: str, status: str, **extra: Any) -> dict[str, Any]:
    return {"experiment": cfg.experiment.name, "status": status, "config": config_to_dict(cfg), "method": method,
            **extra}


def run_experiment(cfg: ExperimentConfig, *, output_dir: str | Path | None = None, resume: bool = False,
                   address: str | None = None, method: str = "multi_agent", run: int = 0,
                   progress: bool = True) -> dict[str, Any]:
    """Runs the multi-agent search of ``cfg`` and returns the summary (also in summary.json).

    Raises:
        ConfigurationError: Bad input, found before Ray starts where it can be.
        SearchInterrupted: SIGINT/SIGTERM; the stored rows are kept, ``experiment.json`` says
            "interrupted" and ``resume=True`` continues the run.
    """
    with handle_stop_signals():
        start = time.perf_counter()
        paths = ExperimentPaths(Path(output_dir) if output_dir else default_output_dir(cfg, resume=resume))
        if output_dir is None and os.environ.get("RAY_JOB_ID"):
            logger.warning("running as a Ray job without --output-dir: results go to %s inside the job's working "
                           "directory copy; pass an absolute --output-dir on shared storage", paths.root.resolve())
        check_output_dir(paths, cfg, resume, method)
        check_resources(cfg, address)
        context = build_context(cfg, method=method, run=run)  # bad model/dataset fail here, before any write
        check_target(cfg, context)
        check_writable(paths)
        atomic_write_json(paths.state, _state(cfg, method, "running"))
        try:
            raise_if_interrupted()
            if not init_ray(cfg, address):
                warn_unplaceable(cfg)
            outcome = run_search(cfg, paths, context, resume=resume, progress=progress)
        except SearchInterrupted as stop:
            rows = ResultStore(paths.results).count(experiment=cfg.experiment.name, method=method)
            atomic_write_json(paths.state, _state(cfg, method, "interrupted", signal=stop.signum, rows=rows))
            raise
        summary = summarise(cfg, paths, outcome, minutes=(time.perf_counter() - start) / 60)
        summary["report_path"] = write_run_report(paths, cfg.experiment.name)
        atomic_write_json(paths.summary, summary)
        atomic_write_json(paths.state, _state(cfg, method, "finished"))
        return summary


def rank_key(row: TrialResult) -> tuple[float, float]:
    """How ok trials rank, best first (sort ascending): top-1, then fewer MACs; ties keep table order."""
    return (-row.top1_after, row.macs or math.inf)


def _best(rows: list[TrialResult]) -> TrialResult | None:
    ok = [r for r in rows if r.status == "ok" and r.top1_after is not None]
    return min(ok, key=rank_key, default=None)


def summarise(cfg: ExperimentConfig, paths: ExperimentPaths, outcome: dict[str, Any], minutes: float) -> dict[str, Any]:
    """The API reference's result dict, from the result table (not from memory).

    For a sweep, ``frontier`` has one entry per target (easiest first), and the top-level
    ``final_accuracy``, ``macs`` ... ``best_model_path`` are those of the hardest target that
    produced a model (``best_target`` names it).
    """
    store = ResultStore(paths.results)
    rows = [r for r in store.rows(experiment=cfg.experiment.name) if r.method == outcome["method"]]
    ok = [r for r in rows if r.status == "ok" and r.top1_after is not None]
    best = _best(rows)
    frontier = frontier_entries(cfg, paths, rows) if cfg.target.is_sweep else None
    best_model_path = str(paths.best_model) if best and paths.best_model.exists() else None
    if frontier is not None:
        reached = [entry for entry in frontier if entry["final_accuracy"] is not None]
        chosen = reached[-1] if reached else None
        best = next((r for r in rows if chosen and r.trial_id == chosen["best_trial_id"]), None)
        best_model_path = chosen["best_model_path"] if chosen else None
    summary = {
        "experiment": cfg.experiment.name, "method": outcome["method"], "model": cfg.model.name,
        "dataset": cfg.effective_dataset().name, "target": cfg.target.describe(),
        "final_accuracy": best.top1_after if best else None,
        "final_top5": best.top5_after if best else None,
        "accuracy_before_finetune": best.top1_before if best else None,
        "params_reduction": best.params_reduction if best else None,
        "macs_reduction": best.macs_reduction if best else None,
        "macs": best.macs if best else None, "params": best.params if best else None,
        "base_macs": best.base_macs if best else None, "base_params": best.base_params if best else None,
        "best_trial_id": best.trial_id if best else None,
        "best_strategy": json.loads(best.strategy_json) if best else None,
        "convergence_iterations": outcome["iterations"],
        "stop_reason": outcome.get("stop_reason"),
        "trials": {"total": len(rows), "ok": len(ok), "failed": sum(r.status == "failed" for r in rows),
                   "rejected": sum(r.status == "rejected" for r in rows)},
        "total_time_minutes": minutes,
        "best_model_path": best_model_path,
        "results_path": str(paths.results),
        "output_dir": str(paths.root),
        "reproduce": f"mapruner prune --config <config> --output-dir {paths.root}",
    }
    if frontier is not None:
        summary["best_target"] = chosen["target"] if chosen else None
        summary["frontier"] = frontier
    if best is None:
        summary["error"] = no_model_reason(rows)
    return summary


def frontier_entries(cfg: ExperimentConfig, paths: ExperimentPaths, rows: list[TrialResult]) -> list[dict[str, Any]]:
    """One entry per target of the sweep, easiest first: its best model and what it measured."""
    entries = []
    for point in cfg.target.points():
        key = point_target(point)
        mine = [r for r in rows if row_target(r) == key]
        best = _best(mine)
        model_dir = paths.best_models / key.slug
        saved = best is not None and saved_trial_id(model_dir) == best.trial_id
        entries.append({
            "target": key.label, "target_kind": key.kind, "target_reduction": key.reduction,
            "target_budget": key.budget,
            "final_accuracy": best.top1_after if best else None,
            "final_top5": best.top5_after if best else None,
            "accuracy_before_finetune": best.top1_before if best else None,
            "macs": best.macs if best else None, "params": best.params if best else None,
            "macs_reduction": best.macs_reduction if best else None,
            "params_reduction": best.params_reduction if best else None,
            "best_trial_id": best.trial_id if best else None,
            "best_model_path": str(model_dir) if saved else None,
            "trials": {"total": len(mine), "ok": sum(r.status == "ok" for r in mine),
                       "failed": sum(r.status == "failed" for r in mine),
                       "rejected": sum(r.status == "rejected" for r in mine)},
            **({} if best else {"error": no_model_reason(mine)}),
        })
    return entries


def no_model_reason(rows: list[TrialResult]) -> str:
    """Why no trial produced a model: the counts by status and the most frequent reasons."""
    failed = [r for r in rows if r.status == "failed"]
    rejected = [r for r in rows if r.status == "rejected"]
    reasons = Counter(_reason(r) for r in failed + rejected)
    top = "; ".join(f"{reason} ({n}x)" for reason, n in reasons.most_common(3))
    return (f"no trial produced a model: {len(rows)} trials, {len(failed)} failed, {len(rejected)} rejected"
            + (f"; main reasons: {top}" if top else "") + "; the rows are in the results table")


def _reason(row: TrialResult) -> str:
    text = (row.error or "no error recorded").strip().splitlines()[0]
    text = text if len(text) <= 160 else text[:157] + "..."
    return f"{row.error_type}: {text}" if row.error_type else text


def write_run_report(paths: ExperimentPaths, experiment: str) -> str | None:
    """The HTML report of the run, from the result table; a report failure never fails the run."""
    try:
        return str(write_report(paths.results, paths.root / "report.html", experiment=experiment))
    except Exception as err:  # the rows are stored; `mapruner report` can retry
        logger.warning("could not write the report: %s", err)
        return None
