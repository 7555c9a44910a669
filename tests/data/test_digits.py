"""The embedded digits dataset: sizes, shapes, the fixed split, normalisation, calibration."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from multi_agent_pruning.data import get_dataset_info, load_dataset
from multi_agent_pruning.data.digits import DIGITS_INFO
from multi_agent_pruning.data.sampling import dataset_targets


@pytest.fixture(scope="module")
def bundle():
    return load_dataset("digits")


def test_sizes_and_shapes(bundle):
    assert len(bundle.train) + len(bundle.val) == 1797
    assert len(bundle.val) == 359  # round(0.2 * n) per class
    image, label = bundle.train[0]
    assert image.shape == (1, 16, 16) and image.dtype == torch.float32
    assert isinstance(label.item(), int) and 0 <= label.item() <= 9
    assert bundle.info.input_size == (1, 16, 16) and bundle.info.num_classes == 10


def test_split_is_deterministic_and_disjoint(bundle):
    again = load_dataset("digits", seed=123)  # the run seed must not move the split
    assert torch.equal(bundle.train.tensors[0], again.train.tensors[0])
    assert torch.equal(bundle.val.tensors[1], again.val.tensors[1])
    # Every original image lands in exactly one split: compare raw 8x8 images as bytes.
    train8 = load_dataset("digits", image_size=8)
    raw = {bytes(row) for row in load_digits().images.reshape(1797, -1).astype(np.uint8)}
    std, mean = DIGITS_INFO.std[0], DIGITS_INFO.mean[0]

    def as_raw(x):
        return {bytes(row) for row in torch.round((x * std + mean) * 16).to(torch.uint8).reshape(len(x), -1).numpy()}

    train_raw, val_raw = as_raw(train8.train.tensors[0]), as_raw(train8.val.tensors[0])
    assert train_raw | val_raw == raw


def test_val_is_stratified(bundle):
    counts = np.bincount(dataset_targets(bundle.val), minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37
    assert counts.sum() == 359


def test_normalisation_constants_match_the_train_split():
    bundle = load_dataset("digits", image_size=8)
    pixels = bundle.train.tensors[0]
    # Normalised with the stored constants, the train split has mean ~0 and std ~1.
    assert abs(pixels.mean().item()) < 1e-3
    assert abs(pixels.std().item() - 1.0) < 1e-3


def test_image_size_8_and_resize_keeps_content():
    small = load_dataset("digits", image_size=8)
    large = load_dataset("digits", image_size=32)
    assert small.train[0][0].shape == (1, 8, 8)
    assert large.train[0][0].shape == (1, 32, 32)
    assert get_dataset_info("digits", image_size=32).input_size == (1, 32, 32)
    # Bilinear upsampling pooled back to 8x8 keeps each image's mean and its pattern.
    pooled = torch.nn.functional.avg_pool2d(large.train.tensors[0], 4).flatten(1)
    original = small.train.tensors[0].flatten(1)
    assert torch.allclose(pooled.mean(1), original.mean(1), atol=1e-5)
    pooled, original = pooled - pooled.mean(1, keepdim=True), original - original.mean(1, keepdim=True)
    correlation = (pooled * original).sum(1) / (pooled.norm(dim=1) * original.norm(dim=1))
    assert correlation.min() > 0.9


def test_calibration_subset_size_and_determinism(bundle):
    assert len(bundle.calibration) == 256
    first = load_dataset("digits", calibration_samples=64, seed=7)
    second = load_dataset("digits", calibration_samples=64, seed=7)
    other = load_dataset("digits", calibration_samples=64, seed=8)
    assert first.calibration.indices == second.calibration.indices
    assert first.calibration.indices != other.calibration.indices
    assert len(set(first.calibration.indices)) == 64
    image, label = first.calibration[0]
    index = first.calibration.indices[0]
    assert torch.equal(image, first.train.tensors[0][index]) and label == first.train.tensors[1][index]


def test_calibration_capped_at_train_size():
    bundle = load_dataset("digits", train_samples=100, calibration_samples=500)
    assert len(bundle.train) == 100 and len(bundle.calibration) == 100


def test_train_and_val_samples_subsample_stratified():
    bundle = load_dataset("digits", train_samples=200, val_samples=50, seed=3)
    assert len(bundle.train) == 200 and len(bundle.val) == 50
    assert np.bincount(dataset_targets(bundle.train), minlength=10).tolist() == [20] * 10
    assert np.bincount(dataset_targets(bundle.val), minlength=10).tolist() == [5] * 10
    again = load_dataset("digits", train_samples=200, val_samples=50, seed=3)
    assert bundle.train.indices == again.train.indices and bundle.val.indices == again.val.indices
