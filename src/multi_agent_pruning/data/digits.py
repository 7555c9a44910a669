"""scikit-learn's handwritten digits: the embedded default dataset (no files, no network).

1,797 real 8x8 grayscale scans (UCI optdigits test set), 10 classes. The split is stratified
80/20 with a seed of its own, so it never changes with the run seed or between processes.
All tensors are built once per process and image size.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from multi_agent_pruning.data.registry import DatasetInfo, DatasetSplits, register_dataset

__all__ = ["DIGITS_INFO", "SPLIT_SEED", "VAL_FRACTION"]

SPLIT_SEED = 20240501
VAL_FRACTION = 0.2
_NATIVE_SIZE = 8
_MAX_PIXEL = 16.0  # load_digits stores 4-bit intensities, 0..16

DIGITS_INFO = DatasetInfo(
    name="digits",
    num_classes=10,
    in_chans=1,
    input_size=(1, 16, 16),
    # Measured on the train split at 8x8 on the [0, 1] scale (tests/data/test_digits.py checks it).
    mean=(0.3052,),
    std=(0.3762,),
    class_names=tuple(str(digit) for digit in range(10)),
    description="scikit-learn load_digits: 1,797 real 8x8 handwritten digits, stratified 80/20 split",
)


@functools.lru_cache(maxsize=1)
def _split_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pixels in [0, 1] and labels of the fixed train and val splits."""
    from sklearn.datasets import load_digits  # imported lazily: sklearn takes ~1 s to import

    digits = load_digits()
    images = (digits.images / _MAX_PIXEL).astype(np.float32)
    labels = digits.target.astype(np.int64)
    # A legacy RandomState stream is frozen by NumPy's policy, so the split is the same forever.
    rng = np.random.RandomState(SPLIT_SEED)
    val_mask = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        val_mask[members[: round(VAL_FRACTION * len(members))]] = True
    return images[~val_mask], labels[~val_mask], images[val_mask], labels[val_mask]


@functools.lru_cache(maxsize=4)
def _tensors(image_size: int, mean: float, std: float) -> tuple[torch.Tensor, ...]:
    """Normalised ``(N, 1, S, S)`` float tensors and labels for train and val (read-only, shared)."""
    train_x, train_y, val_x, val_y = _split_arrays()
    return (
        _prepare(train_x, image_size, mean, std),
        torch.from_numpy(train_y),
        _prepare(val_x, image_size, mean, std),
        torch.from_numpy(val_y),
    )


def _prepare(images: np.ndarray, image_size: int, mean: float, std: float) -> torch.Tensor:
    batch = torch.from_numpy(images).unsqueeze(1)
    if image_size != _NATIVE_SIZE:
        size = (image_size, image_size)
        batch = F.interpolate(batch, size=size, mode="bilinear", align_corners=False, antialias=True)
    return (batch - mean) / std


@register_dataset("digits", info=DIGITS_INFO)
def load_digits_dataset(info: DatasetInfo, path: Path | None, download: bool) -> DatasetSplits:
    """Builds the digits splits at ``info.input_size``; ``path`` and ``download`` are unused."""
    del path, download  # the data ships inside scikit-learn
    train_x, train_y, val_x, val_y = _tensors(info.input_size[1], info.mean[0], info.std[0])
    return DatasetSplits(train=TensorDataset(train_x, train_y), val=TensorDataset(val_x, val_y))
