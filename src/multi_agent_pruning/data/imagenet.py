"""ImageNet (or any classification data) in ImageFolder layout, with timm's standard transforms.

Expected layout, one folder per class in both splits::

    <path>/train/<class>/<image>.JPEG
    <path>/val/<class>/<image>.JPEG

The class count comes from the folders, so a small subset (or another dataset in the same
layout) works; the registered info describes the full 1,000-class ILSVRC-2012.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

from torchvision.datasets import ImageFolder

from multi_agent_pruning.data.locations import candidate_dirs, describe
from multi_agent_pruning.data.registry import DatasetInfo, DatasetSplits, register_dataset
from multi_agent_pruning.exceptions import DatasetNotFoundError

__all__ = ["ENV_VAR", "IMAGENET_INFO", "find_imagenet", "imagenet_transforms"]

ENV_VAR = "IMAGENET_PATH"
CROP_PCT = 0.875
INTERPOLATION = "bicubic"

IMAGENET_INFO = DatasetInfo(
    name="imagenet",
    num_classes=1000,
    in_chans=3,
    input_size=(3, 224, 224),
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    description="ImageNet ILSVRC-2012 in ImageFolder layout (path/train, path/val)",
)

_LAYOUT = (
    "Expected layout: <path>/train/<class>/<image> and <path>/val/<class>/<image>. "
    "Set dataset.path or IMAGENET_PATH. ImageNet cannot be downloaded automatically: get "
    "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar from https://image-net.org, extract them, "
    "and sort the validation images into class folders (e.g. with the widely used valprep.sh)."
)


def find_imagenet(path: Path | None) -> Path:
    """The dataset root holding ``train/`` and ``val/`` folders.

    Raises:
        DatasetNotFoundError: No path given, or the folders are missing; lists the paths checked.
    """
    candidates = candidate_dirs(path, ENV_VAR)
    if not candidates:
        raise DatasetNotFoundError(f"No ImageNet path given and {ENV_VAR} is not set. {_LAYOUT}")
    checked = []
    for root in candidates:
        checked.extend([root / "train", root / "val"])
        if (root / "train").is_dir() and (root / "val").is_dir():
            return root
    missing = [folder for folder in checked if not folder.is_dir()]
    raise DatasetNotFoundError(f"ImageNet folders missing:\n{describe(missing)}\n{_LAYOUT}")


def imagenet_transforms(info: DatasetInfo) -> tuple[object, object]:
    """timm's training and evaluation transforms for ``info`` (bicubic, crop_pct 0.875)."""
    from timm.data import create_transform, resolve_data_config  # timm is slow to import

    config = resolve_data_config(
        args={
            "input_size": info.input_size,
            "interpolation": INTERPOLATION,
            "crop_pct": CROP_PCT,
            "mean": info.mean,
            "std": info.std,
        }
    )
    return create_transform(**config, is_training=True), create_transform(**config, is_training=False)


def _image_folder(folder: Path, transform: object) -> ImageFolder:
    try:
        return ImageFolder(str(folder), transform=transform)
    except FileNotFoundError as error:
        flat = any(child.is_file() for child in folder.iterdir())
        hint = " The images sit directly in the folder; they must be sorted into class subfolders." if flat else ""
        raise DatasetNotFoundError(f"{folder} is not a usable ImageFolder: {error}.{hint}\n{_LAYOUT}") from error


@register_dataset("imagenet", info=IMAGENET_INFO)
def load_imagenet(info: DatasetInfo, path: Path | None, download: bool) -> DatasetSplits:
    """Loads ``train`` (timm training augmentation) and ``val`` (resize + centre crop) ImageFolders."""
    del download  # there is no public download; the not-found message explains how to get it
    root = find_imagenet(path)
    train_transform, eval_transform = imagenet_transforms(info)
    train = _image_folder(root / "train", train_transform)
    val = _image_folder(root / "val", eval_transform)
    if train.classes != val.classes:
        only_train = sorted(set(train.classes) - set(val.classes))[:5]
        only_val = sorted(set(val.classes) - set(train.classes))[:5]
        raise DatasetNotFoundError(
            f"Class folders of {root / 'train'} and {root / 'val'} differ "
            f"(only in train: {only_train}, only in val: {only_val}). {_LAYOUT}"
        )
    # A shallow copy shares the (possibly million-entry) sample list instead of rescanning the disk.
    train_eval = copy.copy(train)
    train_eval.transform = eval_transform
    info = dataclasses.replace(info, num_classes=len(train.classes), class_names=tuple(train.classes))
    return DatasetSplits(train=train, val=val, train_eval=train_eval, info=info)
