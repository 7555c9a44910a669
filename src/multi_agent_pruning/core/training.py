"""Recovery training of a pruned model: AdamW/SGD, warm-up + cosine, label smoothing, optional KD.

``fine_tune`` runs a fixed budget of optimiser steps (given directly or as a possibly
fractional number of epochs), cycling over the loader as often as needed. Mixed precision is
only used on CUDA: bfloat16 where the GPU supports it (no loss scaling needed, same exponent
range as float32), float16 with a ``GradScaler`` otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import Field
from tqdm.auto import tqdm

from multi_agent_pruning.config import FinetuneConfig, FineTuningAgentConfig, section_issues
from multi_agent_pruning.core.evaluation import Deadline, logits_of, resolve_device
from multi_agent_pruning.exceptions import ConfigIssue, ConfigurationError, MultiAgentPruningError

logger = logging.getLogger(__name__)

__all__ = ["FineTuneConfig", "FineTuneResult", "NonFiniteLossError", "distillation_loss", "fine_tune", "lr_multiplier",
           "parameter_groups", "set_gradient_checkpointing", "training_loss"]

_SGD_MOMENTUM = 0.9
_STEP_MILESTONES = (0.5, 0.75)  # fractions of the post-warm-up steps where "step" divides the lr by 10


class NonFiniteLossError(MultiAgentPruningError):
    """The training loss became NaN or infinite; the message names the step."""


class _TrainerFields(FinetuneConfig, FineTuningAgentConfig):
    """The ``finetune`` section and the fine-tuning agent's optimizer and schedule, in one model."""

    log_every: int = Field(50, ge=0, description="Log the training loss every this many steps; 0 = never.")


class FineTuneConfig(_TrainerFields):
    """Recovery-training settings: the config's ``finetune`` section and the fine-tuning agent's
    ``optimizer`` and ``scheduler`` (``agents.fine_tuning_agent``), with their defaults and rules.

    Built directly, invalid values raise one :class:`ConfigurationError` whose issues are keyed
    ``finetune.<field>`` exactly as in a configuration file.
    """

    def __init__(self, **values: Any) -> None:
        issues = section_issues("finetune", _TrainerFields, values)
        if issues:
            raise ConfigurationError("Invalid fine-tuning configuration:", issues)
        super().__init__(**values)

    @classmethod
    def from_strategy(cls, strategy: Any, **overrides: Any) -> FineTuneConfig:
        """The recovery settings of a :class:`~multi_agent_pruning.core.strategy.Strategy`.

        Takes epochs, steps, learning rate, weight decay and KD weight from the strategy;
        ``overrides`` set any field (and win over the strategy).

        Raises:
            ConfigurationError: An override names no field, or a value is invalid.
        """
        values = {"epochs": strategy.finetune_epochs, "steps": strategy.finetune_steps,
                  "lr": strategy.learning_rate, "weight_decay": strategy.weight_decay,
                  "kd_weight": strategy.kd_weight}
        return cls(**{**values, **overrides})

    def total_steps(self, batches_per_epoch: int | None) -> int:
        """Optimiser steps of the budget: ``steps``, else ``round(epochs * batches_per_epoch)``.

        A positive number of epochs always gives at least one step.

        Raises:
            ConfigurationError: The budget is in epochs and the loader has no length.
        """
        if self.steps is not None:
            return self.steps
        if self.epochs == 0:
            return 0
        if batches_per_epoch is None:
            raise ConfigurationError("Invalid fine-tuning configuration:", [ConfigIssue(
                "finetune.steps", "must be set when the train loader has no length", self.steps)])
        return max(1, math.floor(self.epochs * batches_per_epoch + 0.5))



