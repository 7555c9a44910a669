"""The one trial function: an ok row measured end to end, and failures as rows."""

from __future__ import annotations

import logging

import pytest
import torch

from multi_agent_pruning.config import load_config
from multi_agent_pruning.core.strategy import Strategy
from multi_agent_pruning.orchestrator.prepare import base_strategy, build_context
from multi_agent_pruning.results import ResultStore


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    cfg = load_config("tests/support/quickstart_single.yaml", overrides=[
        "model.train_steps=40", "finetune.steps=5", "evaluation.latency=false",
        f"precomputation.cache_dir={tmp_path_factory.mktemp('cache')}"])
    return build_context(cfg, method="multi_agent", run=0), base_strategy(cfg)


def test_ok_row_is_measured(context, tmp_path):
    from multi_agent_pruning.core.evaluation import evaluate
    from multi_agent_pruning.core.serialization import load_pruned_model
    from multi_agent_pruning.data import create_loaders
    from multi_agent_pruning.models import create_model
    from multi_agent_pruning.search.trial import evaluate_strategy

    ctx, base = context
    row = evaluate_strategy(base.replace(importance="l2"), ctx, trial_id="t0", iteration=0, save_dir=str(tmp_path))
    assert row.status == "ok", row.error
    assert abs(row.target_error) <= 0.02 and row.macs_reduction == pytest.approx(0.5, abs=0.01)
    assert 0 <= row.top1_before <= 1 and 0 <= row.top1_after <= 1
    assert row.seconds_prune > 0 and row.seconds_finetune > 0 and row.seconds_total >= row.seconds_prune
    assert row.importance == "l2" and row.finetune_steps == 5
    # In-process: the device it computed on; no node or GPU ids without Ray, this driver's node and
    # no GPU when an earlier test of the session left its Ray initialised here.
    import ray

    where = ((ray.get_runtime_context().get_node_id(), ray.util.get_node_ip_address(), "[]")
             if ray.is_initialized() else (None, None, None))
    assert (row.device, row.node_id, row.node_ip, row.gpu_ids) == ("cpu", *where)
    ResultStore(tmp_path / "store").append(row)  # a valid row of the schema
    # The saved model is the evaluated one: reloading it reproduces the accuracy exactly.
    model, meta = load_pruned_model(tmp_path, build_fn=lambda name, **kw: create_model(name, **kw))
    _, val = create_loaders(ctx.bundle, 128)
    assert evaluate(model, val)["top1"] == pytest.approx(row.top1_after)
    assert meta["trial_id"] == "t0"


def test_failures_become_rows(context):
    from multi_agent_pruning.search.trial import evaluate_strategy

    ctx, base = context
    row = evaluate_strategy(base.replace(group_multipliers={"attention": 1.0}), ctx, trial_id="t1", iteration=0)
    assert row.status == "failed" and row.error_type == "PruningError" and "'attention'" in row.error
    assert row.top1_after is None and row.macs is None  # nothing invented
    diverged = evaluate_strategy(base.replace(learning_rate=9.9, finetune_steps=20), ctx, trial_id="t2", iteration=0)
    assert diverged.status in ("ok", "failed")
    if diverged.status == "failed":
        assert diverged.error_type == "NonFiniteLossError"


def test_strategy_roundtrip_through_json_is_identical(context):
    _, base = context
    assert Strategy.from_json(base.to_json()) == base and Strategy.from_json(base.to_json()).key() == base.key()


def test_adaptive_bn_accuracy_is_measured_without_changing_the_trial(context):
    """evaluation.adaptive_bn_batches: the row gains top1_adaptive_bn, measured on a copy with its
    own loader, so the fine-tuned model and its accuracy are those of the trial without it."""
    import dataclasses

    from multi_agent_pruning.search.trial import evaluate_strategy

    ctx, base = context
    strategy = base.replace(importance="l1", global_pruning=False)
    plain = evaluate_strategy(strategy, ctx, trial_id="a0", iteration=0)
    probed = evaluate_strategy(strategy, dataclasses.replace(ctx, adaptive_bn_batches=4), trial_id="a1", iteration=0)
    assert plain.status == probed.status == "ok"
    assert plain.top1_adaptive_bn is None and probed.top1_adaptive_bn is not None
    assert (probed.top1_before, probed.top1_after, probed.macs) == (plain.top1_before, plain.top1_after, plain.macs)
    assert probed.top1_adaptive_bn > probed.top1_before  # stale statistics after a 50 % prune cost accuracy


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a node without CUDA")
def test_gpus_ray_assigned_on_a_node_without_cuda_mean_cpu_and_a_warning(caplog):
    from multi_agent_pruning.search.trial import compute_device

    with caplog.at_level(logging.WARNING, logger="multi_agent_pruning.search.trial"):
        assert compute_device("auto", '["0"]', "t7") == "cpu"
        assert compute_device("cuda", '["1", "2"]', "t8") == "cpu"
    assert [r.getMessage() for r in caplog.records] == [
        "trial t7: Ray assigned it GPU(s) 0, but CUDA is not available on this node (a simulated GPU?); "
        "it computes on the CPU",
        "trial t8: Ray assigned it GPU(s) 1, 2, but CUDA is not available on this node (a simulated GPU?); "
        "it computes on the CPU"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="multi_agent_pruning.search.trial"):
        # No GPU assigned (or outside Ray), or CPU asked for: the setting as it is, silently.
        assert [compute_device("auto", "[]"), compute_device("auto", None), compute_device("cpu", '["0"]')] == [
            "auto", "auto", "cpu"]
    assert caplog.records == []
