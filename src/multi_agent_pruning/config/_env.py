"""``${VAR}`` and ``${VAR:-default}`` substitution in string values."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from ..exceptions import ConfigIssue
from ._yaml import load_yaml_text
from ._schema import accepts_none, accepts_string, annotation_at, format_path

__all__ = ["substitute_env"]

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_REFERENCE = re.compile(rf"\$\$\{{|\$\{{({_NAME})(?::-([^}}]*))?\}}")
_WHOLE = re.compile(rf"\$\{{({_NAME})(?::-([^}}]*))?\}}")


def substitute_env(
    data: Any, environ: Mapping[str, str], issues: list[ConfigIssue], path: tuple = ()
) -> tuple[Any, list[str]]:
    """Replace environment references in every string of ``data``.

    ``${VAR:-default}`` uses ``default`` when VAR is unset or empty, like the shell. ``$${`` is a
    literal ``${``. A value that is one whole reference takes the type the schema expects there
    (``"8"`` -> 8 for an integer field, ``""`` -> null for an optional one). An unset variable
    without a default adds a :class:`ConfigIssue` at its key path.

    Returns:
        The substituted copy and the key paths whose substitution failed.
    """
    if isinstance(data, dict):
        failed: list[str] = []
        result = {}
        for key, value in data.items():
            result[key], bad = substitute_env(value, environ, issues, (*path, key))
            failed.extend(bad)
        return result, failed
    if isinstance(data, list):
        items = [substitute_env(v, environ, issues, (*path, i)) for i, v in enumerate(data)]
        return [v for v, _ in items], [p for _, bad in items for p in bad]
    if isinstance(data, str) and "${" in data:
        return _substitute_string(data, environ, issues, path)
    return data, []


def _substitute_string(
    text: str, environ: Mapping[str, str], issues: list[ConfigIssue], path: tuple
) -> tuple[Any, list[str]]:
    missing: list[str] = []

    def replace(match: re.Match) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        value = environ.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                missing.append(name)
                return match.group(0)
            return default
        return value

    substituted = _REFERENCE.sub(replace, text)
    dotted = format_path(path)
    for name in missing:
        rule = f"environment variable {name} is not set (write ${{{name}:-default}} for a fallback)"
        issues.append(ConfigIssue(dotted, rule, text))
    if missing:
        return text, [dotted]
    if _WHOLE.fullmatch(text):
        return _typed(substituted, annotation_at(path)), []
    return substituted, []


def _typed(text: str, annotation: Any) -> Any:
    """Give a whole-value substitution the type a YAML literal in its place would have had."""
    if annotation is not None and accepts_string(annotation):
        return None if text == "" and accepts_none(annotation) else text
    if text == "":
        return None
    try:
        value = load_yaml_text(text)
    except yaml.YAMLError:
        return text
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, list) and all(isinstance(v, (bool, int, float, str)) for v in value):
        return value
    return text
