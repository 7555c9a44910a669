"""One failed row for a trial whose worker died, built in one place (search.rows.dead_worker_row)
for the master's searcher and for the Optuna searches' RowRecorder alike."""

from __future__ import annotations

from types import SimpleNamespace

from multi_agent_pruning.core.strategy import Strategy
from multi_agent_pruning.results import ResultStore
from multi_agent_pruning.search.rows import RowRecorder, RowSink, dead_worker_row
from multi_agent_pruning.search.searcher import MasterSearcher

IDS = {"experiment": "dead", "run": 0, "method": "optuna_tpe", "model": "tiny", "dataset": "digits", "seed": 0}
EXPECTED = "the trial's worker failed and its retries were exhausted"


def test_the_row_names_the_failure_and_keeps_the_strategy():
    row = dead_worker_row(identifiers=IDS, target_kind="macs", trial_id="t1", iteration=2,
                          strategy=Strategy(importance="l1", target_reduction=0.5), detail="/tune/t1/error.txt")
    assert (row.status, row.error, row.trial_id, row.iteration) == ("failed", f"{EXPECTED}: /tune/t1/error.txt", "t1", 2)
    assert row.importance == "l1" and row.top1_after is None


def test_optuna_and_master_paths_store_the_same_row(tmp_path):
    store = ResultStore(tmp_path / "results")
    sink = RowSink(store)
    # Tune's Trial as RowRecorder.on_trial_error reads it: its config, id and error file.
    trial = SimpleNamespace(config={"iteration": 3}, trial_id="opt1", error_file=None)
    RowRecorder(sink, IDS, "macs").on_trial_error(0, [], trial)
    master = MasterSearcher(None, None, profile={}, target={"kind": "macs", "reduction": 0.5, "budget": None},
                            base=Strategy(target_reduction=0.5), budget=4, batch_size=2,
                            identifiers={**IDS, "method": "multi_agent"}, history=[], record=sink)
    master.running["ma1"] = (Strategy(importance="l2", target_reduction=0.5), 1)
    master.on_trial_complete("ma1", None, error=True)
    rows = {r.trial_id: r for r in store.rows()}
    assert {k: (r.status, r.error, r.iteration) for k, r in rows.items()} == {
        "opt1": ("failed", EXPECTED, 3), "ma1": ("failed", EXPECTED, 1)}
    assert rows["ma1"].importance == "l2" and rows["opt1"].strategy_json == "{}"
