"""One experiment end to end: profile, master-driven Ray Tune search, results, best model, summary."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from multi_agent_pruning.config import ExperimentConfig, config_to_dict
from multi_agent_pruning.core.strategy import Strategy
from multi_agent_pruning.exceptions import ConfigurationError
from multi_agent_pruning.orchestrator.dense import load_experiment_data, prepare_dense_model
from multi_agent_pruning.orchestrator.ray_runtime import init_ray
from multi_agent_pruning.results import ResultStore, TrialResult
from multi_agent_pruning.search.trial import TrialContext

logger = logging.getLogger(__name__)

__all__ = ["ExperimentPaths", "base_strategy", "build_context", "run_experiment", "write_json_atomic"]

STATE_FILE = "experiment.json"


@dataclass
class ExperimentPaths:
    """Where an experiment writes: results (Parquet), Tune state, best model, summary."""

    root: Path
    results: Path = field(init=False)
    tune: Path = field(init=False)
    best_model: Path = field(init=False)
    summary: Path = field(init=False)
    state: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root = self.root.resolve()
        self.results = self.root / "results"
        self.tune = self.root / "tune"
        self.best_model = self.root / "best_model"
        self.summary = self.root / "summary.json"
        self.state = self.root / STATE_FILE


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2, default=str)
    os.replace(tmp, path)


def base_strategy(cfg: ExperimentConfig) -> Strategy:
    """The strategy every method starts from: defaults, target and recovery budget from config."""
    d, ft, t, limits = cfg.effective_strategy_defaults(), cfg.effective_finetune(), cfg.target, cfg.effective_safety_limits()
    caps = [limits.max_mlp_pruning, limits.max_attention_pruning, limits.max_conv_pruning]
    return Strategy(
        importance=d.importance, global_pruning=d.global_pruning, isomorphic=d.isomorphic, round_to=d.round_to,
        iterative_steps=d.iterative_steps, head_pruning_ratio=d.head_pruning_ratio,
        prune_num_heads=d.prune_num_heads, prune_head_dims=d.prune_head_dims,
        max_layer_pruning=min(0.99, max(caps)), min_channels=limits.min_channels,
        target_kind=t.kind, target_reduction=t.reduction, target_budget=t.budget,
        finetune_epochs=ft.epochs, finetune_steps=ft.steps, learning_rate=ft.lr, weight_decay=ft.weight_decay,
        kd_weight=ft.kd_weight,
    )


def build_context(cfg: ExperimentConfig, *, method: str, run: int, seed: int | None = None):
    """Dataset, dense model and the shared :class:`TrialContext` of an experiment."""
    bundle = load_experiment_data(cfg)
    model, kwargs = prepare_dense_model(cfg, bundle)
    ds, ft, hw = cfg.effective_dataset(), cfg.effective_finetune(), cfg.hardware
    finetune = {"warmup_ratio": ft.warmup_ratio, "label_smoothing": ft.label_smoothing,
                "kd_temperature": ft.kd_temperature, "amp": ft.amp, "gradient_clip": ft.gradient_clip,
                "optimizer": cfg.agents.fine_tuning_agent.optimizer, "scheduler": cfg.agents.fine_tuning_agent.scheduler}
    evaluation = {"comprehensive_metrics": cfg.evaluation.latency, "latency_repeats": cfg.evaluation.latency_repeats,
                  "custom_metrics": list(cfg.custom_metrics())}
    context = TrialContext(
        experiment=cfg.experiment.name, run=run, method=method, model_name=cfg.model.name, dataset=ds.name,
        seed=cfg.experiment.seed if seed is None else seed, model=model, bundle=bundle,
        input_shape=(1, *bundle.info.input_size), batch_size=ds.batch_size,
        finetune_batch_size=ft.batch_size or ds.batch_size, num_workers=ds.num_workers,
        calibration_batches=cfg.agents.profiling_agent.calibration_batches, finetune=finetune,
        evaluation=evaluation, tolerance=cfg.target.tolerance, device=hw.device,
        threads=max(1, int(hw.cpus_per_trial)), model_kwargs=kwargs, distributed=_distributed(cfg),
        gpu_memory_limit=hw.gpu.memory_limit_bytes(),
    )
    return context


def _distributed(cfg: ExperimentConfig) -> dict[str, Any] | None:
    """Ray Train settings for data-parallel fine-tuning, or None for single-process trials."""
    dist = cfg.hardware.distributed
    if not dist.enabled or dist.world_size < 2:
        return None
    return {"world_size": dist.world_size, "backend": dist.backend,
            "use_gpu": cfg.hardware.device != "cpu" and dist.backend == "nccl",
            "cpus_per_worker": 1.0, "gradient_checkpointing": cfg.hardware.gpu.gradient_checkpointing}


def profiling_agent_config(cfg: ExperimentConfig) -> dict[str, Any]:
    """The ProfilingAgent's config from the experiment (cache switches, calibration, limits)."""
    agent_cfg, cache = cfg.agents.profiling_agent, cfg.profile_cache()
    return {"enable_caching": cache.enabled, "cache_duration": cache.max_age_s, "cache_dir": cache.directory,
            "sensitivity_fraction": agent_cfg.sensitivity_fraction, "calibration_batches": agent_cfg.calibration_batches,
            "safety_limits": cfg.effective_safety_limits().model_dump()}


