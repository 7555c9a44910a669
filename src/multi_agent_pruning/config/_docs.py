"""The field reference of docs/configuration.md, generated from the models themselves.

Regenerate the block in the docs with ``update_reference_block("docs/configuration.md")``.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import annotated_types
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from ._base import unwrap_optional
from ._experiment import ExperimentConfig

__all__ = ["render_config_reference", "update_reference_block", "BEGIN_MARKER", "END_MARKER"]

BEGIN_MARKER = "<!-- BEGIN GENERATED REFERENCE -->"
END_MARKER = "<!-- END GENERATED REFERENCE -->"
_BOUNDS = ((annotated_types.Gt, "gt", ">"), (annotated_types.Ge, "ge", ">="),
           (annotated_types.Lt, "lt", "<"), (annotated_types.Le, "le", "<="))


def render_config_reference() -> str:
    """Markdown tables of every section and field: type, default, constraint, description."""
    blocks: list[str] = []
    for name, field in ExperimentConfig.model_fields.items():
        _render_section(name, field.annotation, blocks)
    return "\n".join(blocks)


def _section_model(annotation: Any) -> type[BaseModel] | None:
    inner = unwrap_optional(annotation)
    if get_origin(inner) is dict:
        inner = unwrap_optional(get_args(inner)[1])
    return inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None


def _render_section(path: str, annotation: Any, blocks: list[str]) -> None:
    model = _section_model(annotation)
    if model is None:
        return
    if get_origin(unwrap_optional(annotation)) is dict:
        path = f"{path}.<name>"
    doc = inspect.cleandoc(model.__doc__ or "").splitlines()[0]
    rows = ["| Key | Type | Default | Constraint | Description |", "|---|---|---|---|---|"]
    children = []
    for name, field in model.model_fields.items():
        rows.append(
            f"| `{name}` | {_type_text(field.annotation)} | {_default_text(field)} "
            f"| {_constraint_text(field)} | {field.description or ''} |"
        )
        children.append((f"{path}.{name}", field.annotation))
    blocks.append(f"### `{path}`\n\n{doc}\n\n" + "\n".join(rows) + "\n")
    for child_path, child_annotation in children:
        _render_section(child_path, child_annotation, blocks)


def _type_text(annotation: Any) -> str:
    inner = unwrap_optional(annotation)
    suffix = " or null" if type(None) in get_args(annotation) else ""
    origin = get_origin(inner)
    if origin is Literal:
        text = "one of " + ", ".join(f"`{value}`" for value in get_args(inner))
    elif origin in (tuple, list):
        text = f"list of {get_args(inner)[0].__name__}"
    elif origin is dict:
        text = "mapping of name to section"
    elif inner is SecretStr:
        text = "secret string"
    elif isinstance(inner, type) and issubclass(inner, BaseModel):
        text = "section"
    else:
        text = getattr(inner, "__name__", str(inner))
    return text + suffix


def _default_text(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, BaseModel):
            return "(section)"
    else:
        value = field.default
    return f"`{json.dumps(list(value) if isinstance(value, tuple) else value)}`"


def _constraint_text(field: FieldInfo) -> str:
    parts = []
    for item in field.metadata:
        for kind, attribute, symbol in _BOUNDS:
            if isinstance(item, kind):
                parts.append(f"{symbol} {getattr(item, attribute)}")
    return ", ".join(parts)


def update_reference_block(doc_path: str | Path) -> bool:
    """Replace the generated block of ``doc_path``; True when the file changed."""
    doc_path = Path(doc_path)
    text = doc_path.read_text(encoding="utf-8")
    head, _, rest = text.partition(BEGIN_MARKER)
    _, _, tail = rest.partition(END_MARKER)
    new = f"{head}{BEGIN_MARKER}\n\n{render_config_reference()}\n{END_MARKER}{tail}"
    doc_path.write_text(new, encoding="utf-8")
    return new != text
