"""What a paper target needs before it can run: its base model registered, its dataset on disk."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from multi_agent_pruning.config import load_config
from multi_agent_pruning.data.cifar10 import find_cifar10
from multi_agent_pruning.data.imagenet import find_imagenet
from multi_agent_pruning.exceptions import ConfigurationError, DatasetNotFoundError, UnknownNameError
from multi_agent_pruning.models import get_model_spec
from multi_agent_pruning.stats.paper_targets import PaperTarget

__all__ = ["missing_prerequisites", "configured_dataset_path"]

logger = logging.getLogger(__name__)

_DATASETS = {"imagenet": ("ImageNet", "IMAGENET_PATH"), "cifar10": ("CIFAR-10", "CIFAR10_PATH")}


def missing_prerequisites(target: PaperTarget, config_path: Path | None = None) -> list[str]:
    """Why ``target`` cannot run here (model not registered, dataset not found); empty when it can.

    Args:
        target: The paper target.
        config_path: Experiment YAML whose ``datasets.<name>.path`` / ``dataset.path`` is
            searched first; the dataset's environment variable is used otherwise.
    """
    reasons = []
    try:
        get_model_spec(target.base_model)
    except UnknownNameError:
        reasons.append(f"model {target.base_model!r} ({target.model} base) is not in the model registry "
                       "(register it with multi_agent_pruning.models.register_model to run this target)")
    dataset_reason = _dataset_reason(target.dataset, config_path)
    if dataset_reason:
        reasons.append(dataset_reason)
    return reasons


def _dataset_reason(dataset: str, config_path: Path | None) -> str | None:
    finders = {"imagenet": find_imagenet, "cifar10": find_cifar10}
    if dataset not in finders:
        return None
    label, env_var = _DATASETS[dataset]
    path, config_problem = configured_dataset_path(config_path, dataset)
    try:
        finders[dataset](path)
    except DatasetNotFoundError:
        where = path or os.environ.get(env_var)
        if where:
            return f"{label} not found at {where} (set {env_var})"
        config_note = f"the config could not be read ({config_problem})" if config_problem else \
            "the config gives no path"
        return f"{label} not found: {env_var} is not set and {config_note} (set {env_var})"
    return None


def configured_dataset_path(config_path: Path | None, dataset: str) -> tuple[Path | None, str | None]:
    """``datasets.<name>.path`` or ``dataset.path`` of the config, and why the config was unusable.

    Returns:
        ``(path or None, None)``, or ``(None, problem)`` when the config does not load, e.g.
        because it refers to an unset ``${IMAGENET_PATH}``.
    """
    if config_path is None:
        return None, None
    try:
        config = load_config(config_path)
    except ConfigurationError as exc:
        logger.debug("Config %s not usable for dataset paths: %s", config_path, exc)
        return None, "; ".join(str(issue) for issue in exc.issues) or str(exc)
    override = config.datasets.get(dataset)
    path = override.path if override and override.path else (
        config.dataset.path if config.dataset.name == dataset else None)
    return (Path(path).expanduser() if path else None), None
