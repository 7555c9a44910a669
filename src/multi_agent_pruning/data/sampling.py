"""Deterministic, seeded subsets of datasets (subsampling and calibration)."""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

__all__ = ["dataset_targets", "random_indices", "stratified_indices"]

logger = logging.getLogger(__name__)


def dataset_targets(dataset: Dataset) -> np.ndarray | None:
    """Integer labels of every sample without loading images, or ``None`` if unknown.

    Understands :class:`~torch.utils.data.Subset`, :class:`~torch.utils.data.TensorDataset`
    (second tensor) and any dataset with a ``targets`` attribute (torchvision, ImageFolder).
    """
    if isinstance(dataset, Subset):
        parent = dataset_targets(dataset.dataset)
        return None if parent is None else parent[np.asarray(dataset.indices, dtype=np.int64)]
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) >= 2:
        return dataset.tensors[1].numpy()
    targets = getattr(dataset, "targets", None)
    if targets is None:
        return None
    if isinstance(targets, torch.Tensor):
        return targets.numpy()
    return np.asarray(targets, dtype=np.int64)


def random_indices(length: int, count: int, seed: int) -> list[int]:
    """``min(count, length)`` distinct indices in ``range(length)``, fixed by ``seed``, sorted."""
    if count >= length:
        return list(range(length))
    chosen = np.random.default_rng(seed).permutation(length)[:count]
    return sorted(chosen.tolist())


def stratified_indices(dataset: Dataset, count: int, seed: int) -> list[int]:
    """``count`` indices of ``dataset`` keeping its class proportions, fixed by ``seed``, sorted.

    Each class contributes in proportion to its size (largest-remainder style, rounding
    decided by a seeded shuffle). Falls back to a seeded random subset when the dataset's
    labels cannot be read without loading the images.
    """
    length = len(dataset)
    if count >= length:
        if count > length:
            logger.info("Requested %d samples but only %d exist; keeping all", count, length)
        return list(range(length))
    targets = dataset_targets(dataset)
    if targets is None:
        return random_indices(length, count, seed)
    permutation = np.random.default_rng(seed).permutation(length)
    shuffled = targets[permutation]
    by_class = np.argsort(shuffled, kind="stable")
    class_start = np.searchsorted(shuffled[by_class], shuffled[by_class], side="left")
    rank = np.empty(length, dtype=np.int64)
    rank[by_class] = np.arange(length) - class_start
    class_size = np.bincount(shuffled)[shuffled]
    # Taking samples in order of (rank + 0.5) / class_size fills every class at the same rate.
    order = np.argsort((rank + 0.5) / class_size, kind="stable")
    return sorted(permutation[order[:count]].tolist())
