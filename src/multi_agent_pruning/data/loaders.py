"""DataLoaders over a :class:`DatasetBundle`, seeded so that a run can be repeated exactly."""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import DataLoader

from multi_agent_pruning.data.registry import DatasetBundle
from multi_agent_pruning.exceptions import ConfigIssue, ConfigurationError

__all__ = ["create_calibration_loader", "create_loaders", "take_calibration_batches"]


def create_loaders(
    bundle: DatasetBundle,
    batch_size: int,
    num_workers: int = 0,
    seed: int = 0,
    pin_memory: bool = False,
) -> tuple[DataLoader, DataLoader]:
    """Train and validation loaders.

    The train loader shuffles with a generator seeded by ``seed`` (same seed, same batch order)
    and drops the last incomplete batch when there is more than one batch, so batch-norm never
    sees a batch of one at the end of an epoch. The validation loader keeps every sample, in order.

    Args:
        bundle: The loaded dataset.
        batch_size: Samples per batch (both loaders).
        num_workers: Worker processes per loader; 0 loads in the calling process.
        seed: Seed of the shuffling order and of the workers' random augmentation.
        pin_memory: Pin batches in page-locked memory (faster host-to-GPU copies).

    Raises:
        ConfigurationError: ``batch_size`` < 1 or ``num_workers`` < 0.
    """
    _check(batch_size, num_workers)
    generator = torch.Generator().manual_seed(seed)
    common = {
        "batch_size": batch_size,
        "num_workers": num_workers,
        "pin_memory": pin_memory,
        "worker_init_fn": _seed_worker if num_workers > 0 else None,
    }
    train = DataLoader(
        bundle.train, shuffle=True, drop_last=len(bundle.train) > batch_size, generator=generator, **common
    )
    val = DataLoader(bundle.val, shuffle=False, drop_last=False, **common)
    return train, val


def create_calibration_loader(bundle: DatasetBundle, batch_size: int, num_workers: int = 0) -> DataLoader:
    """Loader over the calibration subset: fixed order, every sample, no augmentation.

    Raises:
        ConfigurationError: ``batch_size`` < 1 or ``num_workers`` < 0.
    """
    _check(batch_size, num_workers)
    return DataLoader(bundle.calibration, batch_size=batch_size, shuffle=False, num_workers=num_workers)


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker from the loader's generator; timm and NumPy augmentations draw from
    # `random` and NumPy, which torch leaves alone, so derive their seeds from the same value.
    del worker_id
    worker_seed = torch.initial_seed() % 2**32
    random.seed(worker_seed)
    np.random.seed(worker_seed)


def _check(batch_size: int, num_workers: int) -> None:
    issues = []
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        issues.append(ConfigIssue("batch_size", "must be a positive integer", batch_size))
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        issues.append(ConfigIssue("num_workers", "must be an integer >= 0", num_workers))
    if issues:
        raise ConfigurationError("Invalid data loader options", issues)


def take_calibration_batches(bundle: DatasetBundle, batches: int, batch_size: int) -> list:
    """The first ``batches`` ``(inputs, labels)`` batches of the calibration split (deterministic)."""
    return [batch for _, batch in zip(range(batches), create_calibration_loader(bundle, batch_size))]
