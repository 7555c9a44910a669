"""Base class shared by every configuration section."""

from __future__ import annotations

import types
from collections.abc import Iterator
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from ._secrets import redact_tree

__all__ = ["ConfigModel", "cross_field_error", "unwrap_optional"]


def unwrap_optional(annotation: Any) -> Any:
    """``X | None`` and ``Annotated[X, ...]`` -> ``X``; other annotations unchanged."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return unwrap_optional(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(members) == 1:
            return unwrap_optional(members[0])
    return annotation


class ConfigModel(BaseModel):
    """A configuration section: frozen after load, unknown keys rejected.

    Numbers given where a string is expected (``name: 2024``) become strings; ``true``/``false``
    given where a number is expected are rejected instead of silently becoming 1/0, and so are
    ``.inf`` and ``.nan`` (null is how a setting says "no limit").
    """

    model_config = ConfigDict(frozen=True, extra="forbid", coerce_numbers_to_str=True, allow_inf_nan=False)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # repr() and str() redact credentials in URLs (llm.base_url, ray.address) as config_to_dict does.
        for name, value in super().__repr_args__():
            yield name, redact_tree(value) if isinstance(value, (str, list, tuple, dict)) else value

    @field_validator("*", mode="before")
    @classmethod
    def _reject_bool_as_number(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and info.field_name is not None:
            expected = unwrap_optional(cls.model_fields[info.field_name].annotation)
            if expected in (int, float):
                kind = "an integer" if expected is int else "a number"
                raise PydanticCustomError("bool_as_number", f"must be {kind}, not true/false")
        return value


def cross_field_error(problems: list[tuple[tuple[str, ...], str, Any]]) -> PydanticCustomError:
    """An error carrying several ``(relative key path, rule, value)`` problems.

    Raised from ``model_validator(mode="after")``; the loader turns each problem into its own
    :class:`~multi_agent_pruning.exceptions.ConfigIssue` with the full key path.
    """
    summary = "; ".join(f"{'.'.join(path) or 'section'}: {rule}" for path, rule, _ in problems)
    return PydanticCustomError(
        "cross_field", "{summary}", {"summary": summary, "problems": tuple(problems)}
    )
