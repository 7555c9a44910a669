"""Saving and loading pruned models as structure + weights, without pickle.

A pruned model cannot be rebuilt from its constructor: its layers have fewer channels, heads
or head dimensions than the dense model. ``save_pruned_model`` writes two files:

* ``model.safetensors``: the state dict (tensors only, safe to read from any source);
* ``model.json``: how to build the dense base model (registry/timm name + plain keyword
  arguments), every module's class and shape attributes (``in_features``, ``num_heads``,
  ``head_dim``...), the weights' SHA-256, the caller's metadata plus library versions and a
  timestamp, and ``document_sha256``, the SHA-256 of the document itself.

``load_pruned_model`` treats both files as untrusted data (see :mod:`.saved_model_schema`):
it checks the two hashes, validates ``model.json`` against a strict schema, builds the dense
model, checks every saved attribute against the rebuilt module and the weights, then sets the
attributes, re-allocates every parameter/buffer whose saved shape differs and loads the weights
strictly. Nothing on this path can unpickle. Folders of ``format_version`` 1 (no document hash)
still load, under the same schema and checks, with a warning.

Each file is written to a temporary file and moved into place with ``os.replace``; the
weights are written first and ``model.json`` (which names their checksum) last, so a reader
never pairs a ``model.json`` with weights from another save without noticing.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import platform
from collections.abc import Callable, Mapping
from importlib import metadata as _metadata
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from pydantic import ValidationError as PydanticValidationError

from multi_agent_pruning.core.saved_model_schema import (
    SHAPE_ATTRIBUTES,
    SavedModelDocument,
    check_against_dense,
    check_against_weights,
    class_name,
    describe_issues,
    document_sha256,
    recipe_issues,
    shape_attributes,
)
from multi_agent_pruning.exceptions import CheckpointError, ConfigIssue, ConfigurationError
from multi_agent_pruning.utils.atomic import atomic_write

logger = logging.getLogger(__name__)

__all__ = [
    "FORMAT_VERSION", "SHAPE_ATTRIBUTES", "describe_structure", "load_pickled_model", "load_pruned_model",
    "save_pruned_model",
]

# 2: model.json carries document_sha256 and is read under a strict schema (1 still loads).
FORMAT_VERSION = 2
WEIGHTS_FILE = "model.safetensors"
STRUCTURE_FILE = "model.json"
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024  # thousands of modules take a few MB
_SHOWN_ISSUES = 20


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
        ConfigurationError: ``base_model`` or ``model_kwargs`` the loader would refuse (see
            :class:`.saved_model_schema.ModelKwargs`), or ``metadata`` JSON cannot represent.
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
    issues = recipe_issues({key: document[key] for key in ("base_model", "model_kwargs", "structure")})
    if issues:  # a folder the loader refuses is worse than no folder
        details = "\n".join(f"  - {issue}" for issue in issues)
        raise ConfigurationError(f"Cannot save the pruned model: load_pruned_model would refuse it:\n{details}")
    state = _plain_state_dict(model)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write(directory / WEIGHTS_FILE, lambda path: _save_safetensors(state, path))
        document["weights"] = {"file": WEIGHTS_FILE, "sha256": _sha256(directory / WEIGHTS_FILE),
                               "tensors": len(state)}
        document = json.loads(json.dumps(document))  # hash exactly what a reader will parse
        document["document_sha256"] = document_sha256(document)
        text = json.dumps(document, indent=1, sort_keys=True)
        atomic_write(directory / STRUCTURE_FILE, text)
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

    Both files are untrusted input (see :mod:`.saved_model_schema`): ``model.json`` can name
    only plain constructor arguments and shape attributes that a pruned model can have, all
    checked against the rebuilt dense model and the weights; nothing here unpickles.

    Raises:
        CheckpointError: Missing, oversized or corrupt files; either file edited since the save
            (hash mismatch) or the two from different saves; a document outside the schema
            (keys, ``model_kwargs``, attributes); a dense model whose modules differ from the
            saved structure; attributes that change geometry or exceed the dense model; or
            weights that disagree with the recorded shapes.
    """
    directory = Path(directory)
    document = _read_document(directory)
    state = _read_weights(directory, document)
    shapes = {key: tuple(tensor.shape) for key, tensor in state.items()}
    model = _build(document, build_fn)
    issues = check_against_dense(model, document, shapes)
    if issues:
        raise _refusal(directory, issues)
    _restore_structure(model, document)
    issues = check_against_weights(model, shapes)
    if issues:
        raise _refusal(directory, issues, "does not agree with its weights")
    _reallocate(model, state)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"Weights in {directory / WEIGHTS_FILE} do not fit the rebuilt model: {err}") from err
    return model.to(device).eval(), dict(document.metadata)


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
    return {name: {"class": class_name(module), "attributes": shape_attributes(module)}
            for name, module in model.named_modules()}


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


