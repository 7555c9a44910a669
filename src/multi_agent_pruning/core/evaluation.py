"""Top-k accuracy and loss of a classifier over a loader, device resolution, and the trial deadline."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from multi_agent_pruning.exceptions import ConfigIssue, ConfigurationError, TrialTimeoutError

logger = logging.getLogger(__name__)

__all__ = ["Deadline", "evaluate", "has_batchnorm", "logits_of", "recalibrate_batchnorm", "resolve_device"]


class Deadline:
    """A trial's wall-clock limit, checked cooperatively once per step, batch or iteration.

    The trial says which stage it is in (``with deadline.stage("prune"): ...``); the training,
    evaluation and pruning loops call :meth:`check`, which raises
    :class:`~multi_agent_pruning.exceptions.TrialTimeoutError` naming the limit and that stage
    once the limit has passed. ``Deadline(None)`` never expires. A call that never returns
    (a hang inside C code) is not interrupted: see ``search.tune_trial.evaluate_with_backstop``.

    Attributes:
        seconds: The limit; None for no limit.
        current: The stage named in a timeout error.
        completed: Measured seconds of the stages that finished, by their ``record`` name.
    """

    def __init__(self, seconds: float | None, *, stage: str = "start", elapsed: float = 0.0) -> None:
        """Starts the clock now, ``elapsed`` seconds already used (by the part of the trial run
        before, e.g. in the process that launched this one: clocks of two processes differ)."""
        self.seconds = seconds
        self.current = stage
        self.completed: dict[str, float] = {}
        self._start = time.monotonic() - elapsed

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._start

    def remaining(self) -> float | None:
        """Seconds left (negative once passed); None without a limit."""
        return None if self.seconds is None else self.seconds - self.elapsed

    def expired(self) -> bool:
        return self.seconds is not None and self.elapsed > self.seconds

    def check(self) -> None:
        """Raises TrialTimeoutError once the limit has passed; otherwise does nothing."""
        if self.expired():
            raise TrialTimeoutError(self.seconds, self.current, self.elapsed)

    @contextlib.contextmanager
    def stage(self, name: str, *, record: str | None = None) -> Iterator[None]:
        """Runs a stage named ``name`` in timeout errors; the limit is checked at its start and end.

        Args:
            name: The stage as a timeout error names it (``prune``, ``fine-tune``, ``evaluate``).
            record: When given, the stage's measured seconds are kept in ``completed[record]``
                once it finishes (also when the limit passed during it).
        """
        self.current = name
        self.check()
        clock = time.perf_counter()
        yield
        if record is not None:
            self.completed[record] = time.perf_counter() - clock
        self.check()


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The torch device for ``device``: None or ``"auto"`` picks CUDA when available, else CPU.

    Raises:
        ConfigurationError: An unknown device string, or CUDA requested where there is none.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigurationError("Invalid device:", [ConfigIssue(
            "device", f"must be 'auto', 'cpu', 'cuda' or 'cuda:<index>' ({err})", device)]) from err
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = resolved.index or 0
        if index >= count:
            raise ConfigurationError("Invalid device:", [ConfigIssue(
                "device", f"CUDA device {index} is not available ({count} CUDA device(s) found)", device)])
    return resolved


def logits_of(output: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """Class logits of a model's output; the mean of a tuple (distilled DeiT's class and distillation heads)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and all(isinstance(o, torch.Tensor) for o in output):
        return torch.stack(list(output)).mean(dim=0)
    raise TypeError(f"model output must be a tensor of logits or a tuple of them, got {type(output).__name__}")


