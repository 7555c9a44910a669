"""Saving and loading pruned models as structure + weights, without pickle.

A pruned model cannot be rebuilt from its constructor: its layers have fewer channels, heads
or head dimensions than the dense model. ``save_pruned_model`` writes two files:

* ``model.safetensors``: the state dict (tensors only, safe to read from any source);
* ``model.json``: how to build the dense base model (registry/timm name + keyword arguments),
  every module's class and shape attributes (``in_features``, ``num_heads``, ``head_dim``...),
  the weights' SHA-256 and the caller's metadata plus library versions and a timestamp.

``load_pruned_model`` builds the dense model, sets the recorded attributes, re-allocates every
parameter/buffer whose saved shape differs, and loads the weights strictly. Each file is
written to a temporary file and moved into place with ``os.replace``; the weights are written
first and ``model.json`` (which names their checksum) last, so a reader never pairs a
``model.json`` with weights from another save without noticing.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import platform
import tempfile
from collections.abc import Callable, Mapping
from importlib import metadata as _metadata
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from multi_agent_pruning.exceptions import CheckpointError, ConfigIssue, ConfigurationError

logger = logging.getLogger(__name__)

__all__ = ["FORMAT_VERSION", "load_pickled_model", "load_pruned_model", "save_pruned_model"]

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
STRUCTURE_FILE = "model.json"
# Attributes that describe a module's shape, and that forward() of torch/timm modules reads.
SHAPE_ATTRIBUTES = (
    "in_features", "out_features", "in_channels", "out_channels", "groups", "num_features",
    "normalized_shape", "num_heads", "head_dim", "attn_dim", "num_groups", "num_channels",
    "embed_dim", "kdim", "vdim", "kernel_size", "stride", "padding", "dilation", "output_padding",
    "hidden_features", "head_hidden_size", "num_classes", "num_prefix_tokens", "scale", "eps",
)
_SHOWN = 5


def save_pruned_model(
    model: nn.Module,
    directory: str | os.PathLike[str],
    *,
    base_model: str,
    model_kwargs: Mapping[str, Any],
    metadata: Mapping[str, Any],
) -> Path:
    """Writes ``model`` to ``directory`` as ``model.safetensors`` + ``model.json``.

    Args:
        model: The (pruned) model.
        directory: Created if missing; other files in it are left alone.
        base_model: Registry or timm name of the dense model the pruned one came from.
        model_kwargs: Keyword arguments that build that dense model (``num_classes``, ...).
        metadata: JSON-friendly facts to keep with the model (strategy, MACs, accuracy...);
            ``versions`` and ``created`` are added unless given.

    Returns:
        The directory.

    Raises:
        ConfigurationError: ``model_kwargs`` or ``metadata`` hold values JSON cannot represent.
        CheckpointError: The files could not be written.
    """
    directory = Path(directory)
    document = {
        "format": "multi_agent_pruning.pruned_model",
        "format_version": FORMAT_VERSION,
        "base_model": str(base_model),
        "model_kwargs": _jsonable("model_kwargs", model_kwargs),
        "structure": describe_structure(model),
        "metadata": _jsonable("metadata", {"versions": _versions(), "created": _now(), **metadata}),
    }
    state = _plain_state_dict(model)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        _atomic_write(directory / WEIGHTS_FILE, lambda path: _save_safetensors(state, path))
        document["weights"] = {"file": WEIGHTS_FILE, "sha256": _sha256(directory / WEIGHTS_FILE),
                               "tensors": len(state)}
        text = json.dumps(document, indent=1, sort_keys=True)
        _atomic_write(directory / STRUCTURE_FILE, lambda path: Path(path).write_text(text, encoding="utf-8"))
    except OSError as err:
        raise CheckpointError(f"Could not write the pruned model to {directory}: {err}") from err
    logger.info("saved pruned %s (%d tensors) to %s", base_model, len(state), directory)
    return directory


def load_pruned_model(
    directory: str | os.PathLike[str],
    *,
    build_fn: Callable[..., nn.Module] | None = None,
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuilds a model saved by :func:`save_pruned_model`.

    Args:
        directory: The directory holding ``model.json`` and ``model.safetensors``.
        build_fn: ``build_fn(base_model, **model_kwargs)`` returns the dense model; defaults to
            :func:`multi_agent_pruning.models.create_model`.
        device: Where the loaded model goes.

    Returns:
        ``(model, metadata)``: the model in eval mode, and the saved metadata.

    Raises:
        CheckpointError: Missing or corrupt files, weights from another save, a dense model
            whose modules differ from the saved structure, or weights that do not fit.
    """
    directory = Path(directory)
    document = _read_document(directory)
    state = _read_weights(directory, document)
    model = _build(document, build_fn)
    _restore_structure(model, document["structure"])
    _reallocate(model, state)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"Weights in {directory / WEIGHTS_FILE} do not fit the rebuilt model: {err}") from err
    return model.to(device).eval(), dict(document["metadata"])


def load_pickled_model(path: str | os.PathLike[str], *, trust: bool = False) -> nn.Module:
    """Loads a whole ``nn.Module`` saved with ``torch.save(model, path)``.

    Unpickling runs whatever code the file names, so this needs ``trust=True``; prefer
    :func:`load_pruned_model`, which reads tensors only.

    Raises:
        CheckpointError: Missing file, ``trust`` not set, unreadable file, or not a module.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Pickled model file not found: {path}")
    if not trust:
        raise CheckpointError(
            f"Refusing to unpickle {path}: loading a pickled model can execute arbitrary code from "
            "the file. Pass trust=True only for files you created or fully trust, or save models "
            "with save_pruned_model (safetensors + JSON, no code)."
        )
    logger.warning("unpickling %s (trust=True)", path)
    try:
        content = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # corrupt files raise RuntimeError, EOFError, UnpicklingError...
        raise CheckpointError(f"Could not unpickle {path}: {err}") from err
    if not isinstance(content, nn.Module):
        raise CheckpointError(
            f"{path} holds a Python object of type {type(content).__name__}, not an nn.Module; read a state dict with "
            "multi_agent_pruning.models.read_state_dict")
    return content


def describe_structure(model: nn.Module) -> dict[str, dict[str, Any]]:
    """``{module_name: {"class": qualified name, "attributes": {...}}}`` for every module."""
    structure = {}
    for name, module in model.named_modules():
        attributes = {}
        for attr in SHAPE_ATTRIBUTES:
            value = module.__dict__.get(attr)
            if _is_shape_value(value):
                attributes[attr] = list(value) if isinstance(value, tuple) else value
        structure[name] = {"class": _class_name(module), "attributes": attributes}
    return structure


def _is_shape_value(value: Any) -> bool:
    if isinstance(value, (bool, int, float)):
        return True
    return isinstance(value, tuple) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)


def _class_name(module: nn.Module) -> str:
    return f"{type(module).__module__}.{type(module).__qualname__}"


def _plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors, none sharing storage (safetensors refuses shared memory)."""
    state, seen = {}, set()
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().to("cpu").contiguous()
        storage = (tensor.untyped_storage().data_ptr(), tensor.device.type)
        if storage in seen:
            tensor = tensor.clone()
        seen.add(storage)
        state[key] = tensor
    return state


def _save_safetensors(state: dict[str, torch.Tensor], path: str) -> None:
    from safetensors.torch import save_file

    save_file(state, path, metadata={"format": "pt"})


def _atomic_write(target: Path, write: Callable[[str], None]) -> None:
    handle, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(temp)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _jsonable(label: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` after a JSON round trip (objects with ``to_dict()`` are converted)."""
    issues, plain = [], {}
    for key, value in dict(values).items():
        try:
            plain[key] = json.loads(json.dumps(value, default=_json_default))
        except (TypeError, ValueError) as err:
            issues.append(ConfigIssue(f"{label}.{key}", f"must be JSON-serialisable ({err})", value))
    if issues:
        raise ConfigurationError(f"Cannot save the pruned model's {label}:", issues)
    return plain


def _json_default(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "item") and callable(value.item):  # numpy and torch scalars
        return value.item()
    if isinstance(value, (Path, torch.device, torch.dtype)):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for dist in ("torch", "timm", "torch-pruning", "multi-agent-pruning", "safetensors"):
        try:
            versions[dist] = _metadata.version(dist)
        except _metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _read_document(directory: Path) -> dict[str, Any]:
    path = directory / STRUCTURE_FILE
    if not path.is_file():
        raise CheckpointError(f"No pruned model in {directory}: {STRUCTURE_FILE} not found")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"Could not read {path}: {err}") from err
    missing = [k for k in ("format_version", "base_model", "model_kwargs", "structure", "metadata", "weights")
               if not isinstance(document, dict) or k not in document]
    if missing:
        raise CheckpointError(f"{path} is not a pruned-model description: missing keys {missing}")
    version = document["format_version"]
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format_version {version!r}; this version of multi_agent_pruning reads up to "
            f"{FORMAT_VERSION} (upgrade the package to load it)")
    return document


def _read_weights(directory: Path, document: dict[str, Any]) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    path = directory / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"Incomplete pruned model in {directory}: {WEIGHTS_FILE} not found")
    expected = document["weights"].get("sha256")
    actual = _sha256(path)
    if expected != actual:
        raise CheckpointError(
            f"{path} does not match {directory / STRUCTURE_FILE} (SHA-256 {actual[:12]}..., expected "
            f"{str(expected)[:12]}...): the files come from different saves or the weights were modified")
    try:
        return load_file(str(path), device="cpu")
    except Exception as err:  # safetensors raises its own SafetensorError
        raise CheckpointError(f"Could not read {path}: {err}") from err


def _build(document: dict[str, Any], build_fn: Callable[..., nn.Module] | None) -> nn.Module:
    if build_fn is None:
        from multi_agent_pruning.models import create_model as build_fn
    name, kwargs = document["base_model"], document["model_kwargs"]
    try:
        model = build_fn(name, **kwargs)
    except Exception as err:
        raise CheckpointError(f"Could not build the base model {name!r} with {kwargs}: {err}") from err
    if not isinstance(model, nn.Module):
        raise CheckpointError(f"build_fn returned a {type(model).__name__} for {name!r}, not an nn.Module")
    return model.cpu()


def _restore_structure(model: nn.Module, structure: dict[str, dict[str, Any]]) -> None:
    modules = dict(model.named_modules())
    missing = [name for name in structure if name not in modules]
    extra = [name for name in modules if name not in structure]
    if missing or extra:
        raise CheckpointError(
            f"The rebuilt {type(model).__name__} does not have the saved architecture: saved modules "
            f"missing from it {_head(missing)}; its modules not in the save {_head(extra)}")
    for name, entry in structure.items():
        module = modules[name]
        if _class_name(module) != entry["class"]:
            raise CheckpointError(
                f"Module {name!r} is a {_class_name(module)} in the rebuilt model but was saved as a {entry['class']}")
        for attr, value in entry["attributes"].items():
            setattr(module, attr, tuple(value) if isinstance(value, list) else value)


def _reallocate(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Gives every parameter/buffer the saved shape so that a strict load fits; ties are kept."""
    replaced: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # id(old) -> (old kept alive, new)
    for key, saved in state.items():
        prefix, _, local = key.rpartition(".")
        try:
            module = model.get_submodule(prefix)
        except AttributeError:
            continue  # the strict load names it
        for slots in (module._parameters, module._buffers):
            current = slots.get(local)
            if current is None or current.shape == saved.shape:
                continue
            if id(current) not in replaced:
                fresh = torch.empty(saved.shape, dtype=current.dtype)
                if isinstance(current, nn.Parameter):
                    fresh = nn.Parameter(fresh, requires_grad=current.requires_grad)
                replaced[id(current)] = (current, fresh)
            slots[local] = replaced[id(current)][1]


def _head(names: list[str]) -> str:
    if not names:
        return "none"
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return ", ".join(repr(n) for n in names[:_SHOWN]) + more
