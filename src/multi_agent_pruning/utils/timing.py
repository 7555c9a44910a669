"""Wall-clock timing of named, possibly nested, operations."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO
from dataclasses import dataclass

from multi_agent_pruning.exceptions import MultiAgentPruningError

logger = logging.getLogger(__name__)

__all__ = ["TimingProfiler", "TimerStats"]


@dataclass(frozen=True)
class TimerStats:
    """Totals for one timer name.

    Attributes:
        name: Full timer name; nested timers are joined with ``/`` (``trial/prune``).
        total_seconds: Sum of all completed runs.
        count: Number of completed runs.
        share: ``total_seconds`` over the summed time of all top-level timers (0 when none ran).
    """

    name: str
    total_seconds: float
    count: int
    share: float

    @property
    def mean_seconds(self) -> float:
        return self.total_seconds / self.count if self.count else 0.0


class TimingProfiler:
    """Times named code blocks; nested blocks get ``parent/child`` names.

    Example:
        >>> profiler = TimingProfiler()
        >>> with profiler.timer("load"):
        ...     pass
        >>> profiler.summary()[0].name
        'load'
    """

    def __init__(self) -> None:
        self._totals: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self._local = threading.local()
        self._lock = threading.Lock()

    def _stack(self) -> list[tuple[str, str, float]]:
        if not hasattr(self._local, "stack"):
            self._local.stack = []
        return self._local.stack

    def start_timer(self, name: str) -> None:
        """Starts timer ``name``, nested under the innermost running timer of this thread."""
        stack = self._stack()
        full = f"{stack[-1][1]}/{name}" if stack else name
        stack.append((name, full, time.perf_counter()))

    def end_timer(self, name: str) -> float:
        """Stops the innermost running timer, which must be ``name``; returns its seconds."""
        stack = self._stack()
        if not stack or stack[-1][0] != name:
            running = stack[-1][0] if stack else None
            raise MultiAgentPruningError(
                f"end_timer({name!r}) does not match the innermost running timer ({running!r})"
            )
        _, full, start = stack.pop()
        elapsed = time.perf_counter() - start
        with self._lock:
            self._totals[full] = self._totals.get(full, 0.0) + elapsed
            self._counts[full] = self._counts.get(full, 0) + 1
        return elapsed

    @contextmanager
    def timer(self, name: str) -> Iterator[None]:
        """Context manager form of ``start_timer``/``end_timer``."""
        self.start_timer(name)
        try:
            yield
        finally:
            self.end_timer(name)

    def total(self, name: str) -> float:
        """Total seconds recorded under the full name ``name`` (0.0 if never run)."""
        return self._totals.get(name, 0.0)

    def summary(self) -> list[TimerStats]:
        """All timers, largest total first; shares are relative to the top-level total."""
        with self._lock:
            totals, counts = dict(self._totals), dict(self._counts)
        whole = sum(v for k, v in totals.items() if "/" not in k)
        return sorted(
            (
                TimerStats(k, v, counts[k], v / whole if whole > 0 else 0.0)
                for k, v in totals.items()
            ),
            key=lambda s: (-s.total_seconds, s.name),
        )

    def as_dict(self) -> dict[str, dict[str, float]]:
        """JSON-friendly ``{name: {total_seconds, count, share}}``."""
        return {
            s.name: {"total_seconds": s.total_seconds, "count": s.count, "share": s.share}
            for s in self.summary()
        }

    def format_summary(self) -> str:
        """The timers as a text table, bottlenecks first."""
        lines = [f"{'timer':<40} {'total s':>10} {'count':>6} {'share':>7}"]
        lines += [
            f"{s.name:<40} {s.total_seconds:>10.3f} {s.count:>6d} {s.share:>7.1%}"
            for s in self.summary()
        ]
        return "\n".join(lines)

    def get_summary(self, file: TextIO | None = None) -> list[TimerStats]:
        """Prints the timing table (bottlenecks first) to ``file`` (stdout) and returns the data."""
        print(self.format_summary(), file=file if file is not None else sys.stdout)
        return self.summary()

    def reset(self) -> None:
        """Forgets all recorded timings."""
        with self._lock:
            self._totals.clear()
            self._counts.clear()
