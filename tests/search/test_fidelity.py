"""Multi-fidelity trials (search.scheduler: asha): rungs continue one fine-tune, rung 0 is the
one-budget trial, a checkpoint continues exactly, and the master is told every rung."""

from __future__ import annotations

import dataclasses
import json

import pytest

from multi_agent_pruning.agents.llm_schema import build_strategy_messages
from multi_agent_pruning.agents.master import history_observations
from multi_agent_pruning.config import load_config
from multi_agent_pruning.exceptions import ConfigurationError
from multi_agent_pruning.orchestrator.prepare import base_strategy, build_context
from multi_agent_pruning.search.fidelity import build_scheduler
from multi_agent_pruning.search.searcher import observation
from multi_agent_pruning.search.trial import (evaluate_rungs, evaluate_strategy, load_rung_checkpoint,
                                              save_rung_checkpoint)


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    cfg = load_config("tests/support/quickstart_single.yaml", overrides=[
        "model.train_steps=40", "finetune.steps=4", "evaluation.latency=false",
        f"precomputation.cache_dir={tmp_path_factory.mktemp('cache')}"])
    return build_context(cfg, method="multi_agent", run=0), base_strategy(cfg).replace(importance="l2")


def test_rungs_continue_one_fine_tune_and_rung_zero_is_the_fifo_trial(context):
    ctx, strategy = context
    fifo = evaluate_strategy(strategy, ctx, trial_id="f", iteration=0)
    rows = [row for row, _, _ in evaluate_rungs(strategy, dataclasses.replace(ctx, rungs=(1, 3)), trial_id="r")]
    assert fifo.status == "ok" and [r.status for r in rows] == ["ok", "ok"], [r.error for r in rows]
    first, last = rows
    # Rung 0 is exactly the one-budget trial: same prune, same steps, same data order, same accuracy.
    assert (first.top1_after, first.macs, first.top1_before, first.steps_trained) == \
        (fifo.top1_after, fifo.macs, fifo.top1_before, fifo.steps_trained) == (fifo.top1_after, fifo.macs,
                                                                             fifo.top1_before, 4)
    assert fifo.rung is None and fifo.rungs_json is None and fifo.stopped_early is None
    assert (first.rung, first.stopped_early, last.rung, last.stopped_early) == (0, True, 1, False)
    # Rung 1 brings the fine-tune to 3x in all: 8 more steps on the same model, not 12 from scratch.
    rungs = json.loads(last.rungs_json)
    assert [(r["rung"], r["budget"], r["steps"], r["session"]) for r in rungs] == [(0, 1, 4, 0), (1, 3, 12, 0)]
    assert last.steps_trained == 12 and rungs[0]["top1"] == first.top1_after and rungs[1]["top1"] == last.top1_after
    assert last.top1_before == first.top1_before and last.seconds_finetune == pytest.approx(
        rungs[0]["seconds"] + rungs[1]["seconds"])


def test_a_rung_checkpoint_continues_exactly(context, tmp_path):
    """A trial retried after its worker died continues from its last rung's checkpoint (model,
    optimizer state, progress) and ends exactly as the trial that never stopped."""
    ctx, strategy = context
    ctx = dataclasses.replace(ctx, rungs=(1, 2))
    straight = [row for row, _, _ in evaluate_rungs(strategy, ctx, trial_id="s")]
    rungs = evaluate_rungs(strategy, ctx, trial_id="c")
    row, pruned, progress = next(rungs)
    save_rung_checkpoint(tmp_path, pruned, progress, row, strategy, ctx)
    rungs.close()
    assert progress.optimizer_state  # AdamW moments are part of the state
    resumed = [row for row, _, _ in evaluate_rungs(strategy, ctx, trial_id="c",
                                                   resume=load_rung_checkpoint(tmp_path, ctx))]
    assert len(resumed) == 1 and resumed[0].status == "ok"
    entries = json.loads(resumed[0].rungs_json)
    assert [(r["rung"], r["steps"], r["session"]) for r in entries] == [(0, 4, 0), (1, 8, 1)]
    assert resumed[0].top1_after == straight[1].top1_after
    assert entries[1]["loss"] == json.loads(straight[1].rungs_json)[1]["loss"]
    assert resumed[0].started_at == row.started_at  # the trial's, not the retry's


