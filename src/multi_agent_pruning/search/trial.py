"""The one trial function: ``evaluate_strategy(strategy, context) -> TrialResult``.

Every method (the agents' search, the baselines, Optuna) evaluates a strategy here and nowhere
else: prune to the exact target, measure accuracy before recovery, fine-tune, evaluate, and
return one row of the results table. Any exception becomes a ``failed`` row with the error;
nothing is filled in that was not measured. A trial has a wall-clock limit
(``TrialContext.trial_timeout_s``): a :class:`~multi_agent_pruning.core.evaluation.Deadline`
checked once per pruning iteration, training step and evaluation batch; past it, the trial is a
``failed`` row with ``error_type`` TrialTimeoutError naming the limit and the stage.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from multi_agent_pruning.agents.execution import EvaluationAgent, FineTuningAgent, PruningAgent
from multi_agent_pruning.core.evaluation import Deadline, evaluate, has_batchnorm, recalibrate_batchnorm, resolve_device
from multi_agent_pruning.core.strategy import Strategy
from multi_agent_pruning.core.training import NonFiniteLossError
from multi_agent_pruning.data import DatasetBundle, create_loaders, take_calibration_batches
from multi_agent_pruning.results.trial import TrialResult, strategy_columns

logger = logging.getLogger(__name__)

__all__ = ["RungProgress", "TrialContext", "compute_device", "evaluate_dense", "evaluate_rungs", "evaluate_strategy",
           "load_rung_checkpoint", "placement", "prune_strategy", "save_rung_checkpoint", "with_dense_top1"]


@dataclass
class TrialContext:
    """Everything shared by the trials of one experiment (put in Ray's object store once).

    Attributes:
        experiment / run / method / model_name / dataset / seed: Row identifiers.
        model: The dense model (trained or pretrained); each trial prunes a copy.
        bundle: The dataset (train / val / calibration splits).
        input_shape: ``(1, C, H, W)`` used to trace the graph and count MACs.
        batch_size: Evaluation and calibration batch size; ``finetune_batch_size`` for training.
        calibration_batches: Calibration batches used by gradient-based importance.
        finetune: Extra :class:`~multi_agent_pruning.core.training.FineTuneConfig` fields
            (warm-up, label smoothing, AMP, ...); the strategy supplies steps, lr, decay, KD.
        evaluation: EvaluationAgent config (latency, custom metrics).
        tolerance: Accepted relative distance to the MACs/params target.
        device: ``auto``, ``cpu`` or ``cuda``.
        threads: torch intra-op threads per trial (None: leave torch's default).
        model_kwargs: How the dense model was built (saved with pruned models).
        distributed: :class:`~multi_agent_pruning.core.distributed.DistributedSettings` as a
            dict when fine-tuning runs data-parallel with Ray Train; None for one process.
        gpu_memory_limit: Bytes of GPU memory a trial may allocate (``hardware.gpu.memory_limit``).
        trial_timeout_s: Wall-clock limit of one trial in seconds (``search.trial_timeout_s``);
            None for no limit.
        dense_top1: Top-1 of the dense model on the evaluation set (:func:`evaluate_dense`,
            measured once per run before the trials); every row of the run carries it as
            ``base_top1``. None until measured.
        adaptive_bn_batches: Training batches for the adaptive-BatchNorm accuracy of each
            pruned model (``evaluation.adaptive_bn_batches``; 0: not measured).
        rungs: A multi-fidelity search's rung budgets as multiples of each strategy's fine-tune
            budget (``search.rung_budgets()``, e.g. ``(1, 3, 9)``); None for one budget (FIFO).
        rung_gate: Name of the search's :class:`~multi_agent_pruning.search.fidelity.RungGate`
            actor (reproducible ASHA: rung results reach the scheduler in issue order); None without.
    """

    experiment: str
    run: int
    method: str
    model_name: str
    dataset: str
    seed: int
    model: nn.Module
    bundle: DatasetBundle
    input_shape: tuple[int, ...]
    batch_size: int = 128
    finetune_batch_size: int = 128
    num_workers: int = 0
    calibration_batches: int = 2
    finetune: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    tolerance: float = 0.005
    device: str = "auto"
    threads: int | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    distributed: dict[str, Any] | None = None
    gpu_memory_limit: int | None = None
    trial_timeout_s: float | None = None
    dense_top1: float | None = None
    adaptive_bn_batches: int = 0
    rungs: tuple[int, ...] | None = None
    rung_gate: str | None = None

    def identifiers(self, trial_id: str, iteration: int) -> dict[str, Any]:
        """The columns every row of this run carries: its identifiers and the dense model's top-1."""
        return {"experiment": self.experiment, "run": self.run, "method": self.method, "model": self.model_name,
                "dataset": self.dataset, "seed": self.seed, "trial_id": trial_id, "iteration": iteration,
                "base_top1": self.dense_top1}


FAULT_ENV = "MAPRUNER_FAULT_INJECTION"


def inject_fault(stage: str, strategy: Strategy, rung: int | None = None) -> None:
    """Chaos-testing hook (reliability tests): fails a trial on purpose when asked to.

    ``MAPRUNER_FAULT_INJECTION`` holds JSON ``{"stage": "prune"|"finetune"|"evaluate",
    "kind": "raise"|"oom"|"nan"|"exit"|"exit_once"|"hang", "importance": <criterion or null>,
    "marker": <path, for exit_once>, "rung": <k or null>}``; trials whose strategy uses ``importance`` (any trial
    when null) fail that way at that stage (of rung ``k`` only, in a multi-fidelity trial, when set) (``hang``: a call that never returns and never checks the
    trial's deadline, as a hang in C code). Unset in normal use: then this does nothing.
    """
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    fault = json.loads(spec)
    if fault.get("stage") != stage or fault.get("importance") not in (None, strategy.importance):
        return
    if fault.get("rung") is not None and fault["rung"] != rung:
        return
    kind = fault.get("kind", "raise")
    if kind == "raise":
        raise RuntimeError(f"injected fault at {stage}")
    if kind == "oom":
        raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (injected at {stage})")
    if kind == "nan":
        raise NonFiniteLossError(f"loss is nan at step 1 (injected at {stage})")
    if kind == "hang":
        threading.Event().wait()  # never set: blocks this thread for good
    if kind == "exit" or (kind == "exit_once" and not os.path.exists(fault["marker"])):
        if kind == "exit_once":
            open(fault["marker"], "w").close()
        os._exit(1)  # the worker process dies without reporting


def placement() -> dict[str, Any]:
    """Where this process runs in the Ray cluster: ``node_id``, ``node_ip`` and ``gpu_ids`` (JSON
    list of the GPU ids Ray assigned to this task or actor); all None outside a Ray worker."""
    try:
        import ray

        if not ray.is_initialized():
            return {"node_id": None, "node_ip": None, "gpu_ids": None}
        context = ray.get_runtime_context()
        gpus = context.get_accelerator_ids().get("GPU", [])
        return {"node_id": context.get_node_id(), "node_ip": ray.util.get_node_ip_address(),
                "gpu_ids": json.dumps([str(g) for g in gpus])}
    except Exception as err:  # noqa: BLE001 - where it ran is provenance, never a reason to fail a trial
        logger.debug("placement unknown: %s", err)
        return {"node_id": None, "node_ip": None, "gpu_ids": None}


def compute_device(device: str, gpu_ids: str | None, trial_id: str = "") -> str:
    """The device setting a trial computes with: ``device`` (``hardware.device``), except where Ray
    assigned the trial GPUs (``gpu_ids``, from :func:`placement`) on a node without CUDA (a node
    that declares GPUs it does not have, as the simulated clusters of the tests): then ``"cpu"``,
    with a warning naming the ids.

    Ray sets ``CUDA_VISIBLE_DEVICES`` to the assigned GPUs before the trial's code runs, so where
    they are real, ``cuda`` (``cuda:0``) is the first of them: a trial computes on its own GPU
    (a shared one with a fractional ``gpus_per_trial``).
    """
    ids = json.loads(gpu_ids) if gpu_ids else []
    if not ids or device == "cpu" or torch.cuda.is_available():
        return device
    logger.warning("trial %s: Ray assigned it GPU(s) %s, but CUDA is not available on this node (a simulated "
                   "GPU?); it computes on the CPU", trial_id, ", ".join(ids))
    return "cpu"


def _device_name(device: str) -> str | None:
    try:
        return str(resolve_device(device))
    except Exception:  # noqa: BLE001 - an invalid device is the trial's error, reported in its row
        return None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def evaluate_strategy(strategy: Strategy, context: TrialContext, *, trial_id: str, iteration: int = 0,
                      save_dir: str | None = None, deadline: Deadline | None = None) -> TrialResult:
    """Prunes, fine-tunes and evaluates ``strategy``; returns its row (ok or failed).

    Args:
        strategy: What to evaluate.
        context: The experiment's shared data and settings.
        trial_id: Unique id of the trial (the row's key).
        iteration: Search iteration that proposed the strategy.
        save_dir: When given and the trial succeeds, the pruned model is saved there.
        deadline: The trial's clock, when the caller watches it too (see
            ``tune_trial.evaluate_with_backstop``); default: a new one of ``context.trial_timeout_s``.
    """
    started = datetime.now(timezone.utc)
    clock = time.perf_counter()
    if deadline is None:
        deadline = Deadline(context.trial_timeout_s)
    ids = context.identifiers(trial_id, iteration)
    where = placement()
    device = compute_device(context.device, where["gpu_ids"], trial_id)
    if context.threads:
        torch.set_num_threads(context.threads)
    seed_everything(context.seed)
    try:
        row = _run(strategy, context, ids, deadline, save_dir, device)
    except Exception as err:  # a failed trial is a row, never a crash of the search
        logger.info("trial %s failed: %s: %s", trial_id, type(err).__name__, err)
        row = TrialResult.failed(error=err, strategy=strategy, **ids, **_stage_columns(deadline.completed))
    row.node_id, row.node_ip, row.gpu_ids = where["node_id"], where["node_ip"], where["gpu_ids"]
    row.device = _device_name(device)
    row.started_at = started
    row.finished_at = datetime.now(timezone.utc)
    row.seconds_total = time.perf_counter() - clock
    return row


def evaluate_dense(context: TrialContext) -> float:
    """Top-1 of the dense model on the evaluation set, measured as a trial measures its pruned
    model (same loader, batch size, device choice and ``evaluate``)."""
    if context.threads:
        torch.set_num_threads(context.threads)
    device = resolve_device(context.device)
    _, eval_loader = create_loaders(context.bundle, context.batch_size, num_workers=context.num_workers)
    with torch.random.fork_rng(devices=[]):  # creating a loader's iterator draws from the global generator
        return float(evaluate(context.model.to(device).eval(), eval_loader, device=device)["top1"])


def with_dense_top1(context: TrialContext, measure: Callable[[], float]) -> TrialContext:
    """``context`` with ``dense_top1 = measure()`` (:func:`evaluate_dense`, here or in a Ray task).
    If measuring fails, a warning says why and the rows have no ``base_top1``: the dense accuracy
    is a reference, not a trial, and the trials report the model's own errors."""
    try:
        return replace(context, dense_top1=float(measure()))
    except Exception as err:  # noqa: BLE001 - see the docstring
        logger.warning("could not evaluate the dense %s (the rows will have no base_top1): %s", context.model_name,
                       err)
        return context


def _stage_columns(stages: dict[str, float]) -> dict[str, float]:
    return {f"seconds_{k}": v for k, v in stages.items()}


def prune_strategy(strategy: Strategy, context: TrialContext, device: torch.device,
                   deadline: Deadline | None = None) -> tuple[nn.Module, nn.Module, dict[str, Any]]:
    """``(dense, pruned, prune summary)``: ``strategy`` applied to a copy of the context's dense
    model with its calibration batches, as every trial prunes (and ``mapruner finetune`` re-prunes)."""
    dense = context.model.to(device).eval()
    example = torch.randn(*context.input_shape, device=device)
    calibration = take_calibration_batches(context.bundle, context.calibration_batches, context.batch_size)
    pruned = PruningAgent({"tolerance": context.tolerance}).execute(
        {"model": dense, "strategy": strategy, "example_inputs": example, "calibration": calibration,
         "deadline": deadline})
    return dense, pruned["model"], pruned["prune"]


@dataclass
class PrunedTrial:
    """A trial's pruned model and what was measured of it before any fine-tune."""

    device: torch.device
    dense: nn.Module
    model: nn.Module
    prune: dict[str, Any]
    before: dict[str, Any]
    adaptive_bn: float | None
    eval_loader: Any


def _prune_and_probe(strategy: Strategy, context: TrialContext, deadline: Deadline,
                     device_setting: str) -> tuple[PrunedTrial, Any]:
    """Prunes ``strategy`` and measures the model before fine-tuning; returns it and the train loader.
    ``device_setting``: :func:`compute_device`."""
    device = resolve_device(device_setting)
    if device.type == "cuda" and context.gpu_memory_limit:
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, context.gpu_memory_limit / total), device)
    with deadline.stage("prune", record="prune"):
        inject_fault("prune", strategy)
        dense, model, prune = prune_strategy(strategy, context, device, deadline)
    train_loader, _ = create_loaders(context.bundle, context.finetune_batch_size,
                                     num_workers=context.num_workers, seed=context.seed)
    _, eval_loader = create_loaders(context.bundle, context.batch_size, num_workers=context.num_workers)
    with deadline.stage("evaluate (accuracy before fine-tuning)"):
        before = evaluate(model, eval_loader, device=device, deadline=deadline)
    adaptive_bn = None
    if context.adaptive_bn_batches and has_batchnorm(model):
        with deadline.stage("evaluate (adaptive BatchNorm)"):
            # A copy, and a loader of its own: the fine-tune's model and batch order stay as without it.
            probe = copy.deepcopy(model)
            batches, _ = create_loaders(context.bundle, context.finetune_batch_size, num_workers=context.num_workers,
                                        seed=context.seed)
            recalibrate_batchnorm(probe, batches, max_batches=context.adaptive_bn_batches, device=device,
                                  deadline=deadline)
            adaptive_bn = evaluate(probe, eval_loader, device=device, deadline=deadline)["top1"]
            del probe
    return PrunedTrial(device, dense, model, prune, before, adaptive_bn, eval_loader), train_loader


