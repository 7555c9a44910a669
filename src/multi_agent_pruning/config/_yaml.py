"""Reading YAML files: strict parsing, ``extends`` chains and deep merging."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..exceptions import ConfigIssue, ConfigurationError
from ._experiment import SECTION_ALIASES

__all__ = ["load_yaml_text", "read_yaml_file", "load_tree", "parent_paths", "deep_merge", "normalize_aliases"]

#: Keys of which a layer may set only one; setting one in a later layer clears the others.
EXCLUSIVE_KEYS: dict[tuple[str, ...], tuple[str, ...]] = {("target",): ("reduction", "budget")}


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys instead of keeping the last one."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, str):
            continue
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
# YAML 1.1 reads 2.61e9 (no dot or sign in the exponent) as a string; YAML 1.2 and people read a number.
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml_text(text: str) -> Any:
    """Parse YAML text with the same rules as config files (raises ``yaml.YAMLError``)."""
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass


def read_yaml_file(path: Path) -> dict[str, Any]:
    """Parse one file into a mapping; errors name the file and the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(f"Config file not found: {path}") from None
    except OSError as err:
        raise ConfigurationError(f"Cannot read config file {path}: {err.strerror}") from None
    try:
        data = load_yaml_text(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigurationError(f"Invalid YAML in {path}{where}: {err.problem or err.context}") from None
    except yaml.YAMLError as err:
        raise ConfigurationError(f"Invalid YAML in {path}: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigurationError(
            f"{path}: the top level must be a mapping of sections, got {type(data).__name__}"
        )
    return data


def load_tree(path: Path, issues: list[ConfigIssue], chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read ``path`` and everything it ``extends``, merged with the child winning."""
    path = path.resolve()
    if path in chain:
        cycle = " -> ".join(str(p) for p in (*chain[chain.index(path):], path))
        raise ConfigurationError(f"Circular 'extends' chain: {cycle}")
    data = read_yaml_file(path)
    parents = data.pop("extends", None)
    normalize_aliases(data, issues)
    merged: dict[str, Any] = {}
    for parent in parent_paths(parents, path.parent, str(path)):
        merged = deep_merge(merged, load_tree(parent, issues, (*chain, path)))
    return deep_merge(merged, data)


def parent_paths(parents: Any, base_dir: Path, owner: str) -> list[Path]:
    """Files named by an ``extends`` value, resolved against ``base_dir``; all must exist."""
    if parents is None:
        return []
    names = [parents] if isinstance(parents, str) else parents
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise ConfigurationError(f"{owner}: 'extends' must be a file name or a list of file names")
    paths = []
    for name in names:
        parent = (base_dir / Path(name).expanduser()).resolve()
        if not parent.is_file():
            raise ConfigurationError(f"{owner}: extends {name!r}, but {parent} does not exist")
        paths.append(parent)
    return paths


def normalize_aliases(data: dict[str, Any], issues: list[ConfigIssue]) -> None:
    """Rename alias sections (``openai`` -> ``llm``) in place; both present is an issue."""
    for alias, name in SECTION_ALIASES.items():
        if alias not in data:
            continue
        value = data.pop(alias)
        if name in data:
            issues.append(ConfigIssue(alias, f"is an alias of {name!r}; give only one of them", None))
        else:
            data[name] = value


def deep_merge(base: Mapping[str, Any], overlay: Mapping[str, Any], path: tuple[str, ...] = ()) -> dict:
    """Mappings merge key by key (``overlay`` wins); lists and scalars are replaced whole."""
    result = dict(base)
    exclusive = EXCLUSIVE_KEYS.get(path, ())
    if any(overlay.get(key) is not None for key in exclusive):
        for key in exclusive:
            if key not in overlay:
                result.pop(key, None)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = deep_merge(result[key], value, (*path, key))
        else:
            result[key] = copy.deepcopy(value)
    return result
