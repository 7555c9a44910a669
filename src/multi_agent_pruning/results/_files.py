"""File layout of the Parquet result store: partition folders, listing, atomic writes."""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote, unquote

import pyarrow as pa
import pyarrow.parquet as pq

from multi_agent_pruning.exceptions import ResultStoreError

__all__ = ["partition_dir", "partition_value", "list_part_files", "write_atomically", "describe_os_error"]

_PART_GLOB = "part-*.parquet"


def partition_dir(root: Path, experiment: str, method: str | None = None) -> Path:
    """``root/experiment=<e>[/method=<m>]``; values are URI-encoded as pyarrow's hive flavour does."""
    path = root / f"experiment={quote(experiment, safe='')}"
    return path if method is None else path / f"method={quote(method, safe='')}"


def partition_value(directory: Path) -> str:
    """The decoded value of a ``key=value`` folder name."""
    return unquote(directory.name.split("=", 1)[1])


def list_part_files(root: Path, experiment: str | None = None, method: str | None = None) -> list[Path]:
    """Committed data files under ``root`` (temp files are hidden), sorted by path.

    Raises:
        ResultStoreError: ``root`` exists but is not a folder.
    """
    if not root.exists():
        return []
    if not root.is_dir():
        raise ResultStoreError(f"Result store root {root} is not a directory")
    if experiment is None:
        experiment_dirs = sorted(p for p in root.glob("experiment=*") if p.is_dir())
    else:
        experiment_dirs = [partition_dir(root, experiment)]
    files: list[Path] = []
    for exp_dir in experiment_dirs:
        if method is None:
            method_dirs = sorted(p for p in exp_dir.glob("method=*") if p.is_dir())
        else:
            method_dirs = [exp_dir / f"method={quote(method, safe='')}"]
        for method_dir in method_dirs:
            files.extend(sorted(p for p in method_dir.glob(_PART_GLOB) if p.is_file()))
    return files


def describe_os_error(exc: BaseException) -> str:
    """A one-line reason for a failed write, calling out a full disk."""
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            reason = f"disk full ({reason})"
        return f"{reason}: {exc.filename}" if exc.filename else reason
    return str(exc)


def _write_synced(path: Path, table: pa.Table) -> None:
    with open(path, "wb") as handle:
        pq.write_table(table, handle)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(directory: Path) -> None:
    # Makes the rename durable; some file systems do not support it, which only weakens durability.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomically(targets: Sequence[tuple[Path, pa.Table]]) -> list[Path]:
    """Writes each table as a new ``part-<uuid>.parquet`` in its folder, all or nothing.

    Every file is written to a hidden temp file in its final folder and fsynced before any is
    renamed into place, so readers never see a partial file. On failure every temp file and
    every file already renamed by this call is removed.

    Returns:
        The committed paths, one per target.

    Raises:
        ResultStoreError: A folder could not be created or a file written, with the reason.
    """
    pending: list[tuple[Path, Path]] = []
    committed: list[Path] = []
    try:
        for directory, table in targets:
            directory.mkdir(parents=True, exist_ok=True)
            final = directory / f"part-{uuid.uuid4().hex}.parquet"
            temp = directory / f".{final.name}.tmp"
            pending.append((temp, final))
            _write_synced(temp, table)
        for temp, final in pending:
            os.replace(temp, final)
            committed.append(final)
        for directory in {final.parent for final in committed}:
            _fsync_dir(directory)
    except (OSError, pa.ArrowException) as exc:
        for path in [temp for temp, _ in pending] + committed:
            _remove_quietly(path)
        rows = sum(table.num_rows for _, table in targets)
        where = os.path.commonpath([str(directory) for directory, _ in targets])
        raise ResultStoreError(
            f"Could not write {rows} trial result(s) under {where}: {describe_os_error(exc)}. "
            "Nothing was written; existing results are untouched.") from exc
    return committed


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass
