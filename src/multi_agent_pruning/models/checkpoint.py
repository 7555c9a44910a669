"""Reading, checking and writing model checkpoints (.pth/.pt state dicts and .safetensors).

Files are read with ``torch.load(weights_only=True)`` unless the caller trusts them, because
unpickling an untrusted file can run arbitrary code.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from multi_agent_pruning.exceptions import CheckpointError
from multi_agent_pruning.utils.atomic import atomic_write

__all__ = ["classifier_names", "load_checkpoint", "read_state_dict", "save_checkpoint"]

logger = logging.getLogger(__name__)

_WRAPPER_KEYS = ("model", "state_dict", "model_state_dict")
_SHOWN = 5


def read_state_dict(path: str | os.PathLike[str], *, trust_checkpoint: bool = False) -> dict[str, torch.Tensor]:
    """Reads a checkpoint file into a flat ``{name: tensor}`` state dict on the CPU.

    Accepts a bare state dict, one wrapped under ``"model"``/``"state_dict"``/
    ``"model_state_dict"``, a ``.safetensors`` file, and (only with ``trust_checkpoint``) a
    pickled ``nn.Module``. A ``module.`` prefix left by DataParallel/DDP is removed.

    Raises:
        CheckpointError: Missing or unreadable file, a file that needs pickle without
            ``trust_checkpoint=True``, or contents that are not a state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint file not found: {path}")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    content = _torch_load(path, trust_checkpoint)
    return _as_state_dict(content, path)


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as error:  # safetensors raises its own SafetensorError and OSError
        raise CheckpointError(f"Could not read safetensors checkpoint {path}: {error}") from error


def _torch_load(path: Path, trust_checkpoint: bool) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "Weights only load failed" not in str(error):
            raise CheckpointError(f"Could not read checkpoint {path}: {error}") from error
        if not trust_checkpoint:
            raise CheckpointError(
                f"Checkpoint {path} contains pickled Python objects (not only tensors) and cannot "
                "be loaded safely; pass trust_checkpoint=True only if you trust the file's source"
            ) from error
    except Exception as error:  # torch raises RuntimeError/EOFError/OSError on corrupt files
        raise CheckpointError(f"Could not read checkpoint {path}: {error}") from error
    logger.warning("Loading %s with pickle (trust_checkpoint=True)", path)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise CheckpointError(f"Could not unpickle checkpoint {path}: {error}") from error


def _as_state_dict(content: object, path: Path) -> dict[str, torch.Tensor]:
    while isinstance(content, Mapping):
        wrapper = next((key for key in _WRAPPER_KEYS if key in content), None)
        if wrapper is None:
            break
        content = content[wrapper]
    if isinstance(content, nn.Module):
        content = content.state_dict()
    if not isinstance(content, Mapping) or not content:
        raise CheckpointError(f"Checkpoint {path} holds {type(content).__name__}, not a model state dict")
    bad = [str(key) for key, value in content.items() if not isinstance(value, torch.Tensor)]
    if bad:
        raise CheckpointError(f"Checkpoint {path} has non-tensor entries: {', '.join(bad[:_SHOWN])}")
    return {_strip_prefix(str(key)): value for key, value in content.items()}


def _strip_prefix(key: str) -> str:
    return key[len("module.") :] if key.startswith("module.") else key


def classifier_names(model: nn.Module) -> list[str]:
    """Module names of the classification head(s), from timm's config or ``get_classifier``."""
    config = getattr(model, "pretrained_cfg", None) or {}
    names = config.get("classifier") if isinstance(config, Mapping) else None
    if names:
        return [names] if isinstance(names, str) else list(names)
    if hasattr(model, "get_classifier"):
        head = model.get_classifier()
        return [name for name, module in model.named_modules() if module is head and name]
    return []


def _in_head(key: str, heads: list[str]) -> bool:
    return any(key == head or key.startswith(head + ".") for head in heads)


def _list(keys: list[str]) -> str:
    more = f" (+{len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more


def load_checkpoint(
    model: nn.Module, path: str | os.PathLike[str], *, trust_checkpoint: bool = False
) -> nn.Module:
    """Loads a checkpoint into ``model`` in place and returns it.

    A classifier whose size differs from the model's (another ``num_classes``) is skipped,
    as timm does, and the log says so; every other key must match in name and shape.

    Raises:
        CheckpointError: The file cannot be read (see :func:`read_state_dict`) or belongs to
            another architecture; the message names the first missing, unexpected and
            mis-shaped keys.
    """
    state = read_state_dict(path, trust_checkpoint=trust_checkpoint)
    expected = model.state_dict()
    heads = classifier_names(model)
    mismatched = [k for k in state if k in expected and state[k].shape != expected[k].shape]
    skipped = [k for k in mismatched if _in_head(k, heads)]
    wrong_shape = [f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in mismatched if k not in skipped]
    missing = [k for k in expected if k not in state and k not in skipped]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected or wrong_shape:
        problems = [
            f"missing keys: {_list(missing)}" if missing else "",
            f"unexpected keys: {_list(unexpected)}" if unexpected else "",
            f"shape mismatches (checkpoint vs model): {_list(wrong_shape)}" if wrong_shape else "",
        ]
        raise CheckpointError(
            f"Checkpoint {path} does not match the model {type(model).__name__} "
            f"(another architecture?); " + "; ".join(p for p in problems if p)
        )
    for key in skipped:
        del state[key]
    model.load_state_dict(state, strict=not skipped)
    if skipped:
        logger.warning(
            "Checkpoint %s has a classifier of another size; loaded all weights but %s, "
            "which keep their random initialisation",
            path,
            ", ".join(skipped),
        )
    return model


def save_checkpoint(model: nn.Module | Mapping[str, torch.Tensor], path: str | os.PathLike[str]) -> Path:
    """Writes a state dict atomically (:func:`~multi_agent_pruning.utils.atomic.atomic_write`);
    ``.safetensors`` by suffix."""
    path = Path(path)
    state = model.state_dict() if isinstance(model, nn.Module) else dict(model)

    def write(temp: str) -> None:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            # safetensors rejects shared or strided storage, so each tensor gets its own copy.
            save_file({k: v.detach().contiguous().clone() for k, v in state.items()}, temp)
        else:
            torch.save(state, temp)

    return atomic_write(path, write)
