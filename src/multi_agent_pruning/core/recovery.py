"""The final recovery of a pruned model: epochs of training with a checkpoint after each one.

The search ranks strategies with a short fine-tune (:mod:`~multi_agent_pruning.core.training`);
this is the long one that turns the chosen strategy into a deployable model, as the papers do
(e.g. Isomorphic Pruning's recovery of DeiT with distillation from the dense model):

- AdamW with weight decay on the weights only, a linear warm-up then a cosine decay per step
  (:func:`~multi_agent_pruning.core.training.lr_multiplier`), label smoothing;
- knowledge distillation from the dense teacher (``kd_weight``, ``kd_temperature``);
- optionally an exponential moving average of the weights (``ema_decay``, torch's
  ``AveragedModel``): the averaged model is the one evaluated and returned;
- a checkpoint after every epoch (model, optimizer, schedule, EMA, random state, the history),
  written atomically, so :func:`recover` with ``resume=True`` continues after the last finished
  epoch with no epoch lost or repeated: the data order of epoch ``e`` depends only on the seed
  and ``e``, and the random state is restored, so an interrupted and resumed recovery gives the
  same weights as one that ran through.

The top-1 reported is the last epoch's (the model the user gets), not the best epoch's: choosing
an epoch by its accuracy on the evaluation set would tune on it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from multi_agent_pruning.core.evaluation import evaluate, resolve_device
from multi_agent_pruning.core.training import lr_multiplier, parameter_groups, training_loss
from multi_agent_pruning.core.training import NonFiniteLossError
from multi_agent_pruning.exceptions import CheckpointError, ConfigIssue, ConfigurationError
from multi_agent_pruning.utils.atomic import atomic_write

logger = logging.getLogger(__name__)

__all__ = ["CHECKPOINT_FILE", "RecoveryConfig", "RecoveryResult", "recover"]

#: The checkpoint's file name in the checkpoint folder.
CHECKPOINT_FILE = "recovery_checkpoint.pt"
_CHECKPOINT_FORMAT = 1


class RecoveryConfig(BaseModel):
    """Settings of the final recovery (``mapruner finetune``); invalid values raise one
    :class:`ConfigurationError` whose issues are keyed ``recovery.<field>``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(10, ge=1, description="Passes over the training set.")
    lr: float = Field(1e-3, gt=0, le=1, description="Peak learning rate of AdamW.")
    weight_decay: float = Field(0.05, ge=0, description="AdamW weight decay (weights only, not biases and norms).")
    warmup_epochs: float = Field(1.0, ge=0, description="Linear warm-up, in epochs (may be fractional).")
    batch_size: int = Field(128, ge=1, description="Training batch size.")
    kd_weight: float = Field(0.5, ge=0, le=1, description="Weight of the distillation loss from the dense teacher.")
    kd_temperature: float = Field(4.0, gt=0, description="Temperature of the distillation loss.")
    label_smoothing: float = Field(0.1, ge=0, lt=1, description="Label smoothing of the cross-entropy.")
    ema_decay: float | None = Field(None, gt=0, lt=1, description="Decay of the weights' moving average; "
                                                                  "None: no average.")
    gradient_clip: float | None = Field(None, gt=0, description="Clip the gradient norm to this; None: no clip.")
    seed: int = Field(0, description="Seed of the data order and the random state.")

    @classmethod
    def build(cls, **values: Any) -> RecoveryConfig:
        """The config from ``values``; one ConfigurationError naming every invalid field."""
        try:
            return cls(**values)
        except ValidationError as err:
            issues = [ConfigIssue("recovery." + ".".join(str(p) for p in e["loc"]), e["msg"], e.get("input"))
                      for e in err.errors()]
            raise ConfigurationError("Invalid recovery configuration:", issues) from None


@dataclass
class RecoveryResult:
    """What a recovery measured; ``history`` has one entry per epoch (also the resumed ones)."""

    epochs: int
    top1: float | None
    top5: float | None
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: int = 0
    seconds: float = 0.0
    ema: bool = False
    world_size: int = 1