@dataclass
class FineTuneResult:
    """What one recovery run did; every number is measured.

    Attributes:
        steps: Optimiser steps run.
        epochs: ``steps`` in passes over the loader (None when the loader has no length).
        final_loss: Training loss of the last step (None when no step ran).
        mean_loss: Mean training loss over all steps (None when no step ran).
        loss_history: Training loss of each step, before that step's update.
        lr_history: Learning rate used by each step.
        seconds: Wall time of the run.
        precision: ``"float32"``, ``"bfloat16"`` or ``"float16"`` (autocast dtype).
        device: Device the model was trained on.
        optimizer_state: The optimizer's per-parameter state after the last step (AdamW moments,
            SGD momentum), to continue in a later run (``fine_tune(optimizer_state=...)``); None
            when no step ran.
    """

    steps: int
    epochs: float | None
    final_loss: float | None
    mean_loss: float | None
    loss_history: list[float] = field(default_factory=list)
    lr_history: list[float] = field(default_factory=list)
    seconds: float = 0.0
    precision: str = "float32"
    device: str = "cpu"
    optimizer_state: dict[str, Any] | None = field(default=None, repr=False)

    def summary(self) -> dict[str, Any]:
        """JSON-friendly numbers without the per-step histories."""
        return {"steps": self.steps, "epochs": self.epochs, "final_loss": self.final_loss,
                "mean_loss": self.mean_loss, "seconds": self.seconds, "precision": self.precision,
                "device": self.device}


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al.'s distillation loss: ``KL(teacher_T || student_T) * T**2``, batch mean.

    The ``T**2`` factor keeps the gradient scale independent of the temperature.
    """
    t = float(temperature)
    student = F.log_softmax(student_logits.float() / t, dim=-1)
    teacher = F.log_softmax(teacher_logits.float() / t, dim=-1)
    return F.kl_div(student, teacher, reduction="batchmean", log_target=True) * (t * t)


def lr_multiplier(step: int, total_steps: int, warmup_steps: int, scheduler: str) -> float:
    """Factor of the peak learning rate used by optimiser step ``step`` (0-based).

    Warm-up rises linearly to 1 over ``warmup_steps`` (its first step already uses
    ``1 / warmup_steps``, so no step is wasted at lr 0); then ``cosine`` decays as
    ``0.5 * (1 + cos(pi * progress))``, ``step`` divides by 10 at 50% and 75% of the remaining
    steps, ``none`` stays at 1.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if scheduler == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if scheduler == "step":
        return 0.1 ** sum(progress >= m for m in _STEP_MILESTONES)
    return 1.0


def set_gradient_checkpointing(model: nn.Module) -> bool:
    """Turns on activation checkpointing where the model supports it (timm's
    ``set_grad_checkpointing``); logs once and returns False where it does not."""
    if hasattr(model, "set_grad_checkpointing"):
        model.set_grad_checkpointing(True)
        return True
    if type(model).__name__ not in _NO_CHECKPOINTING:
        _NO_CHECKPOINTING.add(type(model).__name__)
        logger.warning("gradient checkpointing asked for, but %s has no set_grad_checkpointing(); training without it",
                       type(model).__name__)
    return False


_NO_CHECKPOINTING: set[str] = set()


def fine_tune(
    model: nn.Module,
    train_loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    config: FineTuneConfig,
    *,
    teacher: nn.Module | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
    seed: int = 0,
    on_step: Callable[[int, float, float], None] | None = None,
    deadline: Deadline | None = None,
    optimizer_state: dict[str, Any] | None = None,
) -> FineTuneResult:
    """Recovers a pruned model with a short supervised run, optionally distilled from ``teacher``.

    The model is moved to ``device`` and trained in place; it is left in **eval mode** (also
    when an error is raised), ready to evaluate. The global RNG is seeded with ``seed`` inside a
    forked RNG state, so dropout and loaders without their own generator repeat exactly and the
    caller's RNG is untouched; a loader with its own generator sets its own order.

    Args:
        model: The model to train.
        train_loader: ``(inputs, labels)`` batches; iterated again as often as the budget needs.
        config: Budget and optimisation settings.
        teacher: Dense model for knowledge distillation (moved to ``device``, used in eval mode
            without gradients); required when ``config.kd_weight > 0``.
        device: ``"auto"``/None (CUDA if available), ``"cpu"``, ``"cuda:1"``, ...
        progress: Show a tqdm progress bar.
        seed: Seed of the run.
        on_step: Called after every step as ``on_step(step, loss, lr)`` with a 1-based step.
        deadline: Checked before every step (None: no limit); bounds a budget of any size in time.
        optimizer_state: ``FineTuneResult.optimizer_state`` of an earlier run on this model: the
            optimizer continues with that state (AdamW moments and step counts) under this run's
            learning-rate schedule, which starts again with its warm-up (a warm restart, as SGDR).

    Returns:
        A :class:`FineTuneResult`; a zero budget returns one with no steps and leaves weights as they are.

    Raises:
        ConfigurationError: KD requested without a teacher, epochs budget on a loader without a
            length, or a loader that yields no batch.
        NonFiniteLossError: The loss became NaN or infinite (the message gives the step).
        TrialTimeoutError: ``deadline`` passed.
    """
    if config.kd_weight > 0 and teacher is None:
        raise ConfigurationError("Invalid fine-tuning configuration:", [ConfigIssue(
            "finetune.kd_weight", "needs a teacher model (pass teacher=...) when > 0", config.kd_weight)])
    batches = _length(train_loader)
    total = config.total_steps(batches)
    device = resolve_device(device)
    model.to(device)
    start = time.perf_counter()
    if total == 0:
        model.eval()
        return FineTuneResult(steps=0, epochs=0.0, final_loss=None, mean_loss=None, device=str(device))
    if teacher is not None and config.kd_weight > 0:
        teacher.to(device).eval()
    else:
        teacher = None
    rng_devices = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=rng_devices):
            torch.manual_seed(seed)
            result = _train(model, train_loader, config, teacher, device, total, progress, on_step, deadline,
                            optimizer_state)
    finally:
        model.eval()
    result.epochs = total / batches if batches else None
    result.seconds = time.perf_counter() - start
    logger.info("fine-tuned %d steps in %.1fs, final loss %.4f", total, result.seconds, result.final_loss)
    return result


