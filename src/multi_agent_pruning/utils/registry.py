"""A small name -> object registry shared by models, datasets, metrics and methods."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from multi_agent_pruning.exceptions import MultiAgentPruningError, UnknownNameError

T = TypeVar("T")

__all__ = ["Registry"]


class Registry(Generic[T]):
    """Maps names to entries; duplicate names are rejected, unknown names get suggestions.

    Args:
        kind: What the entries are, used in error messages ("model", "dataset", ...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        """Registers ``entry`` under ``name``; raises if the name is taken."""
        if name in self._entries:
            raise MultiAgentPruningError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""
        return lambda entry: self.add(name, entry)

    def remove(self, name: str) -> None:
        """Unregisters ``name`` (for tests and plug-in reloads)."""
        self.get(name)
        del self._entries[name]

    def get(self, name: str) -> T:
        """Returns the entry for ``name``; raises :class:`UnknownNameError` with suggestions."""
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self._entries) from None

    def names(self, *, sort: bool = True) -> list[str]:
        """Registered names, sorted (or in registration order)."""
        return sorted(self._entries) if sort else list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
