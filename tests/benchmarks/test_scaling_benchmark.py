"""The cluster-scaling benchmark's arithmetic (runs nothing): the overhead-free schedule and the
metrics of one run from its trials' start/end times and its workers' join times."""

from __future__ import annotations

import pytest

from support.benchmark_scripts import load_benchmark

scaling = load_benchmark("scaling", "scaling_benchmark")


def test_ideal_makespan_of_fixed_and_growing_clusters():
    assert scaling.ideal_makespan([0.0], 4, 5.0) == 20.0
    assert scaling.ideal_makespan([0.0] * 4, 16, 5.0) == 20.0
    assert scaling.ideal_makespan([0.0, 0.0], 3, 5.0) == 10.0  # the third trial waits for a free worker
    # Workers joining at 0, 5, 10, 15 s can run 6 + 5 + 4 + 3 trials by 30 s, too few by 25 s.
    assert scaling.ideal_makespan([0.0, 5.0, 10.0, 15.0], 16, 5.0) == 30.0


def test_a_run_is_measured_from_its_trials_and_join_times():
    # Two workers, four 5 s trials; worker "b" joins 2 s after the first trial started and its
    # first trial starts 1 s after that.
    runs = [{"node": "a", "start": 100.0, "end": 105.0}, {"node": "a", "start": 105.5, "end": 110.5},
            {"node": "b", "start": 103.0, "end": 108.0}, {"node": "b", "start": 108.2, "end": 113.2}]
    row = scaling.summarise("grow", 2, 5.0, runs, {"a": 99.0, "b": 102.0}, fit_start=98.0, wall=16.0, errors=0)
    assert row["makespan_s"] == 13.2 and row["trials"] == 4 and row["nodes_used"] == 2
    assert row["join_to_trial_s"] == [1.0, 1.0]  # a: 100 - max(99, 98); b: 103 - 102
    assert row["efficiency"] == pytest.approx(round(12.0 / 13.2, 3))  # ideal: a 0-10, b 2-12
    assert row["utilisation"] == pytest.approx(round(20.0 / (13.2 + 11.2), 3))
    assert row["trials_per_min"] == pytest.approx(round(4 / 13.2 * 60, 2))
