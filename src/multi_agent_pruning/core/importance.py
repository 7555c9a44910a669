"""Importance criteria: names -> torch-pruning importance estimators, plus their gradients.

``taylor`` and ``hessian`` need gradients of the loss on calibration data; call
:func:`prepare_importance` after building the estimator and before ranking channels.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch_pruning as tp

from multi_agent_pruning.exceptions import PruningError
from multi_agent_pruning.utils.registry import Registry

logger = logging.getLogger(__name__)

__all__ = ["IMPORTANCE_REGISTRY", "create_importance", "criteria", "needs_gradients", "prepare_importance"]

IMPORTANCE_REGISTRY: Registry[Callable[[], tp.importance.Importance]] = Registry("importance criterion")
_GRADIENT_CRITERIA = {"taylor", "hessian"}

IMPORTANCE_REGISTRY.add("l1", lambda: tp.importance.GroupMagnitudeImportance(p=1))
IMPORTANCE_REGISTRY.add("l2", lambda: tp.importance.GroupMagnitudeImportance(p=2))
IMPORTANCE_REGISTRY.add("taylor", lambda: tp.importance.GroupTaylorImportance())
IMPORTANCE_REGISTRY.add("hessian", lambda: tp.importance.GroupHessianImportance())
IMPORTANCE_REGISTRY.add("lamp", lambda: tp.importance.LAMPImportance(p=2))
IMPORTANCE_REGISTRY.add("fpgm", lambda: tp.importance.FPGMImportance(p=2))
IMPORTANCE_REGISTRY.add("random", lambda: tp.importance.RandomImportance())


def criteria() -> list[str]:
    """Names of the registered criteria, in registration order (the built-ins first)."""
    return IMPORTANCE_REGISTRY.names(sort=False)


def create_importance(name: str) -> tp.importance.Importance:
    """A fresh torch-pruning importance estimator for criterion ``name``."""
    return IMPORTANCE_REGISTRY.get(name)()


def needs_gradients(name: str) -> bool:
    """Whether criterion ``name`` reads gradients from calibration batches."""
    return name in _GRADIENT_CRITERIA


def prepare_importance(
    name: str,
    importance: tp.importance.Importance,
    model: nn.Module,
    calibration: Iterable[tuple[torch.Tensor, torch.Tensor]] | None,
    max_batches: int = 4,
    device: torch.device | str = "cpu",
) -> None:
    """Accumulates the gradients that ``taylor``/``hessian`` importance reads.

    Taylor uses the gradient of the mean cross-entropy over up to ``max_batches`` batches;
    Hessian (OBD-style) accumulates squared per-sample gradients as torch-pruning expects.
    Other criteria need nothing. The model's train/eval mode is restored afterwards.
    """
    if not needs_gradients(name):
        return
    if calibration is None:
        raise PruningError(f"importance {name!r} needs calibration batches (inputs and labels)")
    was_training = model.training
    model.eval()
    model.zero_grad(set_to_none=True)
    seen = 0
    if name == "hessian":
        importance.zero_grad()
    try:
        for batch_index, (inputs, targets) in enumerate(calibration):
            if batch_index >= max_batches:
                break
            inputs, targets = inputs.to(device), targets.to(device)
            if name == "taylor":
                loss = F.cross_entropy(model(inputs), targets)
                loss.backward()
            else:
                for sample, target in zip(inputs, targets):
                    model.zero_grad(set_to_none=True)
                    loss = F.cross_entropy(model(sample.unsqueeze(0)), target.unsqueeze(0))
                    loss.backward()
                    _accumulate_squared_grads(importance, model)
            seen += len(inputs)
    finally:
        model.train(was_training)
    if seen == 0:
        raise PruningError(f"importance {name!r} needs calibration batches, but none were given")
    logger.debug("accumulated %s gradients over %d samples", name, seen)


def _accumulate_squared_grads(importance: tp.importance.GroupHessianImportance, model: nn.Module) -> None:
    """Adds each parameter's squared gradient to the estimator's running sums.

    torch-pruning 1.6.1's ``accumulate_grad`` tests membership by parameter *name* in a dict
    keyed by parameter, so it overwrites instead of summing; this does the intended sum.
    """
    for param in model.parameters():
        if param.grad is None:
            continue
        squared = param.grad.detach().pow(2)
        if param in importance._accu_grad:
            importance._accu_grad[param] += squared
            importance._counter[param] += 1
        else:
            importance._accu_grad[param] = squared.clone()
            importance._counter[param] = 1
