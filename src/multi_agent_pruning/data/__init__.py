"""Datasets: a registry of loaders (digits, fashion_mnist, cifar10, imagenet) and seeded DataLoaders.

Example::

    from multi_agent_pruning.data import create_loaders, load_dataset

    bundle = load_dataset("digits", image_size=16)
    train_loader, val_loader = create_loaders(bundle, batch_size=64, seed=0)
"""

from multi_agent_pruning.data.registry import (
    DatasetBundle,
    DatasetInfo,
    DatasetSplits,
    get_dataset_info,
    list_datasets,
    load_dataset,
    register_dataset,
)

# Imported for their registrations.
from multi_agent_pruning.data import cifar10, digits, fashion_mnist, imagenet  # noqa: E402, F401, I001
from multi_agent_pruning.data.loaders import create_calibration_loader, create_loaders, take_calibration_batches

__all__ = [
    "DatasetBundle",
    "DatasetInfo",
    "DatasetSplits",
    "create_calibration_loader",
    "take_calibration_batches",
    "create_loaders",
    "get_dataset_info",
    "list_datasets",
    "load_dataset",
    "register_dataset",
]
