"""Every injected trial fault (exception, CUDA OOM, NaN loss) at every stage becomes one failed
row with its type and message, keeps the stage times measured before it, and invents nothing.

In-process (no Ray): the trial function is the same one the Tune search runs
(tests/reliability/test_search_faults.py checks the same rows end to end in a search).
"""

from __future__ import annotations

import json

import pytest

from multi_agent_pruning.config import load_config
from multi_agent_pruning.orchestrator.prepare import base_strategy, build_context
from multi_agent_pruning.results import ResultStore
from multi_agent_pruning.search.trial import FAULT_ENV, evaluate_strategy


@pytest.fixture(scope="module")
def context(shared_cache):
    cfg = load_config("tests/support/quickstart_single.yaml", overrides=[
        "model.train_steps=40", "finetune.steps=5", "evaluation.latency=false",
        f"precomputation.cache_dir={shared_cache}"])
    return build_context(cfg, method="multi_agent", run=0), base_strategy(cfg)


@pytest.mark.parametrize(("stage", "kind", "error_type", "needle", "measured"), [
    ("prune", "raise", "RuntimeError", "injected fault at prune", ()),
    ("finetune", "oom", "OutOfMemoryError", "CUDA out of memory (injected at finetune)", ("prune",)),
    ("finetune", "nan", "NonFiniteLossError", "loss is nan at step 1 (injected at finetune)", ("prune",)),
    ("evaluate", "raise", "RuntimeError", "injected fault at evaluate", ("prune", "finetune")),
    ("evaluate", "oom", "OutOfMemoryError", "CUDA out of memory (injected at evaluate)", ("prune", "finetune")),
])
def test_fault_becomes_one_failed_row(context, tmp_path, monkeypatch, stage, kind, error_type, needle, measured):
    ctx, base = context
    monkeypatch.setenv(FAULT_ENV, json.dumps({"stage": stage, "kind": kind, "importance": None}))
    row = evaluate_strategy(base, ctx, trial_id=f"{stage}-{kind}", iteration=3, save_dir=str(tmp_path / "model"))
    assert (row.status, row.error_type, row.error) == ("failed", error_type, needle)
    assert (row.trial_id, row.iteration, row.importance) == (f"{stage}-{kind}", 3, base.importance)
    assert json.loads(row.strategy_json) == json.loads(base.to_json())
    # Nothing is filled in that was not measured: no accuracy, no size, no saved model.
    assert (row.top1_after, row.top1_before, row.macs, row.params, row.macs_reduction) == (None,) * 5
    assert not (tmp_path / "model").exists() or not any((tmp_path / "model").iterdir())
    for name in ("prune", "finetune", "evaluate"):
        value = getattr(row, f"seconds_{name}")
        assert (value is not None and value > 0) if name in measured else value is None, name
    assert row.seconds_total > 0
    # The row is a valid row of the table.
    store = ResultStore(tmp_path / "results")
    store.append(row)
    (stored,) = store.rows()
    assert (stored.status, stored.error_type, stored.error) == ("failed", error_type, needle)


def test_fault_filtered_by_importance_spares_other_trials(context, monkeypatch):
    ctx, base = context
    assert base.importance == "taylor"
    monkeypatch.setenv(FAULT_ENV, json.dumps({"stage": "prune", "kind": "raise", "importance": "l2"}))
    spared = evaluate_strategy(base, ctx, trial_id="spared", iteration=0)
    hit = evaluate_strategy(base.replace(importance="l2"), ctx, trial_id="hit", iteration=0)
    assert spared.status == "ok" and spared.error is None and 0 < spared.top1_after <= 1
    assert abs(spared.macs_reduction - 0.5) <= 0.01
    assert (hit.status, hit.error_type, hit.importance) == ("failed", "RuntimeError", "l2")


def test_malformed_fault_spec_is_a_failed_row_not_a_crash(context, monkeypatch):
    ctx, base = context
    monkeypatch.setenv(FAULT_ENV, "{not json")
    row = evaluate_strategy(base, ctx, trial_id="bad-spec", iteration=0)
    assert (row.status, row.error_type) == ("failed", "JSONDecodeError")
