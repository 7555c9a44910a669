"""Where dataset files are looked for: explicit path, then an environment variable, then defaults."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ROOT", "candidate_dirs", "describe", "download_root"]

# Downloads land here when neither a path nor the dataset's environment variable is given.
CACHE_ROOT = Path("~/.cache/multi_agent_pruning/datasets").expanduser()


def candidate_dirs(path: Path | None, env_var: str, defaults: tuple[Path, ...] = ()) -> list[Path]:
    """Directories to search, in order.

    An explicit ``path`` is the only candidate: a user who names a folder wants that folder,
    not a silent fallback. Otherwise ``$env_var`` (when set), then the ``defaults``.
    """
    if path is not None:
        return [path]
    env_value = os.environ.get(env_var)
    candidates = [Path(env_value).expanduser()] if env_value else []
    return candidates + [default for default in defaults if default not in candidates]


def download_root(path: Path | None, env_var: str, name: str) -> Path:
    """Directory a download writes to: ``path``, else ``$env_var``, else the user cache."""
    if path is not None:
        return path
    env_value = os.environ.get(env_var)
    return Path(env_value).expanduser() if env_value else CACHE_ROOT / name


def describe(paths: list[Path]) -> str:
    """Paths as an indented list for error messages."""
    return "\n".join(f"  - {path}" for path in paths) if paths else "  (none)"