def check_writable(paths: ExperimentPaths) -> None:
    """Fails before any work when the output directory cannot be written."""
    probe = paths.root / ".write-probe"
    try:
        paths.root.mkdir(parents=True, exist_ok=True)
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise ConfigurationError(f"output directory {paths.root} is not writable: {err}") from err
    if paths.results.exists() and not paths.results.is_dir():
        raise ConfigurationError(f"results path {paths.results} exists and is not a directory")


def check_output_dir(paths: ExperimentPaths, cfg: ExperimentConfig, resume: bool) -> None:
    """Refuses to mix experiments in one directory, or to silently overwrite results."""
    if not paths.state.exists():
        if resume:
            raise ConfigurationError(f"--resume: {paths.root} holds no experiment to resume ({STATE_FILE} missing)")
        if paths.results.exists() and any(paths.results.rglob("*.parquet")):
            raise ConfigurationError(f"output directory {paths.root} already holds results of an unknown experiment")
        return
    state = json.loads(paths.state.read_text())
    if state.get("experiment") != cfg.experiment.name:
        raise ConfigurationError(
            f"output directory {paths.root} holds a different experiment ({state.get('experiment')!r}); "
            f"choose another --output-dir")
    if not resume:
        raise ConfigurationError(
            f"output directory {paths.root} already holds experiment {cfg.experiment.name!r} "
            f"(status {state.get('status')!r}); pass --resume to continue it or choose another --output-dir")


def run_experiment(cfg: ExperimentConfig, *, output_dir: str | Path | None = None, resume: bool = False,
                   address: str | None = None, method: str = "multi_agent", run: int = 0,
                   progress: bool = True) -> dict[str, Any]:
    """Runs the multi-agent search of ``cfg`` and returns the summary (also in summary.json)."""
    start = time.perf_counter()
    if output_dir is None and os.environ.get("RAY_JOB_ID"):
        logger.warning("running as a Ray job without --output-dir: results go to %s inside the job's working "
                       "directory copy; pass an absolute --output-dir on shared storage", cfg.output_path().resolve())
    paths = ExperimentPaths(Path(output_dir) if output_dir else cfg.output_path())
    check_output_dir(paths, cfg, resume)
    from multi_agent_pruning.orchestrator.search import run_search

    context = build_context(cfg, method=method, run=run)  # bad model/dataset fail here, before any write
    check_writable(paths)
    write_json_atomic(paths.state, {"experiment": cfg.experiment.name, "status": "running",
                                    "config": config_to_dict(cfg), "method": method})
    init_ray(cfg, address)
    outcome = run_search(cfg, paths, context, resume=resume, progress=progress)
    summary = summarise(cfg, paths, outcome, minutes=(time.perf_counter() - start) / 60)
    summary["report_path"] = write_run_report(paths, cfg.experiment.name)
    write_json_atomic(paths.summary, summary)
    write_json_atomic(paths.state, {"experiment": cfg.experiment.name, "status": "finished",
                                    "config": config_to_dict(cfg), "method": method})
    return summary


def summarise(cfg: ExperimentConfig, paths: ExperimentPaths, outcome: dict[str, Any], minutes: float) -> dict[str, Any]:
    """The API reference's result dict, from the result table (not from memory)."""
    store = ResultStore(paths.results)
    rows = [r for r in store.rows(experiment=cfg.experiment.name) if r.method == outcome["method"]]
    ok = [r for r in rows if r.status == "ok" and r.top1_after is not None]
    best: TrialResult | None = max(ok, key=lambda r: (r.top1_after, -(r.macs or math.inf)), default=None)
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
        "best_model_path": str(paths.best_model) if best and paths.best_model.exists() else None,
        "results_path": str(paths.results),
        "output_dir": str(paths.root),
        "reproduce": f"mapruner prune --config <config> --output-dir {paths.root}",
    }
    if best is None:
        summary["error"] = "no trial succeeded; see the failed rows in the results table"
    return summary


def write_run_report(paths: ExperimentPaths, experiment: str) -> str | None:
    """The HTML report of the run, from the result table; a report failure never fails the run."""
    from multi_agent_pruning.reports import write_report

    try:
        return str(write_report(paths.results, paths.root / "report.html", experiment=experiment))
    except Exception as err:  # the rows are stored; `mapruner report` can retry
        logger.warning("could not write the report: %s", err)
        return None


def copy_best_model(source: str | None, destination: Path) -> None:
    if source is None:
        return
    tmp = destination.with_name(destination.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    shutil.rmtree(destination, ignore_errors=True)
    os.replace(tmp, destination)


def print_progress(row: TrialResult, done: int, total: int) -> None:
    if row.status == "ok":
        text = (f"top1 {row.top1_after:.3f} (before fine-tune {row.top1_before:.3f}), "
                f"MACs -{row.macs_reduction:.1%}, {row.seconds_total:.1f}s")
    else:
        text = f"{row.status}: {(row.error or '')[:120]}"
    print(f"[{done}/{total}] trial {row.trial_id} it{row.iteration} {row.importance or ''}: {text}",
          file=sys.stderr, flush=True)
