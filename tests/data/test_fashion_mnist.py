"""Fashion-MNIST: idx files written here (gz and plain), errors, and the real Debian files."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from multi_agent_pruning.data import load_dataset
from multi_agent_pruning.data.fashion_mnist import DEBIAN_DIR, FASHION_MNIST_INFO
from multi_agent_pruning.exceptions import DatasetNotFoundError

MEAN, STD = FASHION_MNIST_INFO.mean[0], FASHION_MNIST_INFO.std[0]


def _idx_bytes(magic: int, array: np.ndarray) -> bytes:
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()


def _write(path: Path, data: bytes) -> None:
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def _images(count: int, offset: int) -> np.ndarray:
    pixels = (np.arange(count * 28 * 28).reshape(count, 28, 28) * 7 + offset) % 256
    return pixels.astype(np.uint8)


def write_fashion(folder: Path, train: int = 12, val: int = 5, train_gz: bool = True) -> dict[str, np.ndarray]:
    """Writes the four idx files (train gzip-compressed, val plain by default); returns the arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": (2051, _images(train, 3)),
        "train-labels-idx1-ubyte": (2049, np.arange(train) % 10),
        "t10k-images-idx3-ubyte": (2051, _images(val, 100)),
        "t10k-labels-idx1-ubyte": (2049, (np.arange(val) * 3) % 10),
    }
    for name, (magic, array) in arrays.items():
        gz = train_gz if name.startswith("train") else not train_gz
        _write(folder / (name + (".gz" if gz else "")), _idx_bytes(magic, array))
    return {name: array for name, (_, array) in arrays.items()}


def test_loads_values_labels_and_shapes(tmp_path):
    arrays = write_fashion(tmp_path)
    bundle = load_dataset("fashion_mnist", path=tmp_path, calibration_samples=4)
    assert (len(bundle.train), len(bundle.val), len(bundle.calibration)) == (12, 5, 4)
    image, label = bundle.train[5]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert label == 5
    expected = (torch.from_numpy(arrays["train-images-idx3-ubyte"][5]).float() / 255 - MEAN) / STD
    assert torch.allclose(image[0], expected, atol=1e-6)
    val_image, val_label = bundle.val[4]
    assert val_label == 2  # 4 * 3 % 10
    val_pixels = torch.from_numpy(arrays["t10k-images-idx3-ubyte"][4]).float() / 255
    assert torch.allclose(val_image[0], (val_pixels - MEAN) / STD, atol=1e-6)
    assert bundle.info.class_names[9] == "Ankle boot"


def test_plain_and_gz_swapped_and_resized(tmp_path):
    write_fashion(tmp_path, train_gz=False)
    bundle = load_dataset("fashion_mnist", path=tmp_path, image_size=14)
    assert bundle.train[0][0].shape == (1, 14, 14)
    assert bundle.info.input_size == (1, 14, 14)


def test_torchvision_layout_and_env_var(tmp_path, monkeypatch):
    write_fashion(tmp_path / "FashionMNIST" / "raw", train=10, val=3)
    monkeypatch.setenv("FASHION_MNIST_PATH", str(tmp_path))
    bundle = load_dataset("fashion_mnist")
    assert (len(bundle.train), len(bundle.val)) == (10, 3)


def test_subsampling_is_stratified_and_seeded(tmp_path):
    write_fashion(tmp_path, train=40, val=10)
    bundle = load_dataset("fashion_mnist", path=tmp_path, train_samples=20, val_samples=5, seed=1)
    labels = [bundle.train[i][1] for i in range(len(bundle.train))]
    assert np.bincount(labels, minlength=10).tolist() == [2] * 10
    again = load_dataset("fashion_mnist", path=tmp_path, train_samples=20, val_samples=5, seed=1)
    assert bundle.train.indices == again.train.indices
    assert len(bundle.val) == 5


def test_bad_magic_names_the_file(tmp_path):
    write_fashion(tmp_path)
    bad = tmp_path / "t10k-labels-idx1-ubyte"
    _write(bad, _idx_bytes(2051, np.zeros(5)))  # image magic on a label file
    with pytest.raises(DatasetNotFoundError, match="magic number 2051, expected 2049") as error:
        load_dataset("fashion_mnist", path=tmp_path)
    assert str(bad) in str(error.value)


def test_truncated_file_is_reported(tmp_path):
    write_fashion(tmp_path)
    target = tmp_path / "t10k-images-idx3-ubyte"
    target.write_bytes(target.read_bytes()[:-10])
    with pytest.raises(DatasetNotFoundError, match="declares shape"):
        load_dataset("fashion_mnist", path=tmp_path)


def test_missing_path_says_where_and_how(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset("fashion_mnist", path=missing)
    message = str(error.value)
    assert str(missing) in message
    assert "/usr/share/datasets/fashion-mnist" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "dataset.download=true" in message


@pytest.mark.skipif(
    not (DEBIAN_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason="real Fashion-MNIST absent: apt-get install dataset-fashion-mnist",
)
def test_real_debian_files():
    bundle = load_dataset("fashion_mnist", path=DEBIAN_DIR, calibration_samples=32)
    assert (len(bundle.train), len(bundle.val), len(bundle.calibration)) == (60000, 10000, 32)
    images = bundle.train.images.float() / 255
    assert abs(images.mean().item() - MEAN) < 1e-3 and abs(images.std().item() - STD) < 1e-3
    assert np.bincount(bundle.train.targets.numpy()).tolist() == [6000] * 10
    assert np.bincount(bundle.val.targets.numpy()).tolist() == [1000] * 10
    assert bundle.train[0][0].shape == (1, 28, 28)
