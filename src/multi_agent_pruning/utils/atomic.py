"""One way to write a file atomically: a hidden temp file beside the target, then ``os.replace``.

A reader sees the old file or the new one, never a part of either, and on any error (a full disk,
an interrupt, a serialiser that raises) the temp file is removed and the target is untouched.

Every single-file write of the package goes through :func:`atomic_write` (JSON records, caches,
checkpoints, saved models, reports). The one other writer is the result store's commit
(``results/_files.py``): several Parquet files that land all or none, each fsynced before any is
renamed, which one-file writes cannot express.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "atomic_write_json", "atomic_replace_dir"]


def atomic_write(path: str | os.PathLike[str], content: str | bytes | Callable[[str], None], *,
                 encoding: str = "utf-8") -> Path:
    """Writes ``content`` to ``path`` atomically.

    Args:
        path: The file to write; its folder is created.
        content: Text, bytes, or ``write(temp_path)`` for writers that want a file name
            (``safetensors.torch.save_file``, ``pyarrow.parquet.write_table``).
        encoding: Encoding of text content.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OSError: The folder or file could not be written (``IsADirectoryError`` when ``path``
            is a folder); nothing is left behind.
    """
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(21, "is a directory, not a file", str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        if callable(content):
            os.close(fd)
            content(temp)
        else:
            data = content.encode(encoding) if isinstance(content, str) else content
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        _remove(temp)
        raise
    return target


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """:func:`atomic_write` of ``data`` as indented JSON (non-JSON values as ``str``)."""
    return atomic_write(path, json.dumps(data, indent=2, default=str))


def atomic_replace_dir(source: str | os.PathLike[str], destination: str | os.PathLike[str]) -> Path:
    """Replaces the folder ``destination`` by a copy of ``source``: copied beside it first, so an
    error leaves the old folder as it was (the swap itself is two renames)."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".tmp"))
    old = temp.with_suffix(".old")
    try:
        shutil.copytree(source, temp, dirs_exist_ok=True)
        if destination.exists():
            os.replace(destination, old)
        os.replace(temp, destination)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        if old.exists() and not destination.exists():
            os.replace(old, destination)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return destination


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