def _fine_tune(pruned: PrunedTrial, strategy: Strategy, context: TrialContext, deadline: Deadline, train_loader: Any,
               *, seed: int, steps: int | None = None, optimizer_state: dict | None = None,
               keep_optimizer_state: bool = False, rung: int | None = None) -> dict[str, Any]:
    overrides = {"steps": steps} if steps is not None else {}
    with deadline.stage("fine-tune", record="finetune"):
        inject_fault("finetune", strategy, rung)
        return FineTuningAgent({**context.finetune, **overrides, "distributed": context.distributed}).execute(
            {"model": pruned.model, "train_loader": train_loader, "train_dataset": context.bundle.train,
             "batch_size": context.finetune_batch_size, "strategy": strategy, "teacher": pruned.dense,
             "device": pruned.device, "seed": seed, "deadline": deadline, "optimizer_state": optimizer_state,
             "keep_optimizer_state": keep_optimizer_state})["finetune"]


def _measure(pruned: PrunedTrial, strategy: Strategy, context: TrialContext, deadline: Deadline) -> dict[str, Any]:
    with deadline.stage("evaluate", record="evaluate"):
        inject_fault("evaluate", strategy)
        return EvaluationAgent(context.evaluation).execute(
            {"model": pruned.model, "val_loader": pruned.eval_loader, "input_shape": context.input_shape,
             "device": pruned.device, "dataset_info": context.bundle.info, "deadline": deadline})["metrics"]


