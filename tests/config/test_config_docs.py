"""docs/configuration.md documents every field, and its generated reference is current."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from multi_agent_pruning.config import ExperimentConfig, render_config_reference
from multi_agent_pruning.config._base import unwrap_optional
from multi_agent_pruning.config._docs import BEGIN_MARKER, END_MARKER

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def _generated_block() -> str:
    text = DOC.read_text(encoding="utf-8")
    return text.split(BEGIN_MARKER, 1)[1].split(END_MARKER, 1)[0].strip()


def test_generated_reference_is_current() -> None:
    assert _generated_block() == render_config_reference().strip()


def _sections(model: type[BaseModel], prefix: str = ""):
    for name, field in model.model_fields.items():
        inner = unwrap_optional(field.annotation)
        args = getattr(inner, "__args__", ())
        if args and isinstance(args[-1], type) and issubclass(unwrap_optional(args[-1]), BaseModel):
            yield from _sections(unwrap_optional(args[-1]), f"{prefix}{name}.<name>.")
        elif isinstance(inner, type) and issubclass(inner, BaseModel):
            yield f"{prefix}{name}", inner
            yield from _sections(inner, f"{prefix}{name}.")


def test_every_field_has_a_description_and_a_row() -> None:
    block = _generated_block()
    sections = dict(_sections(ExperimentConfig))
    sections["datasets.<name>"] = ExperimentConfig.model_fields["datasets"].annotation.__args__[1]
    assert len(sections) >= 25
    for path, model in sections.items():
        section = block.split(f"### `{path}`\n", 1)[1].split("\n### ", 1)[0]
        for name, field in model.model_fields.items():
            assert field.description, f"{path}.{name} has no description"
            assert f"| `{name}` |" in section, f"{path}.{name} missing from the docs"