def _read_document(directory: Path) -> SavedModelDocument:
    path = directory / STRUCTURE_FILE
    if not path.is_file():
        raise CheckpointError(f"No pruned model in {directory}: {STRUCTURE_FILE} not found")
    try:
        with open(path, "rb") as stream:
            data = stream.read(MAX_DOCUMENT_BYTES + 1)
        if len(data) > MAX_DOCUMENT_BYTES:
            raise CheckpointError(f"{path} is {path.stat().st_size} bytes; a pruned-model description is at most "
                                  f"{MAX_DOCUMENT_BYTES}")
        raw = json.loads(data.decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise CheckpointError(f"Could not read {path}: {err}") from err
    raw_dict = raw if isinstance(raw, dict) else {}
    version = raw_dict.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format_version {version!r}; this version of multi_agent_pruning reads up to "
            f"{FORMAT_VERSION} (upgrade the package to load it)")
    recorded, actual = raw_dict.get("document_sha256"), document_sha256(raw_dict)
    if recorded is not None and recorded != actual:
        raise CheckpointError(
            f"{path} was modified after it was saved (its SHA-256 {actual[:12]}... does not match the recorded "
            f"document_sha256 {str(recorded)[:12]}...); re-save the model instead of editing the file")
    try:
        document = SavedModelDocument.model_validate(raw)
    except PydanticValidationError as err:
        raise _refusal(directory, describe_issues(err), "is not a valid pruned-model description") from None
    if document.format_version < 2:
        logger.warning("%s has format_version 1: no integrity record for model.json; loading it under the "
                       "strict schema (re-save it to add one)", path)
    return document


def _read_weights(directory: Path, document: SavedModelDocument) -> dict[str, torch.Tensor]:
    """The tensors, read from the very bytes whose SHA-256 is checked (no second read)."""
    from safetensors.torch import load

    path = directory / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"Incomplete pruned model in {directory}: {WEIGHTS_FILE} not found")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"Could not read {path}: {err}") from err
    actual = hashlib.sha256(data).hexdigest()
    expected = document.weights.sha256
    if expected != actual:
        raise CheckpointError(
            f"{path} does not match {directory / STRUCTURE_FILE} (SHA-256 {actual[:12]}..., expected "
            f"{expected[:12]}...): the files come from different saves or the weights were modified")
    try:
        state = load(data)
    except Exception as err:  # safetensors raises its own SafetensorError
        raise CheckpointError(f"Could not read {path}: {err}") from err
    if len(state) != document.weights.tensors:
        raise CheckpointError(f"{path} holds {len(state)} tensors; {STRUCTURE_FILE} records {document.weights.tensors}")
    return state


def _build(document: SavedModelDocument, build_fn: Callable[..., nn.Module] | None) -> nn.Module:
    if build_fn is None:
        from multi_agent_pruning.models import create_model as build_fn
    name, kwargs = document.base_model, document.model_kwargs.as_kwargs()
    try:
        model = build_fn(name, **kwargs)
    except Exception as err:
        raise CheckpointError(f"Could not build the base model {name!r} with {kwargs}: {err}") from err
    if not isinstance(model, nn.Module):
        raise CheckpointError(f"build_fn returned a {type(model).__name__} for {name!r}, not an nn.Module")
    return model.cpu()


def _restore_structure(model: nn.Module, document: SavedModelDocument) -> None:
    """Sets the saved attributes; :func:`check_against_dense` has allowed every one of them."""
    modules = dict(model.named_modules())
    for name, entry in document.structure.items():
        for attribute, value in entry.attributes.model_dump(exclude_none=True).items():
            setattr(modules[name], attribute, tuple(value) if isinstance(value, list) else value)


def _refusal(directory: Path, issues: list[str], what: str = "does not fit the rebuilt dense model") -> CheckpointError:
    more = f"\n  ... and {len(issues) - _SHOWN_ISSUES} more" if len(issues) > _SHOWN_ISSUES else ""
    details = "\n".join(f"  - {issue}" for issue in issues[:_SHOWN_ISSUES])
    return CheckpointError(f"{directory / STRUCTURE_FILE} {what}:\n{details}{more}")


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