def recover(model: nn.Module, train_loader_for: Callable[[int], Any], val_loader: Any, config: RecoveryConfig, *,
            checkpoint_dir: str | Path, teacher: nn.Module | None = None, resume: bool = False,
            device: str | torch.device | None = None, progress: bool = False,
            on_epoch: Callable[[dict[str, Any]], None] | None = None,
            parallel: Callable[[nn.Module], nn.Module] | None = None, writer: bool = True) -> RecoveryResult:
    """Recovers ``model`` in place (it ends as the evaluated model: the EMA weights when enabled).

    Args:
        model: The pruned model, freshly pruned from the dense one (a resume loads the
            checkpoint's weights into it; its structure must be the same).
        train_loader_for: ``epoch -> loader`` of that epoch (its order must depend only on the
            epoch and the seed, for an exact resume).
        val_loader: Evaluation batches, after every epoch.
        config: The recovery settings.
        checkpoint_dir: Where the checkpoint is written after every epoch.
        teacher: The dense model (needed when ``kd_weight > 0``).
        resume: Continue from the checkpoint in ``checkpoint_dir`` (none there: start at epoch 1).
        progress: A progress bar over the steps of all epochs.
        on_epoch: Called with each epoch's entry after its checkpoint is written.
        parallel: Wraps the model for training after any checkpoint is loaded (Ray Train's
            ``prepare_model``: DistributedDataParallel); the checkpoint and the EMA keep the
            unwrapped model (:func:`~multi_agent_pruning.core.distributed.distributed_recover`).
        writer: Whether this process writes the checkpoint (rank 0 of a data-parallel run).

    Raises:
        ConfigurationError: KD without a teacher, an empty loader.
        CheckpointError: The checkpoint is unreadable, from other settings, or does not fit ``model``.
    """
    if config.kd_weight > 0 and teacher is None:
        raise ConfigurationError("Invalid recovery configuration:", [ConfigIssue(
            "recovery.kd_weight", "needs the dense teacher when > 0", config.kd_weight)])
    device = resolve_device(device)
    model.to(device)
    if teacher is not None and config.kd_weight > 0:
        teacher.to(device).eval()
    else:
        teacher = None
    folder = Path(checkpoint_dir)
    folder.mkdir(parents=True, exist_ok=True)
    steps_per_epoch = _length(train_loader_for(0))
    total = steps_per_epoch * config.epochs
    warmup = min(total, math.floor(config.warmup_epochs * steps_per_epoch + 0.5))
    optimizer = _optimizer(model, config)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_multiplier(step, total, warmup, "cosine"))
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay)) if config.ema_decay else None
    history: list[dict[str, Any]] = []
    start_epoch = 0
    rng_state: torch.Tensor | None = None
    path = folder / CHECKPOINT_FILE
    if resume and path.exists():
        start_epoch, history, rng_state = _load(path, config, model, optimizer, schedule, ema, device)
        logger.info("resuming the recovery after epoch %d of %d (%s)", start_epoch, config.epochs, path)
    trained = parallel(model) if parallel is not None else model
    began = time.perf_counter()
    rng_devices = [device.index or 0] if device.type == "cuda" else []
    evaluated = ema.module if ema is not None else model
    with torch.random.fork_rng(devices=rng_devices), \
            tqdm(total=total, initial=start_epoch * steps_per_epoch, desc="recovery", disable=not progress) as bar:
        if rng_state is not None:
            torch.set_rng_state(rng_state)
        else:
            torch.manual_seed(config.seed)
        for epoch in range(start_epoch, config.epochs):
            epoch_began = time.perf_counter()
            losses = _train_epoch(trained, model, train_loader_for(epoch), teacher, optimizer, schedule, ema,
                                  config, device, bar, epoch)
            metrics = evaluate(evaluated, val_loader, device=device)
            entry = {"epoch": epoch + 1, "train_loss": sum(losses) / len(losses), "steps": len(losses),
                     "lr_end": optimizer.param_groups[0]["lr"], "top1": metrics["top1"],
                     "top5": metrics.get("top5"), "loss": metrics.get("loss"),
                     "seconds": time.perf_counter() - epoch_began}
            history.append(entry)
            if writer:
                _save(path, config, epoch + 1, history, model, optimizer, schedule, ema)
            bar.set_postfix(epoch=epoch + 1, top1=f"{metrics['top1']:.4f}", refresh=False)
            logger.info("recovery epoch %d/%d: loss %.4f, top-1 %.4f", epoch + 1, config.epochs,
                        entry["train_loss"], metrics["top1"])
            if on_epoch is not None:
                on_epoch(entry)
    model.eval()
    if ema is not None:
        model.load_state_dict(ema.module.state_dict())
    last = history[-1] if history else {}
    return RecoveryResult(epochs=len(history), top1=last.get("top1"), top5=last.get("top5"), history=history,
                          resumed_from=start_epoch, seconds=time.perf_counter() - began, ema=ema is not None)


