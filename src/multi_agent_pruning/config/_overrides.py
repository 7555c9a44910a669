"""Command-line style overrides: ``search.trials=3``, ``target.kind=params``."""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from ..exceptions import ConfigIssue
from ._yaml import load_yaml_text

__all__ = ["Overrides", "overrides_to_tree", "parse_override_value"]

Overrides = Sequence[str] | Mapping[str, Any] | None

_KEY = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")


def parse_override_value(text: str) -> Any:
    """Parse the right-hand side as a YAML scalar or flow list/mapping; otherwise keep the text.

    ``3`` -> 3, ``true`` -> True, ``null`` or nothing -> None, ``[a, b]`` -> ["a", "b"],
    ``2.61e9`` -> 2.61e9, ``a: b`` -> "a: b" (only ``{...}`` makes a mapping).
    """
    if not text.strip():
        return None
    try:
        value = load_yaml_text(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, dict) and not text.lstrip().startswith("{"):
        return text
    if isinstance(value, (datetime.date, datetime.datetime)):
        return text
    return value


def overrides_to_tree(overrides: Overrides, issues: list[ConfigIssue]) -> tuple[dict[str, Any], set[str]]:
    """Turn overrides into one nested mapping (later overrides of the same key win).

    Returns:
        The mapping and the dotted keys it sets (to say "from an override" in messages).
    """
    if overrides is None:
        return {}, set()
    if isinstance(overrides, Mapping):
        pairs = [(str(key), value) for key, value in overrides.items()]
    elif isinstance(overrides, str):
        issues.append(ConfigIssue("<overrides>", "must be a list of key=value strings", overrides))
        return {}, set()
    else:
        pairs = []
        for item in overrides:
            key, sep, text = str(item).partition("=")
            if not sep:
                issues.append(ConfigIssue(str(item), "override must look like key.path=value", item))
                continue
            pairs.append((key.strip(), parse_override_value(text)))
    tree: dict[str, Any] = {}
    keys: set[str] = set()
    for key, value in pairs:
        if not _KEY.fullmatch(key):
            issues.append(ConfigIssue(key or "<empty>", "override key must be dotted names", value))
        elif key == "extends" or key.startswith("extends."):
            issues.append(ConfigIssue(key, "'extends' cannot be overridden; load another file", value))
        else:
            _set_path(tree, key.split("."), value)
            keys.add(key)
    return tree, keys


def _set_path(tree: dict[str, Any], parts: list[str], value: Any) -> None:
    node = tree
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value