def _ok_row(strategy: Strategy, ids: dict[str, Any], pruned: PrunedTrial, metrics: dict[str, Any],
            stages: dict[str, float], **columns: Any) -> TrialResult:
    prune, before = pruned.prune, pruned.before
    return TrialResult(
        **ids, **{k: v for k, v in strategy_columns(strategy).items() if k != "target_value"},
        base_macs=prune["base_macs"], base_params=prune["base_params"], macs=prune["macs"], params=prune["params"],
        macs_reduction=prune["macs_reduction"], params_reduction=prune["params_reduction"],
        target_value=prune["target"], target_error=prune["error"],
        top1_before=before["top1"], top5_before=before.get("top5"), top1_adaptive_bn=pruned.adaptive_bn,
        top1_after=metrics["top1"], top5_after=metrics.get("top5"), loss_after=metrics.get("loss"),
        latency_ms=metrics.get("latency_ms"), status="ok",
        custom_metrics_json=json.dumps(metrics["custom"]) if metrics.get("custom") else None,
        **_stage_columns(stages), **columns,
    )


def _save(model: nn.Module, row: TrialResult, strategy: Strategy, context: TrialContext, save_dir: str) -> None:
    from multi_agent_pruning.core.serialization import save_pruned_model

    save_pruned_model(model.cpu(), save_dir, base_model=context.model_name, model_kwargs=context.model_kwargs,
                      metadata={"strategy": strategy.to_dict(), "macs": row.macs, "params": row.params,
                                "top1": row.top1_after, "trial_id": row.trial_id, "experiment": row.experiment})


