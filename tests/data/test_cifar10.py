"""CIFAR-10: a tiny cifar-10-batches-py written here in the original pickle layout."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.datasets import CIFAR10

from multi_agent_pruning.data import load_dataset
from multi_agent_pruning.data.cifar10 import CIFAR10_INFO
from multi_agent_pruning.exceptions import DatasetNotFoundError

NAMES = ["plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
MEAN = torch.tensor(CIFAR10_INFO.mean).view(3, 1, 1)
STD = torch.tensor(CIFAR10_INFO.std).view(3, 1, 1)


def _dump(path: Path, entry: dict, protocol: int) -> None:
    with path.open("wb") as handle:
        pickle.dump(entry, handle, protocol=protocol)


def write_cifar(root: Path, per_batch: int = 3, test: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Writes root/cifar-10-batches-py; returns all train images (N, 3, 32, 32) and the test images."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, size=(5 * per_batch, 3, 32, 32), dtype=np.uint8)
    for number in range(5):
        chunk = slice(number * per_batch, (number + 1) * per_batch)
        entry = {
            "batch_label": f"training batch {number + 1} of 5",
            "data": train[chunk].reshape(per_batch, -1),
            "labels": [index % 10 for index in range(chunk.start, chunk.stop)],
            "filenames": [f"img_{index}.png" for index in range(chunk.start, chunk.stop)],
        }
        _dump(folder / f"data_batch_{number + 1}", entry, protocol=2 if number % 2 else 5)
    test_images = rng.integers(0, 256, size=(test, 3, 32, 32), dtype=np.uint8)
    _dump(folder / "test_batch", {"data": test_images.reshape(test, -1), "labels": [9 - i for i in range(test)]}, 4)
    _dump(folder / "batches.meta", {"label_names": NAMES, "num_cases_per_batch": per_batch, "num_vis": 3072}, 2)
    return train, test_images


def _normalise(images: np.ndarray) -> torch.Tensor:
    return (torch.from_numpy(images).float() / 255 - MEAN) / STD


def test_loads_tiny_batches(tmp_path):
    train, test_images = write_cifar(tmp_path)
    bundle = load_dataset("cifar10", path=tmp_path, calibration_samples=6)
    assert (len(bundle.train), len(bundle.val), len(bundle.calibration)) == (15, 4, 6)
    assert bundle.info.class_names == tuple(NAMES)
    assert bundle.info.input_size == (3, 32, 32)
    for index in range(4):
        image, label = bundle.val[index]
        assert label == 9 - index
        assert torch.allclose(image, _normalise(test_images[index]), atol=1e-5)
    # Calibration uses the evaluation transform: exact training pixels, no augmentation.
    for position, index in enumerate(bundle.calibration.indices):
        image, label = bundle.calibration[position]
        assert label == index % 10
        assert torch.allclose(image, _normalise(train[index]), atol=1e-5)


def test_train_augmentation_is_a_padded_crop_or_its_flip(tmp_path):
    train, _ = write_cifar(tmp_path)
    bundle = load_dataset("cifar10", path=tmp_path / "cifar-10-batches-py")  # the folder itself works too
    padded = F.pad(torch.from_numpy(train[7]).float() / 255, (4, 4, 4, 4))
    crops = [padded[:, top : top + 32, left : left + 32] for top in range(9) for left in range(9)]
    crops += [crop.flip(-1) for crop in crops]
    torch.manual_seed(0)
    seen = set()
    for _ in range(10):
        image, label = bundle.train[7]
        assert label == 7
        raw = image * STD + MEAN
        distances = [(raw - crop).abs().max().item() for crop in crops]
        assert min(distances) < 1e-5
        seen.add(distances.index(min(distances)))
    assert len(seen) > 1  # the crop position / flip really is random


def test_matches_torchvision_reader(tmp_path):
    train, _ = write_cifar(tmp_path)

    class UncheckedCIFAR10(CIFAR10):
        """torchvision's reader with md5 sums disabled (ours are not the official files)."""

        train_list = [[name, None] for name, _ in CIFAR10.train_list]
        test_list = [[name, None] for name, _ in CIFAR10.test_list]
        meta = {**CIFAR10.meta, "md5": None}

    reference = UncheckedCIFAR10(str(tmp_path), train=True)
    assert reference.classes == NAMES
    assert np.array_equal(reference.data, train.transpose(0, 2, 3, 1))
    bundle = load_dataset("cifar10", path=tmp_path)
    ours = bundle.calibration  # eval transform, so pixels compare exactly
    for position, index in enumerate(ours.indices):
        assert ours[position][1] == reference.targets[index]
        expected = torch.from_numpy(reference.data[index]).permute(2, 0, 1).numpy()
        assert torch.allclose(ours[position][0], _normalise(expected), atol=1e-5)


def test_image_size_resizes(tmp_path):
    write_cifar(tmp_path)
    bundle = load_dataset("cifar10", path=tmp_path, image_size=16)
    assert bundle.train[0][0].shape == (3, 16, 16) and bundle.val[0][0].shape == (3, 16, 16)


def test_missing_path_says_where_and_how(tmp_path):
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset("cifar10", path=tmp_path)
    message = str(error.value)
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert "dataset.download=true" in message and "data_batch_5" in message


def test_code_in_a_pickle_is_refused(tmp_path):
    write_cifar(tmp_path)

    class Payload:
        def __reduce__(self):
            return (os.getcwd, ())

    _dump(tmp_path / "cifar-10-batches-py" / "test_batch", {"data": Payload(), "labels": []}, 4)
    with pytest.raises(DatasetNotFoundError, match="getcwd is not allowed"):
        load_dataset("cifar10", path=tmp_path)