def test_a_failed_rung_keeps_the_rungs_before_it(context, monkeypatch):
    ctx, strategy = context
    monkeypatch.setenv("MAPRUNER_FAULT_INJECTION", json.dumps({"stage": "finetune", "kind": "nan", "rung": 1}))
    rows = [row for row, _, _ in evaluate_rungs(strategy, dataclasses.replace(ctx, rungs=(1, 3, 9)), trial_id="x")]
    assert [r.status for r in rows] == ["ok", "failed"]
    failed = rows[1]
    assert failed.error_type == "NonFiniteLossError" and failed.top1_after is None
    assert (failed.rung, failed.steps_trained, len(json.loads(failed.rungs_json))) == (0, 4, 1)


def test_the_scheduler_config_and_its_rungs():
    cfg = load_config("tests/support/quickstart_single.yaml", overrides=[
        "search.scheduler=asha", "search.rungs=4", "search.reduction_factor=2"])
    assert cfg.search.rung_budgets() == (1, 2, 4, 8)
    assert load_config("tests/support/quickstart_single.yaml").search.rung_budgets() is None  # fifo, the default
    scheduler = build_scheduler((1, 3, 9), 3)
    assert sorted(m for m, _ in scheduler._brackets[0]._rungs) == [1, 3, 9]
    assert build_scheduler(None, 3) is None
    with pytest.raises(ConfigurationError, match="search.scheduler"):
        load_config("tests/support/quickstart_single.yaml", overrides=["search.scheduler=hyperband"])
    with pytest.raises(ConfigurationError, match="search.rungs"):
        load_config("tests/support/quickstart_single.yaml", overrides=["search.rungs=1"])
    with pytest.raises(ConfigurationError, match="search.scheduler: asha compares the trials at each rung"):
        load_config("configs/quickstart.yaml", overrides=["search.scheduler=asha"])  # a sweep


def test_the_master_is_told_every_rung(context):
    """A stopped trial is an ok result at a low budget: the master's observation keeps its
    score, the top-1 at each rung, and the LLM prompt shows them with what they mean."""
    ctx, strategy = context
    row = next(evaluate_rungs(strategy, dataclasses.replace(ctx, rungs=(1, 3)), trial_id="m"))[0]
    seen = observation(row)
    assert (seen["status"], seen["rung"], seen["stopped_early"]) == ("ok", 0, True)
    assert seen["rungs"] == [{"rung": 0, "budget": 1, "top1": row.top1_after}]
    (obs,) = history_observations([seen])
    assert obs.score == row.top1_after and obs.rungs == ((1, row.top1_after),)
    fifo = history_observations([{"strategy_json": row.strategy_json, "top1_after": 0.5, "status": "ok"}])
    assert fifo[0].rungs is None
    from multi_agent_pruning.agents.master import _llm_result

    result = _llm_result(obs)
    assert result == {"top1": row.top1_after, "top1_by_budget": {"1": round(row.top1_after, 4)}}
    messages = build_strategy_messages({"architecture_type": "cnn", "groups": {}, "target": {}, "batch_size": 2,
                                        "history": [{"strategy": {}, "result": result}]})
    assert "Multi-fidelity search" in messages[1]["content"]
    plain = build_strategy_messages({"architecture_type": "cnn", "groups": {}, "target": {}, "batch_size": 2,
                                     "history": [{"strategy": {}, "result": {"top1": 0.5}}]})
    assert "Multi-fidelity" not in plain[1]["content"]