def _train_epoch(trained, model, loader, teacher, optimizer, schedule, ema, config: RecoveryConfig, device, bar,
                 epoch: int) -> list[float]:
    """One epoch: ``trained`` is the module called (``model`` itself, or its DDP wrapper)."""
    trained.train()
    losses: list[float] = []
    for inputs, targets in loader:
        inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        loss = training_loss(trained, teacher, inputs, targets, config)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise NonFiniteLossError(f"recovery loss is {value} in epoch {epoch + 1}, step {len(losses) + 1}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.gradient_clip is not None:
            nn.utils.clip_grad_norm_(trained.parameters(), config.gradient_clip)
        optimizer.step()
        schedule.step()
        if ema is not None:
            ema.update_parameters(model)
        losses.append(value)
        bar.update(1)
    if not losses:
        raise ConfigurationError("Invalid recovery input:", [ConfigIssue(
            "train_loader", "must yield at least one batch", "an empty loader")])
    if ema is not None:  # the average's BatchNorm buffers are copied, not averaged
        for averaged, current in zip(ema.module.buffers(), model.buffers()):
            averaged.copy_(current)
    return losses


def _optimizer(model: nn.Module, config: RecoveryConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(parameter_groups(model, config.weight_decay), lr=config.lr)


def _length(loader: Any) -> int:
    try:
        n = len(loader)
    except TypeError as err:
        raise ConfigurationError("Invalid recovery input:", [ConfigIssue(
            "train_loader", "must have a length (epochs are counted in batches)", type(loader).__name__)]) from err
    if n < 1:
        raise ConfigurationError("Invalid recovery input:", [ConfigIssue(
            "train_loader", "must yield at least one batch", "an empty loader")])
    return n


def _settings(config: RecoveryConfig) -> dict[str, Any]:
    """The settings a checkpoint must match to be resumed (everything but nothing else)."""
    return config.model_dump()


def _save(path: Path, config: RecoveryConfig, epoch: int, history, model, optimizer, schedule, ema) -> None:
    state = {"format": _CHECKPOINT_FORMAT, "settings": _settings(config), "epoch": epoch, "history": history,
             "model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
             "ema": ema.state_dict() if ema is not None else None, "rng": torch.get_rng_state()}
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def _load(path: Path, config: RecoveryConfig, model, optimizer, schedule, ema, device):
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:
        raise CheckpointError(f"cannot read the recovery checkpoint {path}: {err}; delete it to start over") from err
    if state.get("format") != _CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a recovery checkpoint of format {_CHECKPOINT_FORMAT}")
    if state["settings"] != _settings(config):
        changed = sorted(k for k in set(state["settings"]) | set(_settings(config))
                         if state["settings"].get(k) != _settings(config).get(k))
        raise CheckpointError(f"{path} was written with other recovery settings ({', '.join(changed)} differ); "
                              "resume with the same settings, or start over without --resume")
    try:
        model.load_state_dict(state["model"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
    except RuntimeError as err:
        raise CheckpointError(f"{path} does not fit the re-pruned model ({str(err).splitlines()[0]}); "
                              "was the dense model or the strategy changed?") from err
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    return int(state["epoch"]), list(state["history"]), state["rng"].cpu()
