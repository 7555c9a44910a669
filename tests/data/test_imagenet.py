"""ImageNet loader on a tiny ImageFolder written here (PNG and JPEG files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from multi_agent_pruning.data import create_loaders, load_dataset
from multi_agent_pruning.data.imagenet import IMAGENET_INFO
from multi_agent_pruning.exceptions import DatasetNotFoundError

CLASSES = ["n01440764", "n01443537", "n01484850"]
COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]


def write_image_folder(root: Path, train_per_class: int = 4, val_per_class: int = 2, classes=CLASSES) -> None:
    """Solid-colour images, one colour per class; half PNG, half JPEG, odd sizes."""
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        (root / split).mkdir(parents=True, exist_ok=True)
        for label, name in enumerate(classes if count else []):
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                image = Image.new("RGB", (40 + 8 * index, 36), COLOURS[label % 3])
                suffix = "png" if index % 2 else "JPEG"
                image.save(folder / f"{name}_{index}.{suffix}")


def test_loads_folders_with_class_count_from_disk(tmp_path):
    write_image_folder(tmp_path)
    bundle = load_dataset("imagenet", path=tmp_path, calibration_samples=5)
    assert bundle.info.num_classes == 3
    assert bundle.info.class_names == tuple(CLASSES)
    assert (len(bundle.train), len(bundle.val), len(bundle.calibration)) == (12, 6, 5)
    image, label = bundle.train[0]
    assert image.shape == (3, 224, 224) and label == 0
    assert bundle.val[5][0].shape == (3, 224, 224) and bundle.val[5][1] == 2


def test_eval_transform_values_and_determinism(tmp_path):
    write_image_folder(tmp_path)
    bundle = load_dataset("imagenet", path=tmp_path, image_size=64, calibration_samples=12)
    mean = torch.tensor(IMAGENET_INFO.mean).view(3, 1, 1)
    std = torch.tensor(IMAGENET_INFO.std).view(3, 1, 1)
    # PNG is lossless, so a solid colour must stay exactly that colour through resize and crop.
    png_val = [i for i, (path, _) in enumerate(bundle.val.samples) if path.endswith(".png")]
    assert len(png_val) == 3
    for index in png_val:
        image, label = bundle.val[index]
        expected = (torch.tensor(COLOURS[label], dtype=torch.float32).view(3, 1, 1) / 255 - mean) / std
        assert image.shape == (3, 64, 64)
        assert torch.allclose(image, expected.expand(3, 64, 64), atol=1e-4)
    first = torch.stack([bundle.calibration[i][0] for i in range(4)])
    second = torch.stack([bundle.calibration[i][0] for i in range(4)])
    assert torch.equal(first, second)  # calibration has no random augmentation


def test_train_augmentation_is_random(tmp_path):
    write_image_folder(tmp_path)
    gradient = np.tile(np.arange(64, dtype=np.uint8)[None, :, None] * 4, (48, 1, 3))
    Image.fromarray(gradient).save(tmp_path / "train" / CLASSES[0] / "gradient.png")
    bundle = load_dataset("imagenet", path=tmp_path, image_size=32)
    index = next(i for i, (path, _) in enumerate(bundle.train.samples) if path.endswith("gradient.png"))
    torch.manual_seed(0)
    draws = [bundle.train[index][0] for _ in range(4)]
    assert all(draw.shape == (3, 32, 32) for draw in draws)
    assert not all(torch.equal(draws[0], draw) for draw in draws[1:])


def test_batches_through_create_loaders(tmp_path, monkeypatch):
    write_image_folder(tmp_path)
    monkeypatch.setenv("IMAGENET_PATH", str(tmp_path))
    bundle = load_dataset("imagenet", image_size=48)
    train_loader, val_loader = create_loaders(bundle, batch_size=4, seed=0)
    images, labels = next(iter(train_loader))
    assert images.shape == (4, 3, 48, 48) and labels.shape == (4,)
    assert len(train_loader) == 3
    assert [len(batch[1]) for batch in val_loader] == [4, 2]


def test_missing_val_folder_lists_paths_and_layout(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset("imagenet", path=tmp_path)
    message = str(error.value)
    assert str(tmp_path / "val") in message and str(tmp_path / "train") not in message.split("Expected")[0]
    assert "<path>/train/<class>/<image>" in message


def test_no_path_mentions_environment_variable(monkeypatch):
    monkeypatch.delenv("IMAGENET_PATH", raising=False)
    with pytest.raises(DatasetNotFoundError, match="IMAGENET_PATH is not set"):
        load_dataset("imagenet")


def test_flat_val_folder_gets_a_hint(tmp_path):
    write_image_folder(tmp_path, val_per_class=0)
    Image.new("RGB", (8, 8)).save(tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG")
    with pytest.raises(DatasetNotFoundError, match="sorted into class subfolders"):
        load_dataset("imagenet", path=tmp_path)


def test_class_folders_must_agree(tmp_path):
    write_image_folder(tmp_path)
    extra = tmp_path / "val" / "n09999999"
    extra.mkdir()
    Image.new("RGB", (8, 8)).save(extra / "x.png")
    with pytest.raises(DatasetNotFoundError, match=r"only in val: \['n09999999'\]"):
        load_dataset("imagenet", path=tmp_path)
