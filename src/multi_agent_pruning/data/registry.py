"""Dataset registry: short names -> loaders, and :func:`load_dataset`, the one way to get data.

A dataset plug-in is a loader function registered with :func:`register_dataset` together with
its static :class:`DatasetInfo`, so that the info can be read without touching any files::

    @register_dataset("my_data", info=DatasetInfo(name="my_data", num_classes=5, ...))
    def load_my_data(info: DatasetInfo, path: Path | None, download: bool) -> DatasetSplits:
        ...
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset, Subset

from multi_agent_pruning.data.sampling import random_indices, stratified_indices
from multi_agent_pruning.exceptions import ConfigIssue, ConfigurationError
from multi_agent_pruning.utils.registry import Registry

__all__ = [
    "DatasetInfo",
    "DatasetSplits",
    "DatasetBundle",
    "register_dataset",
    "list_datasets",
    "get_dataset_info",
    "load_dataset",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetInfo:
    """Static description of a dataset, available without loading it.

    Attributes:
        name: Registry name, e.g. ``"digits"``.
        num_classes: Number of classes the classifier head must have.
        in_chans: Image channels (1 for grayscale, 3 for RGB).
        input_size: Model input as ``(channels, height, width)``.
        mean: Per-channel normalisation mean, on the [0, 1] pixel scale.
        std: Per-channel normalisation standard deviation, on the [0, 1] pixel scale.
        class_names: Human-readable class names in label order, when known.
        description: One line saying what the data is and where it comes from.
    """

    name: str
    num_classes: int
    in_chans: int
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        issues = []
        if self.num_classes < 1:
            issues.append(ConfigIssue("num_classes", "must be >= 1", self.num_classes))
        if len(self.input_size) != 3 or self.input_size[0] != self.in_chans:
            issues.append(ConfigIssue("input_size", f"must be ({self.in_chans}, H, W)", self.input_size))
        for key in ("mean", "std"):
            if len(getattr(self, key)) != self.in_chans:
                issues.append(ConfigIssue(key, f"must have {self.in_chans} values", getattr(self, key)))
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            issues.append(ConfigIssue("class_names", f"must have {self.num_classes} names", self.class_names))
        if issues:
            raise ConfigurationError(f"Invalid DatasetInfo for {self.name!r}", issues)

    def with_image_size(self, image_size: int | None) -> DatasetInfo:
        """This info with a square ``image_size`` input (unchanged when ``None``)."""
        if image_size is None:
            return self
        return dataclasses.replace(self, input_size=(self.in_chans, image_size, image_size))


@dataclass
class DatasetSplits:
    """What a registered loader returns.

    Attributes:
        train: Training samples, with training augmentation if the dataset has any.
        val: Validation samples, evaluation transform.
        train_eval: The same samples as ``train`` in the same order but with the evaluation
            transform; calibration is drawn from it so that sensitivity scores are not
            perturbed by augmentation. ``None`` when ``train`` has no augmentation.
        info: Info measured from the files (e.g. class count of an ImageFolder), overriding
            the registered one; ``None`` keeps the registered info.
    """

    train: Dataset
    val: Dataset
    train_eval: Dataset | None = None
    info: DatasetInfo | None = None


@dataclass
class DatasetBundle:
    """A loaded dataset: its info and the three splits every experiment uses.

    Attributes:
        info: The dataset description (``input_size`` reflects the requested image size).
        train: Training split.
        val: Validation split.
        calibration: Deterministic subset of ``train`` (evaluation transform) for profiling,
            importance estimation and sensitivity analysis.
    """

    info: DatasetInfo
    train: Dataset
    val: Dataset
    calibration: Dataset


Loader = Callable[[DatasetInfo, Path | None, bool], DatasetSplits]

_DATASETS: Registry[tuple[Loader, DatasetInfo]] = Registry("dataset")


def register_dataset(name: str, *, info: DatasetInfo) -> Callable[[Loader], Loader]:
    """Decorator registering ``loader(info, path, download) -> DatasetSplits`` under ``name``.

    Args:
        name: Registry name; duplicates are rejected.
        info: The dataset's static info at its default image size.
    """

    def decorator(loader: Loader) -> Loader:
        _DATASETS.add(name, (loader, info))
        return loader

    return decorator


def list_datasets() -> list[str]:
    """Names of all registered datasets, sorted."""
    return _DATASETS.names()


def get_dataset_info(name: str, image_size: int | None = None) -> DatasetInfo:
    """Static info for ``name`` without loading any data.

    Raises:
        UnknownNameError: ``name`` is not registered (the message suggests close names).
        ConfigurationError: ``image_size`` is not a positive integer.
    """
    _, info = _DATASETS.get(name)
    _check_counts(image_size=image_size)
    return info.with_image_size(image_size)


def load_dataset(
    name: str,
    path: str | Path | None = None,
    image_size: int | None = None,
    download: bool = False,
    calibration_samples: int = 256,
    train_samples: int | None = None,
    val_samples: int | None = None,
    seed: int = 0,
) -> DatasetBundle:
    """Loads a registered dataset into a :class:`DatasetBundle`.

    Args:
        name: Registered dataset name (see :func:`list_datasets`).
        path: Where the files are; ``None`` lets the loader use its environment variable or
            default location.
        image_size: Square input size; ``None`` keeps the dataset's default.
        download: Allow the loader to fetch missing files (only datasets with a public URL).
        calibration_samples: Size of the calibration subset (capped at the train size).
        train_samples: Keep only this many training samples (stratified, seeded); ``None`` keeps all.
        val_samples: Keep only this many validation samples (stratified, seeded); ``None`` keeps all.
        seed: Seed of the train/val subsampling and of the calibration subset.

    Raises:
        UnknownNameError: Unknown dataset name.
        DatasetNotFoundError: The files are missing; the message says where it looked.
        ConfigurationError: An option is out of range.
    """
    loader, info = _DATASETS.get(name)
    _check_counts(
        image_size=image_size,
        calibration_samples=calibration_samples,
        train_samples=train_samples,
        val_samples=val_samples,
    )
    info = info.with_image_size(image_size)
    splits = loader(info, Path(path).expanduser() if path is not None else None, download)
    info = splits.info if splits.info is not None else info
    train, val = splits.train, splits.val
    train_eval = splits.train_eval if splits.train_eval is not None else train
    if train_samples is not None:
        keep = stratified_indices(train, train_samples, seed)
        train, train_eval = Subset(train, keep), Subset(train_eval, keep)
    if val_samples is not None:
        val = Subset(val, stratified_indices(val, val_samples, seed))
    calibration = Subset(train_eval, random_indices(len(train_eval), calibration_samples, seed))
    logger.info(
        "Loaded dataset %s: %d train, %d val, %d calibration samples, input %s",
        name, len(train), len(val), len(calibration), info.input_size,
    )
    return DatasetBundle(info=info, train=train, val=val, calibration=calibration)


def _check_counts(**counts: int | None) -> None:
    """Raises one ConfigurationError listing every option that is set but not a positive integer."""
    issues = [
        ConfigIssue(f"dataset.{key}", "must be a positive integer", value)
        for key, value in counts.items()
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1)
    ]
    if issues:
        raise ConfigurationError("Invalid dataset options", issues)
