"""Shared utilities: timing, metrics, registries."""

from multi_agent_pruning.utils.timing import TimerStats, TimingProfiler

__all__ = ["TimingProfiler", "TimerStats"]
