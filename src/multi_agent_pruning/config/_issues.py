"""Turning pydantic's validation errors into :class:`ConfigIssue` objects with plain rules."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from ..exceptions import ConfigIssue, suggest_names
from ._removed import removed_key_rule
from ._schema import format_path, known_keys_at

__all__ = ["issues_from_pydantic"]

_RULES = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "literal_error": "must be one of {expected}",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "model_type": "must be a mapping of keys",
    "model_attributes_type": "must be a mapping of keys",
    "dict_type": "must be a mapping",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "missing": "is required",
}


def issues_from_pydantic(
    error: PydanticValidationError, skip: Iterable[str] = (), override_keys: Iterable[str] = ()
) -> Iterator[ConfigIssue]:
    """One issue per pydantic error, except at paths in ``skip`` (already reported)."""
    skip, override_keys = tuple(skip), set(override_keys)
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        if item["type"] == "cross_field":
            for rel_path, rule, value in item["ctx"]["problems"]:
                path = format_path((*loc, *rel_path))
                yield ConfigIssue(path or "<root>", rule, value)
            continue
        path = format_path(loc)
        if any(path == s or path.startswith((f"{s}.", f"{s}[")) for s in skip):
            continue
        rule = (removed_key_rule(path) or _unknown_key_rule(loc)) if item["type"] == "extra_forbidden" else _rule(item)
        if path in override_keys:
            rule += " (from an override)"
        yield ConfigIssue(path or "<root>", rule, item.get("input"))


def _rule(item: dict[str, Any]) -> str:
    template = _RULES.get(item["type"])
    if template is not None:
        try:
            return template.format(**item.get("ctx", {}))
        except (KeyError, IndexError):
            pass
    message = item["msg"]
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _unknown_key_rule(loc: tuple) -> str:
    known = known_keys_at(loc[:-1])
    suggestions = suggest_names(str(loc[-1]), known)
    if suggestions:
        return f"unknown key; did you mean {suggestions[0]!r}?"
    return "unknown key; known keys: " + ", ".join(known)
