"""CIFAR-10 in torchvision's on-disk format (``cifar-10-batches-py``).

The batches are read here rather than through ``torchvision.datasets.CIFAR10`` because that
class insists on the md5 sums of the official files, so it rejects any subset or re-packed copy
(including the small files the tests write). The format is the same pickle layout torchvision
reads; the md5 check still happens where it matters, on download, which goes through torchvision.
Unpickling is restricted to NumPy arrays so a crafted file cannot run code.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import pickle
from pathlib import Path

import numpy as np
import torch
from torchvision import transforms

from multi_agent_pruning.data.locations import CACHE_ROOT, candidate_dirs, describe, download_root
from multi_agent_pruning.data.memory import UInt8ImageDataset, eval_transform
from multi_agent_pruning.data.registry import DatasetInfo, DatasetSplits, register_dataset
from multi_agent_pruning.exceptions import DatasetNotFoundError

__all__ = ["BATCHES_FOLDER", "CIFAR10_INFO", "ENV_VAR", "find_cifar10", "read_cifar_batch"]

logger = logging.getLogger(__name__)

ENV_VAR = "CIFAR10_PATH"
BATCHES_FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{number}" for number in range(1, 6))
VAL_FILES = ("test_batch",)
META_FILE = "batches.meta"
_CACHE_NAME = "cifar10"
_NATIVE = (32, 32)

CIFAR10_INFO = DatasetInfo(
    name="cifar10",
    num_classes=10,
    in_chans=3,
    input_size=(3, 32, 32),
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
    class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    description="CIFAR-10: 60,000 32x32 colour images in 10 classes, 50k train / 10k test",
)

_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),  # pickle protocol 5
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # bytes inside protocol-2 pickles written by Python 3
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    try:
        with path.open("rb") as handle:
            entry = _ArrayUnpickler(handle, encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError) as error:
        raise DatasetNotFoundError(f"Cannot read CIFAR-10 file {path}: {error}") from error
    if not isinstance(entry, dict):
        raise DatasetNotFoundError(f"{path} holds a {type(entry).__name__}, expected a dict")
    return entry


def read_cifar_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch file as ``(N, 3, 32, 32)`` uint8 images and int64 labels.

    Raises:
        DatasetNotFoundError: The file is unreadable or not in the CIFAR batch layout (names it).
    """
    entry = _unpickle(path)
    data, labels = entry.get("data"), entry.get("labels")
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels is None:
        raise DatasetNotFoundError(f"{path} is not a CIFAR batch: expected 'data' (N, 3072) uint8 and 'labels'")
    if len(labels) != len(data):
        raise DatasetNotFoundError(f"{path} has {len(data)} images but {len(labels)} labels")
    images = torch.from_numpy(np.ascontiguousarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32))
    return images, torch.as_tensor(np.asarray(labels, dtype=np.int64))


def _how_to_get(root: Path) -> str:
    return (
        f"Place the extracted {BATCHES_FOLDER} folder (from "
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz) in one of those folders, set "
        f"{ENV_VAR} or dataset.path, or allow a download into {root} with `--set dataset.download=true`."
    )


def find_cifar10(path: Path | None) -> Path:
    """The ``cifar-10-batches-py`` folder: ``path`` itself or its child, else ``$CIFAR10_PATH``, else the cache.

    Raises:
        DatasetNotFoundError: No candidate holds all batch files; lists where it looked.
    """
    searched = []
    for directory in candidate_dirs(path, ENV_VAR, (CACHE_ROOT / _CACHE_NAME,)):
        folder = directory if directory.name == BATCHES_FOLDER else directory / BATCHES_FOLDER
        searched.append(folder)
        if all((folder / name).is_file() for name in (*TRAIN_FILES, *VAL_FILES, META_FILE)):
            return folder
    raise DatasetNotFoundError(
        f"CIFAR-10 not found (needs {', '.join((*TRAIN_FILES, *VAL_FILES, META_FILE))}). Looked in:\n"
        f"{describe(searched)}\n{_how_to_get(download_root(path, ENV_VAR, _CACHE_NAME))}"
    )


def _download(path: Path | None) -> Path:
    from torchvision.datasets import CIFAR10

    root = download_root(path, ENV_VAR, _CACHE_NAME)
    if root.name == BATCHES_FOLDER:
        root = root.parent
    logger.info("Downloading CIFAR-10 into %s", root)
    try:
        CIFAR10(str(root), train=True, download=True)  # verifies the archive's md5
    except Exception as error:  # torchvision raises URLError, RuntimeError, OSError...
        raise DatasetNotFoundError(f"Downloading CIFAR-10 into {root} failed: {error}\n{_how_to_get(root)}") from error
    return root


def _read_split(folder: Path, names: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    parts = [read_cifar_batch(folder / name) for name in names]
    labels = torch.cat([labels for _, labels in parts])
    if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < CIFAR10_INFO.num_classes:
        found = f"{int(labels.min())}..{int(labels.max())}"
        raise DatasetNotFoundError(f"CIFAR-10 labels in {folder} must lie in 0..9, found {found}")
    return torch.cat([images for images, _ in parts]), labels


@functools.lru_cache(maxsize=2)
def _read_folder(folder: Path, stamp: tuple[tuple[int, int], ...]) -> tuple[torch.Tensor, ...]:
    """Train and val images and labels; ``stamp`` (mtimes, sizes) makes edited files reload."""
    del stamp
    return (*_read_split(folder, TRAIN_FILES), *_read_split(folder, VAL_FILES))


@register_dataset("cifar10", info=CIFAR10_INFO)
def load_cifar10(info: DatasetInfo, path: Path | None, download: bool) -> DatasetSplits:
    """Train: random crop 32 (padding 4) + horizontal flip; val (the test batch): normalise only."""
    try:
        folder = find_cifar10(path)
    except DatasetNotFoundError:
        if not download:
            raise
        folder = find_cifar10(_download(path))
    stats = [(folder / name).stat() for name in (*TRAIN_FILES, *VAL_FILES)]
    stamp = tuple((stat.st_mtime_ns, stat.st_size) for stat in stats)
    train_images, train_labels, val_images, val_labels = _read_folder(folder, stamp)
    if (len(train_images), len(val_images)) != (50_000, 10_000):
        logger.info("CIFAR-10 at %s is a partial copy: %d train, %d val", folder, len(train_images), len(val_images))
    names = _unpickle(folder / META_FILE).get("label_names")
    if names is not None and len(names) == info.num_classes:
        info = dataclasses.replace(info, class_names=tuple(str(name) for name in names))
    size = tuple(info.input_size[1:])
    evaluate = eval_transform(size, _NATIVE, info.mean, info.std)
    augment = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), evaluate])
    train = UInt8ImageDataset(train_images, train_labels, augment)
    return DatasetSplits(
        train=train,
        val=UInt8ImageDataset(val_images, val_labels, evaluate),
        train_eval=train.with_transform(evaluate),
        info=info,
    )
