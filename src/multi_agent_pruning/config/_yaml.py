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
from ._text import read_config_text

__all__ = ["load_yaml_text", "read_yaml_file", "load_tree", "parent_paths", "deep_merge", "normalize_aliases"]

#: Keys of which a layer may set only one; setting one in a later layer clears the others.
EXCLUSIVE_KEYS: dict[tuple[str, ...], tuple[str, ...]] = {("target",): ("reduction", "budget", "sweep")}


#: Most values that aliases may add to one document: a config repeats a block a few times at most,
#: while nine levels of nine aliases (a 324-byte "billion laughs") expand to 387 million values.
MAX_ALIAS_VALUES = 10_000
#: Deepest nesting of sequences and mappings; configs nest 4 levels (deeper recursion would crash).
MAX_DEPTH = 100
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys, alias bombs, recursive aliases and deep nesting.

    Aliases are checked while the document is composed, before anything is built from it: what
    they would expand to is counted on the node graph (each node's size once), never expanded.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._alias_values = 0
        self._depth = 0
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            self._count_alias(self.peek_event())
            return super().compose_node(parent, index)
        if self._depth >= MAX_DEPTH and self.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent):
            raise yaml.composer.ComposerError(
                None, None, f"values nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def _count_alias(self, event: yaml.AliasEvent) -> None:
        node = self.anchors.get(event.anchor)
        if node is None:
            return  # the composer reports the undefined alias
        if node.end_mark is None:  # a collection still being composed: the alias is inside it
            raise yaml.composer.ComposerError(
                None, None, f"alias *{event.anchor} refers to a value that contains it", event.start_mark)
        self._alias_values += self._expanded_size(node)
        if self._alias_values > MAX_ALIAS_VALUES:
            raise yaml.composer.ComposerError(
                None, None, f"aliases expand to more than {MAX_ALIAS_VALUES} values (a YAML alias bomb?); "
                "write the repeated values out", event.start_mark)

    def _expanded_size(self, node: yaml.Node) -> int:
        size = self._sizes.get(id(node))
        if size is None:
            if isinstance(node, yaml.SequenceNode):
                children = node.value
            elif isinstance(node, yaml.MappingNode):
                children = [child for pair in node.value for child in pair]
            else:
                children = []
            size = self._sizes[id(node)] = 1 + sum(self._expanded_size(child) for child in children)
        return size


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:  # ``<<: *anchor``; construct_mapping merges it
            continue
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
    text = read_config_text(path)
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
        if parent.is_dir():
            raise ConfigurationError(f"{owner}: extends {name!r}, but {parent} is a directory")
        if not parent.exists():
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