def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    device: str | torch.device | None = None,
    topk: Sequence[int] = (1, 5),
    max_batches: int | None = None,
    deadline: Deadline | None = None,
) -> dict[str, float]:
    """Top-k accuracy and mean cross-entropy of ``model`` over ``loader``.

    Runs in eval mode without gradients and restores every submodule's previous mode afterwards
    (the model stays on ``device``). With fewer classes than ``k``, top-k counts the top
    ``num_classes`` predictions, so it is 1.0 (every label is among all classes).

    Args:
        model: A classifier returning ``(batch, num_classes)`` logits.
        loader: ``(inputs, labels)`` batches.
        device: ``"auto"``/None (CUDA if available), ``"cpu"``, ``"cuda:0"``, ...
        topk: Which top-k accuracies to report.
        max_batches: Evaluate only the first this many batches (None: all).
        deadline: Checked before every batch (None: no limit).

    Returns:
        ``{"top1": ..., "top5": ... (one key per k, fractions in [0, 1]), "loss": mean
        cross-entropy per sample, "samples": count, "batches": count, "seconds": wall time}``.

    Raises:
        ConfigurationError: Bad ``topk``/``max_batches``, or a loader that yields no sample.
        TrialTimeoutError: ``deadline`` passed.
    """
    _check(topk, max_batches)
    device = resolve_device(device)
    modes = {module: module.training for module in model.modules()}
    model.to(device).eval()
    start = time.perf_counter()
    correct = dict.fromkeys(topk, 0)
    loss_sum, samples, batches = 0.0, 0, 0
    try:
        with torch.no_grad():
            for inputs, targets in loader:
                if max_batches is not None and batches >= max_batches:
                    break
                if deadline is not None:
                    deadline.check()
                inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
                logits = logits_of(model(inputs)).float()
                loss_sum += float(F.cross_entropy(logits, targets, reduction="sum"))
                for k, hits in _topk_hits(logits, targets, topk).items():
                    correct[k] += hits
                samples += targets.numel()
                batches += 1
    finally:
        for module, training in modes.items():
            module.training = training
    if samples == 0:
        raise ConfigurationError("Invalid evaluation input:", [
            ConfigIssue("loader", "must yield at least one sample", "an empty loader")])
    metrics = {f"top{k}": correct[k] / samples for k in topk}
    metrics.update(loss=loss_sum / samples, samples=samples, batches=batches,
                   seconds=time.perf_counter() - start)
    logger.debug("evaluated %d samples: %s", samples, metrics)
    return metrics


def _topk_hits(logits: torch.Tensor, targets: torch.Tensor, topk: Sequence[int]) -> dict[int, int]:
    widest = min(max(topk), logits.shape[-1])
    top = logits.topk(widest, dim=-1).indices  # sorted, best first
    matches = top.eq(targets.unsqueeze(-1))
    return {k: int(matches[:, : min(k, widest)].any(dim=-1).sum()) for k in topk}


def _check(topk: Sequence[int], max_batches: int | None) -> None:
    issues = []
    if not topk or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in topk):
        issues.append(ConfigIssue("topk", "must be a non-empty sequence of positive integers", topk))
    bad_max = isinstance(max_batches, bool) or not isinstance(max_batches, int) or max_batches < 1
    if max_batches is not None and bad_max:
        issues.append(ConfigIssue("max_batches", "must be a positive integer or null", max_batches))
    if issues:
        raise ConfigurationError("Invalid evaluation settings:", issues)


def has_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` has a BatchNorm layer that tracks running statistics."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats for m in model.modules())


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], *,
                          max_batches: int, device: str | torch.device | None = None,
                          deadline: Deadline | None = None) -> int:
    """Adaptive BatchNorm (EagleEye, Li et al., ECCV 2020): re-estimates every BatchNorm layer's
    running mean and variance on ``max_batches`` training batches, in place, without any weight
    update. Pruning changes the activations each BatchNorm sees, so the statistics of the dense
    model no longer fit; with fresh ones a pruned model's accuracy is a cheap early signal of how
    it will recover.

    The statistics are the plain average over the batches (``momentum=None``); each layer's
    momentum and every module's training mode are restored afterwards.

    Returns:
        The number of batches used (0 when the model has no BatchNorm: nothing changes).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms or max_batches < 1:
        return 0
    device = resolve_device(device)
    momenta = [m.momentum for m in norms]
    modes = {m: m.training for m in model.modules()}
    used = 0
    try:
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None
        model.train()
        for inputs, _ in batches:
            if deadline is not None:
                deadline.check()
            model(inputs.to(device, non_blocking=True))
            used += 1
            if used >= max_batches:
                break
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        for module, mode in modes.items():
            module.train(mode)
    return used
