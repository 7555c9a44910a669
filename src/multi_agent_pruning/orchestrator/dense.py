"""The dense starting point of an experiment: dataset, model (pretrained, checkpoint or trained here)."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from multi_agent_pruning.config import ExperimentConfig
from multi_agent_pruning.data import DatasetBundle, create_loaders, load_dataset
from multi_agent_pruning.models import create_model, get_model_spec
from multi_agent_pruning.utils.atomic import atomic_write

logger = logging.getLogger(__name__)

__all__ = ["load_experiment_data", "prepare_dense_model", "model_kwargs_for"]


def load_experiment_data(cfg: ExperimentConfig) -> DatasetBundle:
    ds = cfg.effective_dataset()
    return load_dataset(ds.name, path=ds.path, image_size=ds.image_size, download=ds.download,
                        calibration_samples=ds.calibration_samples, train_samples=ds.train_samples,
                        val_samples=ds.val_samples, seed=cfg.experiment.seed)


def model_kwargs_for(cfg: ExperimentConfig, bundle: DatasetBundle) -> dict[str, Any]:
    """``create_model`` arguments that fit the model to the dataset (classes, channels, size)."""
    info = bundle.info
    kwargs: dict[str, Any] = {"num_classes": cfg.model.num_classes or info.num_classes}
    spec = get_model_spec(cfg.model.name)
    if spec.timm_name is None or tuple(spec.input_size) != tuple(info.input_size):
        kwargs.update(in_chans=info.input_size[0], input_size=info.input_size[-1])
    return kwargs


def prepare_dense_model(cfg: ExperimentConfig, bundle: DatasetBundle) -> tuple[nn.Module, dict[str, Any]]:
    """The dense model and the kwargs it was built with.

    Pretrained weights or a checkpoint are loaded by the registry; otherwise, with
    ``model.train_steps > 0``, the model is trained here on the dataset and cached under the
    precomputation cache directory by a hash of everything that determines it.
    """
    kwargs = model_kwargs_for(cfg, bundle)
    model = create_model(cfg.model.name, pretrained=cfg.model.pretrained, checkpoint=cfg.model.checkpoint,
                         trust_checkpoint=cfg.model.trust_checkpoint, **kwargs)
    if cfg.model.train_steps and not cfg.model.pretrained and not cfg.model.checkpoint:
        model = _trained(model, cfg, bundle, kwargs)
    return model.eval(), kwargs


def _trained(model: nn.Module, cfg: ExperimentConfig, bundle: DatasetBundle, kwargs: dict[str, Any]) -> nn.Module:
    from safetensors.torch import load_file, save_file

    key = hashlib.sha256(json.dumps({
        "model": cfg.model.name, "kwargs": kwargs, "steps": cfg.model.train_steps, "lr": cfg.model.train_lr,
        "dataset": cfg.effective_dataset().model_dump(mode="json"), "seed": cfg.experiment.seed,
        "torch": torch.__version__,
    }, sort_keys=True, default=str).encode()).hexdigest()[:24]
    path = Path(cfg.precomputation.cache_dir) / "dense" / f"{cfg.model.name}-{key}.safetensors"
    if path.exists():
        model.load_state_dict(load_file(str(path)))
        logger.info("loaded the trained dense %s from %s", cfg.model.name, path)
        return model
    logger.info("training the dense %s for %d steps", cfg.model.name, cfg.model.train_steps)
    torch.manual_seed(cfg.experiment.seed)
    train_loader, _ = create_loaders(bundle, cfg.effective_dataset().batch_size, seed=cfg.experiment.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.model.train_lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.model.train_lr, total_steps=cfg.model.train_steps)
    model.train()
    step = 0
    while step < cfg.model.train_steps:
        for x, y in train_loader:
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            schedule.step()
            step += 1
            if step >= cfg.model.train_steps:
                break
    model.eval()
    atomic_write(path, lambda temp: save_file({k: v.contiguous() for k, v in model.state_dict().items()}, temp))
    return model
