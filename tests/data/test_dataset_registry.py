"""The dataset registry: names, info without loading, option checks, plug-ins."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from multi_agent_pruning.data import (
    DatasetInfo,
    DatasetSplits,
    get_dataset_info,
    list_datasets,
    load_dataset,
    register_dataset,
)
from multi_agent_pruning.data import registry
from multi_agent_pruning.exceptions import ConfigurationError, MultiAgentPruningError, UnknownNameError


def test_builtin_datasets_are_listed():
    assert list_datasets() == ["cifar10", "digits", "fashion_mnist", "imagenet"]


def test_unknown_name_suggests_close_names():
    with pytest.raises(UnknownNameError) as error:
        load_dataset("digit")
    assert error.value.suggestions[0] == "digits"
    assert str(error.value) == "Unknown dataset 'digit'. Did you mean: digits?"
    assert isinstance(error.value, KeyError) and isinstance(error.value, ConfigurationError)
    with pytest.raises(UnknownNameError, match="fashion_mnist"):
        get_dataset_info("fashion-mnist")


def test_info_without_loading(monkeypatch, tmp_path):
    monkeypatch.setenv("CIFAR10_PATH", str(tmp_path / "absent"))  # no files needed for info
    info = get_dataset_info("cifar10", image_size=64)
    assert info.input_size == (3, 64, 64) and info.num_classes == 10 and info.in_chans == 3
    assert get_dataset_info("cifar10").input_size == (3, 32, 32)
    assert get_dataset_info("imagenet").input_size == (3, 224, 224)
    assert get_dataset_info("digits").input_size == (1, 16, 16)
    assert get_dataset_info("fashion_mnist").class_names[0] == "T-shirt/top"


def test_bad_options_are_reported_together():
    with pytest.raises(ConfigurationError, match="dataset.image_size: must be a positive integer"):
        get_dataset_info("digits", image_size=0)
    with pytest.raises(ConfigurationError) as error:
        load_dataset("digits", image_size=True, calibration_samples=0, train_samples=-5)
    paths = [issue.path for issue in error.value.issues]
    assert paths == ["dataset.image_size", "dataset.calibration_samples", "dataset.train_samples"]


def test_info_is_validated():
    with pytest.raises(ConfigurationError) as error:
        DatasetInfo(name="bad", num_classes=2, in_chans=3, input_size=(1, 8, 8), mean=(0.5,), std=(0.5, 0.5, 0.5),
                    class_names=("a",))
    assert sorted(issue.path for issue in error.value.issues) == ["class_names", "input_size", "mean"]


def test_plugin_registration_and_duplicates():
    info = DatasetInfo(name="ramp", num_classes=2, in_chans=1, input_size=(1, 4, 4), mean=(0.0,), std=(1.0,))
    seen: list[tuple[tuple[int, ...], Path | None]] = []

    def load_ramp(info: DatasetInfo, path: Path | None, download: bool) -> DatasetSplits:
        seen.append((info.input_size, path))
        size = info.input_size[1]
        images = torch.arange(20, dtype=torch.float32).view(20, 1, 1, 1).expand(20, 1, size, size)
        labels = torch.arange(20) % 2
        return DatasetSplits(train=TensorDataset(images, labels), val=TensorDataset(images[:6], labels[:6]))

    register_dataset("ramp", info=info)(load_ramp)
    try:
        bundle = load_dataset("ramp", path="/tmp/ramp", image_size=6, calibration_samples=5, val_samples=4)
        assert seen == [((1, 6, 6), Path("/tmp/ramp"))]
        assert bundle.info.input_size == (1, 6, 6)
        assert len(bundle.calibration) == 5 and len(bundle.val) == 4
        assert sorted(int(bundle.val[i][1]) for i in range(4)) == [0, 0, 1, 1]
        with pytest.raises(MultiAgentPruningError, match="already registered"):
            register_dataset("ramp", info=info)(load_ramp)
    finally:
        registry._DATASETS.remove("ramp")
    assert "ramp" not in list_datasets()