def _train(model, loader, config, teacher, device, total, progress, on_step, deadline,
           optimizer_state=None) -> FineTuneResult:
    optimizer = _create_optimizer(model, config)
    if optimizer_state is not None:  # only the per-parameter state: lr and groups are this run's
        fresh = optimizer.state_dict()
        optimizer.load_state_dict({"state": optimizer_state, "param_groups": fresh["param_groups"]})
    warmup = math.floor(config.warmup_ratio * total + 0.5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_multiplier(step, total, warmup, config.scheduler))
    amp_dtype = _amp_dtype(config, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    autocast = (lambda: torch.autocast("cuda", dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext
    losses: list[float] = []
    lrs: list[float] = []
    model.train()
    bar = tqdm(total=total, desc="fine-tune", disable=not progress, leave=False)
    with bar:
        for step, (inputs, targets) in enumerate(_cycle(loader, total), start=1):
            if deadline is not None:
                deadline.check()
            inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            lr = optimizer.param_groups[0]["lr"]
            with autocast():
                loss = training_loss(model, teacher, inputs, targets, config)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise NonFiniteLossError(f"training loss is {value} at step {step} of {total} (lr {lr:.3g})")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.gradient_clip is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), config.gradient_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            losses.append(value)
            lrs.append(lr)
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4f}", refresh=False)
            if config.log_every and step % config.log_every == 0:
                logger.info("step %d/%d loss %.4f lr %.3g", step, total, value, lr)
            if on_step is not None:
                on_step(step, value, lr)
    precision = str(amp_dtype).removeprefix("torch.") if amp_dtype else "float32"
    return FineTuneResult(steps=len(losses), epochs=None, final_loss=losses[-1],
                          mean_loss=sum(losses) / len(losses), loss_history=losses, lr_history=lrs,
                          precision=precision, device=str(device), optimizer_state=optimizer.state_dict()["state"])


def training_loss(model, teacher, inputs, targets, config) -> torch.Tensor:
    """Cross-entropy with ``config.label_smoothing``, mixed with the distillation loss from
    ``teacher`` (``config.kd_weight``, ``config.kd_temperature``) when a teacher is given; the
    search's fine-tune and the final recovery (core.recovery) train with it."""
    logits = logits_of(model(inputs))
    loss = F.cross_entropy(logits.float(), targets, label_smoothing=config.label_smoothing)
    if teacher is None:
        return loss
    with torch.no_grad():
        teacher_logits = logits_of(teacher(inputs))
    kd = distillation_loss(logits, teacher_logits, config.kd_temperature)
    return (1.0 - config.kd_weight) * loss + config.kd_weight * kd


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """The optimiser's parameter groups: weight decay on the weights only. Decay pulls values
    towards 0; for biases and norm scales that only hurts, as in timm."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if param.ndim <= 1 else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _create_optimizer(model: nn.Module, config: FineTuneConfig) -> torch.optim.Optimizer:
    groups = parameter_groups(model, config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=_SGD_MOMENTUM)
    return torch.optim.AdamW(groups, lr=config.lr)


def _amp_dtype(config: FineTuneConfig, device: torch.device) -> torch.dtype | None:
    if not config.amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _cycle(loader: Iterable, total: int) -> Iterator:
    """Batches of ``loader``, starting it again as often as needed, ``total`` in all."""
    done = 0
    while done < total:
        empty = True
        for batch in loader:
            empty = False
            yield batch
            done += 1
            if done >= total:
                return
        if empty:
            raise ConfigurationError("Invalid fine-tuning input:", [
                ConfigIssue("train_loader", "must yield at least one batch", "an empty loader")])


def _length(loader: Iterable) -> int | None:
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return None