def _run(strategy: Strategy, context: TrialContext, ids: dict[str, Any], deadline: Deadline,
         save_dir: str | None, device_setting: str) -> TrialResult:
    pruned, train_loader = _prune_and_probe(strategy, context, deadline, device_setting)
    tuned = _fine_tune(pruned, strategy, context, deadline, train_loader, seed=context.seed)
    metrics = _measure(pruned, strategy, context, deadline)
    row = _ok_row(strategy, ids, pruned, metrics, deadline.completed, steps_trained=tuned.get("steps"))
    if save_dir is not None:
        _save(pruned.model, row, strategy, context, save_dir)
    return row


# -- multi-fidelity trials (search.scheduler: asha) ---------------------------------------

_RUNG_STATE = "rung_state.json"
_OPTIMIZER = "optimizer.pt"


@dataclass
class RungProgress:
    """What a multi-fidelity trial carries from one rung to the next, and through its checkpoint.

    Attributes:
        rung: Last rung finished (-1: none yet).
        steps: Fine-tune optimiser steps so far, all rungs together.
        rungs: One ``{rung, budget, steps, top1, top5, loss, seconds}`` per finished rung.
        seconds: Stage seconds so far (``prune``, ``finetune`` summed over rungs, ``evaluate`` of the last).
        started_at: When the trial's first session started (ISO text).
        optimizer_state: The optimizer's per-parameter state after the last rung.
        session: 0 in the trial's first process, one more each time it continued from its
            checkpoint (a retry after its worker died); each rung records the session that ran it.
    """

    rung: int = -1
    steps: int = 0
    rungs: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    started_at: str | None = None
    optimizer_state: dict | None = None
    session: int = 0


