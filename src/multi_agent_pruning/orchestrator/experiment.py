"""One experiment end to end: profile, master-driven Ray Tune search, results, best model, summary."""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from multi_agent_pruning.config import ExperimentConfig, config_to_dict
from multi_agent_pruning.core.engine import count_macs_params
from multi_agent_pruning.core.strategy import Strategy
from multi_agent_pruning.exceptions import ConfigIssue, ConfigurationError
from multi_agent_pruning.orchestrator.dense import load_experiment_data, prepare_dense_model
from multi_agent_pruning.orchestrator.interrupt import SearchInterrupted, handle_stop_signals, raise_if_interrupted
from multi_agent_pruning.orchestrator.ray_runtime import init_ray, resolve_address
from multi_agent_pruning.results import ResultStore, TrialResult
from multi_agent_pruning.search.trial import TrialContext
from multi_agent_pruning.utils.atomic import atomic_write_json

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
    """Writes ``data`` as JSON atomically (see :mod:`multi_agent_pruning.utils.atomic`)."""
    atomic_write_json(path, data)


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
        gpu_memory_limit=hw.gpu.memory_limit_bytes(), trial_timeout_s=cfg.effective_search().trial_timeout_s,
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


def read_state(paths: ExperimentPaths) -> dict[str, Any] | None:
    """The experiment record (``experiment.json``) of ``paths``, None when there is none.

    Raises:
        ConfigurationError: The record exists but cannot be read as one (truncated, not JSON,
            not an object, no experiment name); the message says what to do.
    """
    if not paths.state.exists():
        return None
    try:
        state = json.loads(paths.state.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        reason = f"{type(err).__name__}: {err}"
    else:
        if isinstance(state, dict) and isinstance(state.get("experiment"), str):
            return state
        reason = "not an experiment record (a JSON object with an 'experiment' name)"
    raise ConfigurationError(
        f"output directory {paths.root} holds an unreadable {STATE_FILE} ({reason}); it was left as it is: "
        f"restore it or choose another --output-dir")


#: What a resumed run must share with the run it continues (config paths).
RESUME_KEYS = (("model", "name"), ("dataset", "name"), ("target", "kind"), ("target", "reduction"),
               ("target", "budget"))


def check_output_dir(paths: ExperimentPaths, cfg: ExperimentConfig, resume: bool, method: str = "multi_agent") -> None:
    """Refuses to mix experiments in one directory, to silently overwrite results, or to resume
    a run with another model, dataset, target or method than the one it continues."""
    state = read_state(paths)
    if state is None:
        if resume:
            raise ConfigurationError(f"--resume: {paths.root} holds no experiment to resume ({STATE_FILE} missing)")
        if paths.results.exists() and any(paths.results.rglob("*.parquet")):
            raise ConfigurationError(f"output directory {paths.root} already holds results of an unknown experiment")
        return
    if state.get("experiment") != cfg.experiment.name:
        raise ConfigurationError(
            f"output directory {paths.root} holds a different experiment ({state.get('experiment')!r}); "
            f"choose another --output-dir")
    if not resume:
        raise ConfigurationError(
            f"output directory {paths.root} already holds experiment {cfg.experiment.name!r} "
            f"(status {state.get('status')!r}); pass --resume to continue it or choose another --output-dir")
    stored, now = state.get("config") if isinstance(state.get("config"), dict) else {}, config_to_dict(cfg)
    changed = [ConfigIssue(".".join(key), f"the run being resumed has {_lookup(stored, key)!r}", _lookup(now, key))
               for key in RESUME_KEYS if _lookup(stored, key) != _lookup(now, key)]
    if state.get("method", method) != method:
        changed.append(ConfigIssue("method", f"the run being resumed has {state.get('method')!r}", method))
    if changed:
        raise ConfigurationError(
            f"--resume: {paths.root} holds a run with another model, dataset, target or method; resume it "
            f"with its own settings or choose another --output-dir:", changed)


def _lookup(tree: Any, key: tuple[str, ...]) -> Any:
    for part in key:
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree


def check_target(cfg: ExperimentConfig, context: TrialContext) -> None:
    """Refuses, before Ray starts, a target no structural pruning of this model can meet.

    Every prunable layer keeps at least ``1 - max_layer_pruning`` of its input and of its output
    channels, so its MACs (and weights) keep at least ``(1 - max_layer_pruning)**2``: a target
    below that share of the dense model, or at or above the dense model itself, is impossible.
    (Meeting this bound does not promise the target is reachable; the engine says so per trial.)
    """
    t = cfg.target
    macs, params = count_macs_params(context.model, torch.zeros(context.input_shape))
    dense = macs if t.kind == "macs" else params
    keep = t.budget if t.budget is not None else dense * (1 - t.reduction)
    floor = dense * (1 - base_strategy(cfg).max_layer_pruning) ** 2
    unit = "MACs" if t.kind == "macs" else "params"
    rule = None
    if keep >= dense * (1 - t.tolerance):
        rule = f"must keep fewer {unit} than the dense {cfg.model.name} has ({dense:.4g})"
    elif keep < floor:
        rule = (f"must keep at least {floor:.4g} {unit}: with every layer pruned by at most "
                f"max_layer_pruning={base_strategy(cfg).max_layer_pruning:g}, no structural pruning of "
                f"{cfg.model.name} ({dense:.4g} {unit}) keeps fewer")
    if rule:
        key, value = ("target.budget", t.budget) if t.budget is not None else ("target.reduction", t.reduction)
        raise ConfigurationError("Impossible target:", [ConfigIssue(key, rule, value)])


def check_resources(cfg: ExperimentConfig, address: str | None) -> None:
    """Refuses, before Ray starts, trials that need more CPUs or GPUs than the local cluster has
    (Tune would wait for them for ever). A joined cluster is checked by :func:`warn_unplaceable`."""
    if resolve_address(cfg, address):
        return
    hw = cfg.hardware
    cpus = hw.num_cpus or os.cpu_count() or 1
    issues = []
    if hw.cpus_per_trial > cpus:
        issues.append(ConfigIssue("hardware.cpus_per_trial", f"must be at most the {cpus} CPUs of the local "
                                  "Ray cluster (hardware.num_cpus)", hw.cpus_per_trial))
    if hw.gpus_per_trial and hw.device != "cpu":
        gpus = hw.num_gpus if hw.num_gpus is not None else torch.cuda.device_count()
        if hw.gpus_per_trial > gpus:
            issues.append(ConfigIssue("hardware.gpus_per_trial", f"must be at most the {gpus:g} GPUs of the "
                                      "local Ray cluster (hardware.num_gpus)", hw.gpus_per_trial))
    if issues:
        raise ConfigurationError("Trials cannot be placed:", issues)


def warn_unplaceable(cfg: ExperimentConfig) -> None:
    """On a joined cluster, warns when no node now has a trial's CPUs/GPUs (Tune waits for the
    autoscaler to add one, or for ever without one)."""
    import ray

    hw = cfg.hardware
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if nodes and not any(r.get("CPU", 0) >= hw.cpus_per_trial and r.get("GPU", 0) >= (hw.gpus_per_trial or 0)
                         for r in nodes):
        logger.warning("no node of the cluster has %g CPU(s) and %g GPU(s) for a trial; the search waits until "
                       "one joins (autoscaling) and never starts a trial otherwise", hw.cpus_per_trial,
                       hw.gpus_per_trial or 0)


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
        if output_dir is None and os.environ.get("RAY_JOB_ID"):
            logger.warning("running as a Ray job without --output-dir: results go to %s inside the job's working "
                           "directory copy; pass an absolute --output-dir on shared storage",
                           cfg.output_path().resolve())
        paths = ExperimentPaths(Path(output_dir) if output_dir else cfg.output_path())
        check_output_dir(paths, cfg, resume, method)
        check_resources(cfg, address)
        context = build_context(cfg, method=method, run=run)  # bad model/dataset fail here, before any write
        check_target(cfg, context)
        check_writable(paths)
        write_json_atomic(paths.state, _state(cfg, method, "running"))
        from multi_agent_pruning.orchestrator.search import run_search  # search builds on this module

        try:
            raise_if_interrupted()
            if not init_ray(cfg, address):
                warn_unplaceable(cfg)
            outcome = run_search(cfg, paths, context, resume=resume, progress=progress)
        except SearchInterrupted as stop:
            rows = ResultStore(paths.results).count(experiment=cfg.experiment.name, method=method)
            write_json_atomic(paths.state, _state(cfg, method, "interrupted", signal=stop.signum, rows=rows))
            raise
        summary = summarise(cfg, paths, outcome, minutes=(time.perf_counter() - start) / 60)
        summary["report_path"] = write_run_report(paths, cfg.experiment.name)
        write_json_atomic(paths.summary, summary)
        write_json_atomic(paths.state, _state(cfg, method, "finished"))
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


def print_progress(row: TrialResult, done: int, total: int) -> None:
    if row.status == "ok":
        text = (f"top1 {row.top1_after:.3f} (before fine-tune {row.top1_before:.3f}), "
                f"MACs -{row.macs_reduction:.1%}, {row.seconds_total:.1f}s")
    else:
        text = f"{row.status}: {(row.error or '')[:120]}"
    print(f"[{done}/{total}] trial {row.trial_id} it{row.iteration} {row.importance or ''}: {text}",
          file=sys.stderr, flush=True)
