"""TimingProfiler: nested names, totals, counts, shares, summary order, misuse errors."""

from __future__ import annotations

import io
import time

import pytest

from multi_agent_pruning.exceptions import MultiAgentPruningError
from multi_agent_pruning.utils import TimingProfiler


def test_nested_timers_totals_counts_and_shares():
    profiler = TimingProfiler()
    for _ in range(2):
        with profiler.timer("trial"):
            with profiler.timer("prune"):
                time.sleep(0.02)
            with profiler.timer("finetune"):
                time.sleep(0.05)
    profiler.start_timer("report")
    elapsed = profiler.end_timer("report")
    stats = {s.name: s for s in profiler.summary()}
    assert set(stats) == {"trial", "trial/prune", "trial/finetune", "report"}
    assert stats["trial"].count == 2 and stats["trial/prune"].count == 2
    assert stats["trial/finetune"].total_seconds >= 0.1
    assert stats["trial"].total_seconds >= stats["trial/prune"].total_seconds + stats["trial/finetune"].total_seconds
    assert stats["report"].total_seconds == pytest.approx(elapsed)
    # Shares are relative to the top-level timers (trial + report).
    whole = stats["trial"].total_seconds + stats["report"].total_seconds
    assert stats["trial/finetune"].share == pytest.approx(stats["trial/finetune"].total_seconds / whole)
    assert sum(s.share for s in stats.values() if "/" not in s.name) == pytest.approx(1.0)
    assert stats["trial/prune"].mean_seconds == pytest.approx(stats["trial/prune"].total_seconds / 2)


def test_summary_lists_bottlenecks_first_and_prints_a_table():
    profiler = TimingProfiler()
    with profiler.timer("slow"):
        time.sleep(0.03)
    with profiler.timer("fast"):
        pass
    assert [s.name for s in profiler.summary()] == ["slow", "fast"]
    out = io.StringIO()
    returned = profiler.get_summary(file=out)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["timer", "total", "s", "count", "share"]
    assert lines[1].startswith("slow") and lines[2].startswith("fast")
    assert [s.name for s in returned] == ["slow", "fast"]
    assert profiler.as_dict()["slow"]["count"] == 1


def test_mismatched_end_and_reset():
    profiler = TimingProfiler()
    profiler.start_timer("a")
    with pytest.raises(MultiAgentPruningError, match="end_timer\\('b'\\)"):
        profiler.end_timer("b")
    profiler.end_timer("a")
    assert profiler.total("a") > 0
    profiler.reset()
    assert profiler.summary() == [] and profiler.total("a") == 0.0


def test_timer_records_even_when_the_block_raises():
    profiler = TimingProfiler()
    with pytest.raises(ValueError):
        with profiler.timer("boom"):
            raise ValueError("x")
    assert profiler.summary()[0].count == 1