def _segment_steps(strategy: Strategy, context: TrialContext, train_loader: Any) -> int:
    """Optimiser steps of the strategy's own fine-tune budget (rung budget 1)."""
    from multi_agent_pruning.core.training import FineTuneConfig

    overrides = {k: v for k, v in context.finetune.items() if k in FineTuneConfig.model_fields}
    return FineTuneConfig.from_strategy(strategy, **overrides).total_steps(_length(train_loader))


def _length(loader: Any) -> int | None:
    try:
        return len(loader)
    except TypeError:
        return None


def evaluate_rungs(strategy: Strategy, context: TrialContext, *, trial_id: str, iteration: int = 0,
                   deadline: Deadline | None = None,
                   resume: tuple[PrunedTrial, RungProgress] | None = None) -> Iterator[tuple[TrialResult, PrunedTrial, RungProgress]]:
    """A multi-fidelity trial: yields ``(row, pruned, progress)`` after each rung of ``context.rungs``.

    Rung ``k`` brings the model's fine-tune to ``rungs[k]`` times the strategy's budget in all:
    the same model and optimizer state continue, under a new warm-up + cosine schedule over the
    rung's added steps (a warm restart), with the training data in the order of seed
    ``seed + k``. Rung 0 is exactly the one-budget (FIFO) trial. The row of rung ``k`` has
    ``rung = k``, ``top1_after`` measured there, every rung so far in ``rungs_json``, and
    ``stopped_early`` true unless ``k`` is the last rung (if the scheduler promotes the trial, the
    next rung's row replaces it). ``resume`` continues from a checkpoint
    (:func:`load_rung_checkpoint`). An error ends the generator with a ``failed`` row that
    keeps the rungs already measured.
    """
    budgets = context.rungs or (1,)
    deadline = deadline or Deadline(context.trial_timeout_s)
    ids = context.identifiers(trial_id, iteration)
    where = placement()
    device_setting = compute_device(context.device, where["gpu_ids"], trial_id)
    where["device"] = _device_name(device_setting)
    if context.threads:
        torch.set_num_threads(context.threads)
    seed_everything(context.seed)
    clock = time.perf_counter()
    pruned, progress = resume if resume is not None else (None, RungProgress())
    progress.started_at = progress.started_at or datetime.now(timezone.utc).isoformat()
    elapsed_before = progress.seconds.get("total", 0.0)  # the sessions before this one
    try:
        if pruned is None:
            pruned, train_loader = _prune_and_probe(strategy, context, deadline, device_setting)
            progress.seconds["prune"] = deadline.completed.get("prune", 0.0)
        else:
            train_loader, _ = create_loaders(context.bundle, context.finetune_batch_size,
                                             num_workers=context.num_workers, seed=context.seed)
        base = _segment_steps(strategy, context, train_loader)
        for k in range(progress.rung + 1, len(budgets)):
            steps = base * budgets[k] - (base * budgets[k - 1] if k else 0)
            loader = train_loader if k == 0 else create_loaders(
                context.bundle, context.finetune_batch_size, num_workers=context.num_workers, seed=context.seed + k)[0]
            tuned = _fine_tune(pruned, strategy, context, deadline, loader, seed=context.seed + k, steps=steps,
                               optimizer_state=progress.optimizer_state, keep_optimizer_state=True, rung=k)
            metrics = _measure(pruned, strategy, context, deadline)
            progress.rung, progress.steps = k, progress.steps + int(tuned.get("steps") or 0)
            progress.optimizer_state = tuned.get("optimizer_state")
            progress.seconds["finetune"] = progress.seconds.get("finetune", 0.0) + deadline.completed["finetune"]
            progress.seconds["evaluate"] = deadline.completed["evaluate"]
            progress.rungs.append({"rung": k, "budget": budgets[k], "steps": progress.steps, "top1": metrics["top1"],
                                   "top5": metrics.get("top5"), "loss": _finite(metrics.get("loss")),
                                   "seconds": deadline.completed["finetune"], "session": progress.session})
            row = _ok_row(strategy, ids, pruned, metrics, {}, steps_trained=progress.steps, rung=k,
                          stopped_early=k < len(budgets) - 1, rungs_json=json.dumps(progress.rungs),
                          **{f"seconds_{name}": progress.seconds.get(name) for name in ("prune", "finetune", "evaluate")},
                          **where)
            _stamp(row, progress, elapsed_before + time.perf_counter() - clock)
            yield row, pruned, progress
    except Exception as err:  # a failed rung is a failed row that keeps the rungs before it
        logger.info("trial %s failed: %s: %s", trial_id, type(err).__name__, err)
        row = TrialResult.failed(error=err, strategy=strategy, **ids, **where,
                                 **{f"seconds_{name}": v for name, v in progress.seconds.items() if name != "total"},
                                 steps_trained=progress.steps or None,
                                 rung=progress.rung if progress.rung >= 0 else None,
                                 rungs_json=json.dumps(progress.rungs) if progress.rungs else None)
        _stamp(row, progress, elapsed_before + time.perf_counter() - clock)
        yield row, pruned, progress


