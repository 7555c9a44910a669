"""Sections naming what is pruned: ``experiment``, ``model``, ``dataset``, ``datasets``,
``safety_limits``."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from ._base import ConfigModel

__all__ = [
    "ExperimentMetadata",
    "ModelConfig",
    "DatasetConfig",
    "SafetyLimits",
    "SafetyLimitsOverride",
    "DatasetOverride",
]

_SAFE_NAME = re.compile(r"[A-Za-z0-9._-]+")


class ExperimentMetadata(ConfigModel):
    """Identity of one experiment; its outputs go to ``<output_dir>/<name>/``."""

    name: str = Field(
        "experiment", description="Run name and output sub-directory: letters, digits, '.', '_', '-'."
    )
    seed: int = Field(42, description="Seed for Python, NumPy and torch in every trial.")
    output_dir: str = Field("runs", description="Directory that holds one folder per experiment.")
    description: str = Field("", description="Free text stored with the results.")

    @field_validator("name")
    @classmethod
    def _safe_directory_name(cls, value: str) -> str:
        if not _SAFE_NAME.fullmatch(value) or value in {".", ".."}:
            raise ValueError("must be a directory name made of letters, digits, '.', '_', '-'")
        return value


class ModelConfig(ConfigModel):
    """The dense model to prune (a short name from the model registry)."""

    name: str = Field("compact_cnn", description="Model registry name, e.g. deit_small, resnet50.")
    pretrained: bool = Field(False, description="Load pretrained weights (needs a download).")
    checkpoint: str | None = Field(None, description="Path to a state_dict to load instead.")
    trust_checkpoint: bool = Field(
        False,
        description="Allow pickled full-model checkpoints (runs code from the file; trusted files only).",
    )
    num_classes: int | None = Field(
        None, ge=1, description="Classifier outputs; null takes the dataset's class count."
    )
    train_steps: int = Field(
        0,
        ge=0,
        description=(
            "Train the dense model this many steps on the dataset before pruning (for models without "
            "pretrained weights or checkpoint, e.g. the quickstart CNN); cached on disk by config and seed."
        ),
    )
    train_lr: float = Field(3e-3, gt=0.0, description="Peak AdamW learning rate of that dense training.")


class DatasetConfig(ConfigModel):
    """Data used for calibration, fine-tuning and evaluation."""

    name: str = Field("digits", description="Dataset registry name: digits, cifar10, imagenet, ...")
    path: str | None = Field(None, description="Dataset root; null for embedded datasets.")
    image_size: int | None = Field(None, ge=1, description="Input resolution; null = dataset default.")
    batch_size: int = Field(128, ge=1, description="Evaluation and calibration batch size.")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes per trial.")
    calibration_samples: int = Field(
        256, ge=1, description="Training images used for importance and sensitivity estimates."
    )
    train_samples: int | None = Field(
        None, ge=1, description="Use at most this many training images; null = all."
    )
    val_samples: int | None = Field(
        None, ge=1, description="Evaluate on at most this many validation images; null = all."
    )
    download: bool = Field(False, description="Download the dataset if missing (where supported).")


class SafetyLimits(ConfigModel):
    """Upper bounds on how much of each structure a strategy may remove (fractions)."""

    max_overall_pruning: float = Field(
        0.8, ge=0.0, le=1.0, description="Largest overall fraction of channels removed."
    )
    max_mlp_pruning: float = Field(
        0.9, ge=0.0, le=1.0, description="Largest fraction of MLP hidden units removed per block."
    )
    max_attention_pruning: float = Field(
        0.9, ge=0.0, le=1.0, description="Largest fraction of attention heads/dims removed per block."
    )
    max_conv_pruning: float = Field(
        0.9, ge=0.0, le=1.0, description="Largest fraction of conv channels removed per layer."
    )
    min_channels: int = Field(4, ge=1, description="Every pruned layer keeps at least this many channels.")
    min_heads: int = Field(1, ge=1, description="Every attention layer keeps at least this many heads.")


class SafetyLimitsOverride(ConfigModel):
    """Per-dataset safety limits; null fields inherit the top-level ``safety_limits``."""

    max_overall_pruning: float | None = Field(None, ge=0.0, le=1.0, description="See safety_limits.")
    max_mlp_pruning: float | None = Field(None, ge=0.0, le=1.0, description="See safety_limits.")
    max_attention_pruning: float | None = Field(None, ge=0.0, le=1.0, description="See safety_limits.")
    max_conv_pruning: float | None = Field(None, ge=0.0, le=1.0, description="See safety_limits.")
    min_channels: int | None = Field(None, ge=1, description="See safety_limits.")
    min_heads: int | None = Field(None, ge=1, description="See safety_limits.")


class DatasetOverride(ConfigModel):
    """Settings for one dataset name, merged over ``dataset`` when that dataset is selected."""

    path: str | None = Field(None, description="Dataset root; null keeps dataset.path.")
    batch_size: int | None = Field(None, ge=1, description="Null keeps dataset.batch_size.")
    image_size: int | None = Field(None, ge=1, description="Null keeps dataset.image_size.")
    safety_limits: SafetyLimitsOverride | None = Field(
        None, description="Limits for this dataset; unset fields keep the top-level values."
    )
