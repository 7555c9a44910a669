"""MasterSearcher with the real master and analysis actors: batches are pipelined, not
synchronous (a free trial slot gets the next batch as soon as one trial finished)."""

from __future__ import annotations

import json

import pytest

from multi_agent_pruning.actors import create_actors
from multi_agent_pruning.core.strategy import Strategy
from multi_agent_pruning.results.trial import TrialResult, strategy_columns
from multi_agent_pruning.search.searcher import MasterSearcher
from multi_agent_pruning.testing.tiny import tiny_profile

IDS = {"experiment": "pipe", "run": 0, "method": "multi_agent", "model": "tiny", "dataset": "digits", "seed": 0}


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    return tiny_profile(tmp_path_factory.mktemp("cache"), steps=40, batches=2)


def ok_report(suggestion: dict, top1: float) -> dict:
    strategy = Strategy.from_json(suggestion["strategy"])
    row = TrialResult(**IDS, trial_id=suggestion["trial_id"], iteration=suggestion["iteration"],
                      **strategy_columns(strategy),
                      top1_after=top1, status="ok")
    return {"row_json": json.dumps(row.to_row(), default=str)}


def test_next_batch_comes_while_a_trial_of_the_last_one_still_runs(local_ray, profile, tmp_path):
    master, analysis = create_actors({"max_iterations": 10, "convergence_threshold": 0.0, "batch_size": 2, "seed": 0},
                                     {"safety_enforcement": "strict"}, store_root=None, experiment="pipe",
                                     method="multi_agent")
    rows: list[TrialResult] = []
    searcher = MasterSearcher(master, analysis, profile=profile,
                              target={"kind": "macs", "reduction": 0.5, "budget": None},
                              base=Strategy(target_reduction=0.5), budget=6, batch_size=2, identifiers=IDS,
                              history=[], record=rows.append)
    try:
        first, second = searcher.suggest("t1"), searcher.suggest("t2")
        assert first["iteration"] == second["iteration"] == 0
        assert searcher.suggest("t3") is None  # batch used up, nothing finished: nothing to learn from
        searcher.on_trial_complete("t1", ok_report(first, 0.9))
        # t2 still runs; the free slot gets the next batch at once.
        third = searcher.suggest("t3")
        fourth = searcher.suggest("t4")
        assert third is not None and fourth is not None
        assert third["iteration"] == fourth["iteration"] == 1
        keys = [Strategy.from_json(s["strategy"]).key() for s in (first, second, third, fourth)]
        assert len(set(keys)) == 4  # the running strategy (t2) was not proposed again
        assert searcher.suggest("t5") is None  # this batch is used up too, and nothing new finished
        searcher.on_trial_complete("t2", ok_report(second, 0.5))
        fifth = searcher.suggest("t5")
        assert fifth is not None and fifth["iteration"] == 2
        assert [r.status for r in rows] == ["ok", "ok"] and searcher.issued == 5
    finally:
        import ray

        ray.kill(master)
        ray.kill(analysis)


def _searcher(profile, rows, *, budget=6, reveal_lag=1):
    master, analysis = create_actors({"max_iterations": 10, "convergence_threshold": 0.0, "batch_size": 2, "seed": 0},
                                     {"safety_enforcement": "strict"}, store_root=None, experiment="pipe",
                                     method="multi_agent")
    searcher = MasterSearcher(master, analysis, profile=profile,
                              target={"kind": "macs", "reduction": 0.5, "budget": None},
                              base=Strategy(target_reduction=0.5), budget=budget, batch_size=2, identifiers=IDS,
                              history=[], record=rows.append, reveal_lag=reveal_lag)
    return searcher, (master, analysis)


def _kill(actors):
    import ray

    for actor in actors:
        ray.kill(actor)


SCORES = {0: 0.62, 1: 0.81, 2: 0.55, 3: 0.90, 4: 0.40, 5: 0.70}


def _drive(profile, finish_order):
    """Runs a 6-trial search with two slots; ``finish_order(running)`` picks which running trial
    finishes next. Returns the suggestions in issue order, the history the master saw at each
    batch, and the rows in the order they were stored."""
    rows: list[TrialResult] = []
    searcher, actors = _searcher(profile, rows)
    seen_by_batch, issued, running, waits = [], [], [], 0
    try:
        while len(issued) < 6 or running:
            while len(running) < 2 and len(issued) < 6:
                before = len(searcher.history)
                suggestion = searcher.suggest(f"t{len(issued)}")
                if suggestion is None:
                    waits += 1
                    break
                if len(searcher.history) != before or not seen_by_batch:
                    seen_by_batch.append([h["top1_after"] for h in searcher.history])
                issued.append(suggestion)
                running.append(len(issued) - 1)
            index = finish_order(running)
            running.remove(index)
            searcher.on_trial_complete(f"t{index}", ok_report(issued[index], SCORES[index]))
    finally:
        _kill(actors)
    return issued, seen_by_batch, [r.trial_id for r in rows], waits


def test_in_issue_order_the_search_does_not_depend_on_which_trial_finishes_first(local_ray, profile):
    oldest_first = _drive(profile, lambda running: running[0])
    newest_first = _drive(profile, lambda running: running[-1])
    strategies = [[s["strategy"] for s in run[0]] for run in (oldest_first, newest_first)]
    assert strategies[0] == strategies[1]
    assert [s["iteration"] for s in oldest_first[0]] == [s["iteration"] for s in newest_first[0]] == [0, 0, 1, 1, 2, 2]
    # The master saw the same results, in issue order: all but the most recent trial.
    assert oldest_first[1] == newest_first[1] == [[], [0.62], [0.62, 0.81, 0.55]]
    # Rows are stored the moment trials finish, whatever the order ...
    assert oldest_first[2] == ["t0", "t1", "t2", "t3", "t4", "t5"]
    assert newest_first[2] == ["t1", "t0", "t3", "t2", "t5", "t4"]
    # ... and a slot waited only when the newer trial finished first.
    assert oldest_first[3] == 0 and newest_first[3] == 2


def test_a_later_trials_result_stays_hidden_and_pending_until_the_earlier_one_finishes(local_ray, profile):
    rows: list[TrialResult] = []
    searcher, actors = _searcher(profile, rows)
    try:
        first, second = searcher.suggest("t0"), searcher.suggest("t1")
        searcher.on_trial_complete("t1", ok_report(second, 0.81))  # the newer trial finishes first
        assert [r.trial_id for r in rows] == ["t1"]  # stored at once
        assert searcher.suggest("t2") is None  # the master must see t0 first: the slot waits
        assert searcher.history == []
        searcher.on_trial_complete("t0", ok_report(first, 0.62))
        third = searcher.suggest("t2")
        assert third["iteration"] == 1
        # t0 and t1 both finished; with one trial of lag the batch sees t0 only.
        assert [h["top1_after"] for h in searcher.history] == [0.62]
        assert list(searcher.running) == ["t1", "t2"]  # t1 is pending to the master, not proposed again
        keys = {Strategy.from_json(s["strategy"]).key() for s in (first, second, third)}
        assert len(keys) == 3
    finally:
        _kill(actors)
