"""Questions about the schema at a key path: which type is expected, which keys are known."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, SecretStr

from ._base import unwrap_optional
from ._experiment import ExperimentConfig

__all__ = ["annotation_at", "known_keys_at", "accepts_string", "accepts_none", "format_path"]

_UNKNOWN = object()


def format_path(parts: Sequence[str | int]) -> str:
    """``("datasets", "imagenet", "path")`` -> ``datasets.imagenet.path``; list indices as ``[i]``."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def annotation_at(parts: Sequence[str | int]) -> Any:
    """The annotation expected at a key path, or None when the path is not in the schema."""
    current: Any = ExperimentConfig
    for part in parts:
        current = _child(unwrap_optional(current), part)
        if current is _UNKNOWN:
            return None
    return current


def _child(annotation: Any, part: str | int) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(str(part))
        return _UNKNOWN if field is None else field.annotation
    origin = get_origin(annotation)
    if origin is dict:
        return get_args(annotation)[1]
    if origin in (list, tuple) and isinstance(part, int):
        return get_args(annotation)[0]
    return _UNKNOWN


def known_keys_at(parts: Sequence[str | int]) -> list[str]:
    """Field names of the section at ``parts`` (empty when it is not a section)."""
    annotation = unwrap_optional(annotation_at(parts)) if parts else ExperimentConfig
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def accepts_string(annotation: Any) -> bool:
    """True when a string is a valid value as it stands (str, secret, or a choice of strings)."""
    inner = unwrap_optional(annotation)
    if inner in (str, SecretStr):
        return True
    return get_origin(inner) is Literal and all(isinstance(a, str) for a in get_args(inner))


def accepts_none(annotation: Any) -> bool:
    """True when null is a valid value."""
    return type(None) in get_args(annotation)
