"""What a run needs before and while it searches: its paths, the trial context (data and dense
model), the base strategy, the checks made before Ray starts, and the progress line per row.

Used by :mod:`~multi_agent_pruning.orchestrator.experiment` (one search),
:mod:`~multi_agent_pruning.orchestrator.tune_run` (the Tune run) and
:mod:`~multi_agent_pruning.orchestrator.compare` (every method's search).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from multi_agent_pruning.config import ExperimentConfig, TargetConfig, config_to_dict
from multi_agent_pruning.core.engine import count_macs_params
from multi_agent_pruning.core.strategy import Strategy
from multi_agent_pruning.data import take_calibration_batches
from multi_agent_pruning.exceptions import ConfigIssue, ConfigurationError, InfeasibleTargetError
from multi_agent_pruning.orchestrator.dense import load_experiment_data, prepare_dense_model
from multi_agent_pruning.orchestrator.ray_runtime import resolve_address
from multi_agent_pruning.results import TrialResult
from multi_agent_pruning.search.trial import TrialContext
from multi_agent_pruning.utils.metrics import resolve_metrics

logger = logging.getLogger(__name__)

__all__ = ["STATE_FILE", "ExperimentPaths", "base_strategies", "base_strategy", "build_context", "check_output_dir", "check_resources",
           "check_target", "default_output_dir", "check_writable", "print_progress", "profiling_agent_config", "read_state",
           "warn_unplaceable"]

STATE_FILE = "experiment.json"


@dataclass
class ExperimentPaths:
    """Where an experiment writes: results (Parquet), Tune state, best model, summary."""

    root: Path
    results: Path = field(init=False)
    tune: Path = field(init=False)
    best_model: Path = field(init=False)
    best_models: Path = field(init=False)
    summary: Path = field(init=False)
    state: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root = self.root.resolve()
        self.results = self.root / "results"
        self.tune = self.root / "tune"
        self.best_model = self.root / "best_model"
        self.best_models = self.root / "best_models"  # a sweep: one folder per target
        self.summary = self.root / "summary.json"
        self.state = self.root / STATE_FILE


def base_strategies(cfg: ExperimentConfig) -> list[Strategy]:
    """The base strategy of each target of the run, easiest first (one without a sweep)."""
    return [base_strategy(cfg, point) for point in cfg.target.points()]


def base_strategy(cfg: ExperimentConfig, target: TargetConfig | None = None) -> Strategy:
    """The strategy every method starts from: defaults, target and recovery budget from config.

    ``target`` is one point of a sweep (``cfg.target.points()``); without it, the run's target,
    which must then be a single one.
    """
    t = target if target is not None else cfg.target
    if t.is_sweep:
        raise ValueError("base_strategy of a sweep: use base_strategies(cfg), or pass one of cfg.target.points()")
    d, ft, limits = cfg.effective_strategy_defaults(), cfg.effective_finetune(), cfg.effective_safety_limits()
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
                "optimizer": cfg.agents.fine_tuning_agent.optimizer, "scheduler": cfg.agents.fine_tuning_agent.scheduler,
                "gradient_checkpointing": hw.gpu.gradient_checkpointing}
    evaluation = {"comprehensive_metrics": cfg.evaluation.latency, "latency_repeats": cfg.evaluation.latency_repeats,
                  "custom_metrics": resolve_metrics(cfg.custom_metrics())}  # functions: workers never ran the user's script
    context = TrialContext(
        experiment=cfg.experiment.name, run=run, method=method, model_name=cfg.model.name, dataset=ds.name,
        seed=cfg.experiment.seed if seed is None else seed, model=model, bundle=bundle,
        input_shape=(1, *bundle.info.input_size), batch_size=ds.batch_size,
        finetune_batch_size=ft.batch_size or ds.batch_size, num_workers=ds.num_workers,
        calibration_batches=cfg.agents.profiling_agent.calibration_batches, finetune=finetune,
        evaluation=evaluation, tolerance=cfg.target.tolerance, device=hw.device,
        threads=max(1, int(hw.cpus_per_trial)), model_kwargs=kwargs, distributed=_distributed(cfg),
        gpu_memory_limit=hw.gpu.memory_limit_bytes(), trial_timeout_s=cfg.effective_search().trial_timeout_s,
        adaptive_bn_batches=cfg.evaluation.adaptive_bn_batches, rungs=cfg.effective_search().rung_budgets(),
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


def profile_request(cfg: ExperimentConfig, context: TrialContext) -> dict[str, Any]:
    """The profiling agent's input for the dense model of ``context``: the one way the search,
    the comparisons, ``mapruner profile`` and single baseline runs ask for a profile."""
    calibration = take_calibration_batches(context.bundle, cfg.agents.profiling_agent.calibration_batches,
                                           context.batch_size)
    return {"model": context.model, "model_name": context.model_name, "dataset": context.dataset,
            "input_size": context.input_shape[1:], "calibration": calibration}


def default_output_dir(cfg: ExperimentConfig, *, resume: bool = False) -> Path:
    """Where a run goes when no output directory is given: ``<experiment.output_dir>/<name>`` if it
    is free, else ``<name>-<YYYYmmdd-HHMMSS>`` (``-2``, ``-3`` ... appended if that is taken too),
    so that a run never collides with an earlier one. With ``resume`` it is the latest of these
    that holds an experiment record (the plain name when there is none, so the error says so)."""
    plain = cfg.output_path()
    if resume:
        earlier = [p for p in plain.parent.glob(f"{plain.name}*")
                   if (p.name == plain.name or p.name.startswith(plain.name + "-")) and (p / STATE_FILE).is_file()]
        return max(earlier, key=lambda p: (p / STATE_FILE).stat().st_mtime, default=plain)
    if not _taken(plain):
        return plain
    stamp = plain.with_name(f"{plain.name}-{datetime.now():%Y%m%d-%H%M%S}")
    candidate, n = stamp, 1
    while _taken(candidate):
        n += 1
        candidate = stamp.with_name(f"{stamp.name}-{n}")
    return candidate


def _taken(path: Path) -> bool:
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


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
               ("target", "budget"), ("target", "sweep"))


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
    """Refuses, before Ray starts, a target no structural pruning of this model can meet (every
    target of a sweep, each named in the error).

    Every prunable layer keeps at least ``1 - max_layer_pruning`` of its input and of its output
    channels, so its MACs (and weights) keep at least ``(1 - max_layer_pruning)**2``: a target
    below that share of the dense model, or at or above the dense model itself, is impossible.
    (Meeting this bound does not promise the target is reachable; the engine says so per trial.)
    """
    macs, params = count_macs_params(context.model, torch.zeros(context.input_shape))
    issues = []
    for index, t in enumerate(cfg.target.points()):
        dense = macs if t.kind == "macs" else params
        keep = t.budget if t.budget is not None else dense * (1 - t.reduction)
        max_layer = base_strategy(cfg, t).max_layer_pruning
        floor = dense * (1 - max_layer) ** 2
        unit = "MACs" if t.kind == "macs" else "params"
        rule = None
        overall = cfg.effective_safety_limits().max_overall_pruning
        if keep >= dense * (1 - t.tolerance):
            rule = f"must keep fewer {unit} than the dense {cfg.model.name} has ({dense:.4g})"
        elif keep < floor:
            rule = (f"must keep at least {floor:.4g} {unit}: with every layer pruned by at most "
                    f"max_layer_pruning={max_layer:g}, no structural pruning of "
                    f"{cfg.model.name} ({dense:.4g} {unit}) keeps fewer")
        elif 1 - keep / dense > overall + 1e-9:
            rule = (f"removes {1 - keep / dense:.1%} of the {unit}, more than safety_limits.max_overall_pruning="
                    f"{overall:g} allows (the analysis agent would reject every strategy); raise that limit to "
                    f"search this target")
        if rule:
            if cfg.target.is_sweep:
                key, value = f"target.sweep[{index}]", cfg.target.sweep[index]
            else:
                key, value = ("target.budget", t.budget) if t.budget is not None else ("target.reduction", t.reduction)
            issues.append(ConfigIssue(key, rule, value))
    if issues:
        raise InfeasibleTargetError("Impossible target:", issues)


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


def print_progress(row: TrialResult, done: int, total: int) -> None:
    if row.status == "ok":
        text = (f"top1 {row.top1_after:.3f} (before fine-tune {row.top1_before:.3f}), "
                f"MACs -{row.macs_reduction:.1%}, {row.seconds_total:.1f}s")
    else:
        text = f"{row.status}: {(row.error or '')[:120]}"
    print(f"[{done}/{total}] trial {row.trial_id} it{row.iteration} {row.importance or ''}: {text}",
          file=sys.stderr, flush=True)
