"""Loading data files one by one, so that one bad file never stops a read."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from multi_agent_pruning.exceptions import ResultStoreError
from multi_agent_pruning.results.upgrade import upgrade_table

__all__ = ["REPLACES_KEY", "SkippedFile", "LoadedFile", "load_files", "without_replaced"]

#: File metadata key listing the files a compacted file replaces (same folder).
REPLACES_KEY = b"multi_agent_pruning.replaces"
VANISHED = "vanished while reading"
_READ_ERRORS = (OSError, ValueError, pa.ArrowException, ResultStoreError)


@dataclass(frozen=True)
class SkippedFile:
    """A data file that could not be read, and why."""

    path: Path
    reason: str


@dataclass
class LoadedFile:
    """One data file's rows (current schema) and the names of the files it replaces."""

    path: Path
    table: pa.Table
    replaces: set[str]


def load_file(path: Path) -> LoadedFile:
    """Reads and upgrades one file; raises what pyarrow or the upgrade raise."""
    with open(path, "rb") as handle:
        table = pq.ParquetFile(handle).read()
    replaces = json.loads((table.schema.metadata or {}).get(REPLACES_KEY, b"[]"))
    return LoadedFile(path, upgrade_table(table), set(replaces))


def load_files(files: Sequence[Path]) -> tuple[list[LoadedFile], list[SkippedFile]]:
    """Loads every readable file; the others are returned with the reason."""
    loaded: list[LoadedFile] = []
    skipped: list[SkippedFile] = []
    for path in files:
        try:
            loaded.append(load_file(path))
        except FileNotFoundError:
            skipped.append(SkippedFile(path, VANISHED))
        except _READ_ERRORS as exc:
            skipped.append(SkippedFile(path, f"{type(exc).__name__}: {exc}"))
    return loaded, skipped


def without_replaced(loaded: list[LoadedFile]) -> list[LoadedFile]:
    """Drops files that a readable compacted file in the same folder replaces."""
    replaced = {(item.path.parent, name) for item in loaded for name in item.replaces}
    return [item for item in loaded if (item.path.parent, item.path.name) not in replaced]
