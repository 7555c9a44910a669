"""Fashion-MNIST from its standard idx files (Zalando's release, also Debian's ``dataset-fashion-mnist``).

Looked for in: the explicit path (or its ``FashionMNIST/raw`` subfolder, torchvision's layout),
else ``$FASHION_MNIST_PATH``, ``/usr/share/datasets/fashion-mnist`` and the download cache.
Images stay in memory as uint8 and are scaled and normalised per sample.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch

from multi_agent_pruning.data.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx
from multi_agent_pruning.data.locations import CACHE_ROOT, candidate_dirs, describe, download_root
from multi_agent_pruning.data.memory import UInt8ImageDataset, eval_transform
from multi_agent_pruning.data.registry import DatasetInfo, DatasetSplits, register_dataset
from multi_agent_pruning.exceptions import DatasetNotFoundError

__all__ = ["DEBIAN_DIR", "ENV_VAR", "FASHION_MNIST_INFO", "find_fashion_mnist"]

logger = logging.getLogger(__name__)

ENV_VAR = "FASHION_MNIST_PATH"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
_CACHE_NAME = "fashion-mnist"
_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "val_images": "t10k-images-idx3-ubyte",
    "val_labels": "t10k-labels-idx1-ubyte",
}
_NATIVE = (28, 28)

FASHION_MNIST_INFO = DatasetInfo(
    name="fashion_mnist",
    num_classes=10,
    in_chans=1,
    input_size=(1, 28, 28),
    # Measured on the 60,000 training images (tests/data/test_fashion_mnist.py checks it).
    mean=(0.2860,),
    std=(0.3530,),
    class_names=(
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
    description="Fashion-MNIST: 70,000 28x28 grayscale Zalando article images, 60k train / 10k test",
)


def _how_to_get() -> str:
    return (
        "Get it with `apt-get install dataset-fashion-mnist` (installs the idx files into "
        f"{DEBIAN_DIR}), set {ENV_VAR} or dataset.path to a folder holding "
        f"{', '.join(name + '[.gz]' for name in _FILES.values())}, "
        "or allow a download with `--set dataset.download=true`."
    )


def _files_in(directory: Path) -> dict[str, Path] | None:
    """The four idx files in ``directory`` (plain preferred over .gz), or ``None`` if any is missing."""
    found = {}
    for key, name in _FILES.items():
        options = [directory / name, directory / f"{name}.gz"]
        existing = [option for option in options if option.is_file()]
        if not existing:
            return None
        found[key] = existing[0]
    return found


def find_fashion_mnist(path: Path | None) -> dict[str, Path]:
    """Paths of the four idx files, searched as described in the module docstring.

    Raises:
        DatasetNotFoundError: No searched folder holds all four files; lists the folders.
    """
    searched = []
    for directory in candidate_dirs(path, ENV_VAR, (DEBIAN_DIR, CACHE_ROOT / _CACHE_NAME)):
        for folder in (directory, directory / "FashionMNIST" / "raw"):
            searched.append(folder)
            files = _files_in(folder)
            if files is not None:
                return files
    raise DatasetNotFoundError(f"Fashion-MNIST idx files not found. Looked in:\n{describe(searched)}\n{_how_to_get()}")


@functools.lru_cache(maxsize=2)
def _read_arrays(files: tuple[tuple[str, Path, int, int], ...]) -> dict[str, torch.Tensor]:
    """Images ``(N, 1, 28, 28)`` uint8 and int64 labels; the key includes mtimes so edits reload."""
    arrays = {}
    for key, file, _mtime, _size in files:
        magic = IMAGES_MAGIC if key.endswith("images") else LABELS_MAGIC
        arrays[key] = torch.from_numpy(read_idx(file, magic))
    for split in ("train", "val"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if len(images) != len(labels) or tuple(images.shape[1:]) != _NATIVE:
            raise DatasetNotFoundError(
                f"Fashion-MNIST {split} files disagree: images {tuple(images.shape)}, labels {tuple(labels.shape)}; "
                f"expected (N, 28, 28) and (N,). {_how_to_get()}"
            )
        if len(labels) and int(labels.max()) >= FASHION_MNIST_INFO.num_classes:
            raise DatasetNotFoundError(f"Fashion-MNIST {split} labels go up to {int(labels.max())}, expected 0..9")
        arrays[f"{split}_images"] = images.unsqueeze(1)
    return arrays


def _download(path: Path | None) -> None:
    from torchvision.datasets import FashionMNIST

    root = download_root(path, ENV_VAR, _CACHE_NAME)
    logger.info("Downloading Fashion-MNIST into %s", root)
    try:
        for train in (True, False):
            FashionMNIST(str(root), train=train, download=True)
    except Exception as error:  # torchvision raises URLError, RuntimeError, OSError...
        raise DatasetNotFoundError(f"Downloading Fashion-MNIST into {root} failed: {error}\n{_how_to_get()}") from error


@register_dataset("fashion_mnist", info=FASHION_MNIST_INFO)
def load_fashion_mnist(info: DatasetInfo, path: Path | None, download: bool) -> DatasetSplits:
    """Loads Fashion-MNIST train (60k) and test (10k, used as validation) splits."""
    try:
        files = find_fashion_mnist(path)
    except DatasetNotFoundError:
        if not download:
            raise
        _download(path)
        files = find_fashion_mnist(download_root(path, ENV_VAR, _CACHE_NAME))
    key = tuple((name, file, file.stat().st_mtime_ns, file.stat().st_size) for name, file in sorted(files.items()))
    arrays = _read_arrays(key)
    transform = eval_transform(tuple(info.input_size[1:]), _NATIVE, info.mean, info.std)
    return DatasetSplits(
        train=UInt8ImageDataset(arrays["train_images"], arrays["train_labels"], transform),
        val=UInt8ImageDataset(arrays["val_images"], arrays["val_labels"], transform),
    )