def _finite(value: Any) -> Any:
    return value if value is None or (isinstance(value, float) and np.isfinite(value)) else None


def _stamp(row: TrialResult, progress: RungProgress, seconds: float) -> None:
    progress.seconds["total"] = seconds
    row.started_at = datetime.fromisoformat(progress.started_at)
    row.finished_at = datetime.now(timezone.utc)
    row.seconds_total = seconds


def save_rung_checkpoint(directory: str | Path, pruned: PrunedTrial, progress: RungProgress, row: TrialResult,
                         strategy: Strategy, context: TrialContext) -> None:
    """Writes a multi-fidelity trial's state after a rung: the model (as ``best_model/`` holds
    one), the optimizer state and ``rung_state.json`` (progress and the pre-fine-tune measurements)."""
    from multi_agent_pruning.utils.atomic import atomic_write

    directory = Path(directory)
    _save(pruned.model, row, strategy, context, str(directory))
    pruned.model.to(pruned.device)
    torch.save(progress.optimizer_state or {}, directory / _OPTIMIZER)
    state = {"rung": progress.rung, "steps": progress.steps, "rungs": progress.rungs, "seconds": progress.seconds,
             "started_at": progress.started_at, "prune": pruned.prune, "before": pruned.before,
             "adaptive_bn": pruned.adaptive_bn, "trial_id": row.trial_id, "session": progress.session}
    atomic_write(directory / _RUNG_STATE, json.dumps(state, default=float))


def load_rung_checkpoint(directory: str | Path, context: TrialContext) -> tuple[PrunedTrial, RungProgress]:
    """The state :func:`save_rung_checkpoint` wrote, ready for ``evaluate_rungs(resume=...)``."""
    from multi_agent_pruning.core.serialization import load_pruned_model

    directory = Path(directory)
    state = json.loads((directory / _RUNG_STATE).read_text())
    device = resolve_device(compute_device(context.device, placement()["gpu_ids"]))
    model, _ = load_pruned_model(directory, device=device)
    optimizer_state = torch.load(directory / _OPTIMIZER, map_location=device, weights_only=True) or None
    _, eval_loader = create_loaders(context.bundle, context.batch_size, num_workers=context.num_workers)
    pruned = PrunedTrial(device, context.model.to(device).eval(), model, state["prune"], state["before"],
                         state["adaptive_bn"], eval_loader)
    progress = RungProgress(rung=state["rung"], steps=state["steps"], rungs=state["rungs"], seconds=state["seconds"],
                            started_at=state["started_at"], optimizer_state=optimizer_state,
                            session=state.get("session", 0) + 1)
    return pruned, progress
