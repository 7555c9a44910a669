"""create_loaders / create_calibration_loader on the digits dataset."""

from __future__ import annotations

import pytest
import torch

from multi_agent_pruning.data import create_calibration_loader, create_loaders, load_dataset
from multi_agent_pruning.exceptions import ConfigurationError


@pytest.fixture(scope="module")
def bundle():
    return load_dataset("digits", calibration_samples=100)


def _labels(loader) -> list[int]:
    return torch.cat([labels for _, labels in loader]).tolist()


def test_batch_shapes_and_counts(bundle):
    train_loader, val_loader = create_loaders(bundle, batch_size=64)
    images, labels = next(iter(train_loader))
    assert images.shape == (64, 1, 16, 16) and images.dtype == torch.float32
    assert labels.shape == (64,) and labels.dtype == torch.int64
    assert len(bundle.train) == 1438
    assert len(train_loader) == 1438 // 64  # last incomplete batch dropped
    assert sum(len(labels) for _, labels in train_loader) == 22 * 64
    assert [len(labels) for _, labels in val_loader] == [64] * 5 + [39]


def test_shuffling_is_seeded(bundle):
    first = _labels(create_loaders(bundle, batch_size=32, seed=0)[0])
    again = _labels(create_loaders(bundle, batch_size=32, seed=0)[0])
    other = _labels(create_loaders(bundle, batch_size=32, seed=1)[0])
    assert first == again
    assert first != other
    ordered = bundle.train.tensors[1][: len(first)].tolist()
    assert first != ordered  # really shuffled


def test_epochs_differ_but_repeat_across_runs(bundle):
    loader = create_loaders(bundle, batch_size=128, seed=5)[0]
    epoch_one, epoch_two = _labels(loader), _labels(loader)
    assert epoch_one != epoch_two
    fresh = create_loaders(bundle, batch_size=128, seed=5)[0]
    assert [_labels(fresh), _labels(fresh)] == [epoch_one, epoch_two]


def test_workers_give_the_same_order(bundle):
    in_process = _labels(create_loaders(bundle, batch_size=256, seed=3)[0])
    with_worker = _labels(create_loaders(bundle, batch_size=256, seed=3, num_workers=1)[0])
    assert in_process == with_worker


def test_drop_last_only_with_more_than_one_batch():
    small = load_dataset("digits", train_samples=50, calibration_samples=10)
    train_loader, _ = create_loaders(small, batch_size=64)
    assert [len(labels) for _, labels in train_loader] == [50]
    medium = load_dataset("digits", train_samples=100, calibration_samples=10)
    train_loader, _ = create_loaders(medium, batch_size=64)
    assert [len(labels) for _, labels in train_loader] == [64]


def test_val_is_in_order_and_complete(bundle):
    _, val_loader = create_loaders(bundle, batch_size=100)
    assert _labels(val_loader) == bundle.val.tensors[1].tolist()


def test_calibration_loader_covers_the_subset_in_order(bundle):
    loader = create_calibration_loader(bundle, batch_size=32)
    assert [len(labels) for _, labels in loader] == [32, 32, 32, 4]
    expected = bundle.train.tensors[1][bundle.calibration.indices].tolist()
    assert _labels(loader) == expected


def test_invalid_options_are_reported_together(bundle):
    with pytest.raises(ConfigurationError) as error:
        create_loaders(bundle, batch_size=0, num_workers=-1)
    message = str(error.value)
    assert "batch_size: must be a positive integer (got 0)" in message
    assert "num_workers: must be an integer >= 0 (got -1)" in message
    with pytest.raises(ConfigurationError, match="batch_size"):
        create_calibration_loader(bundle, batch_size=1.5)
