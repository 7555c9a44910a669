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
