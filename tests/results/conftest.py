"""Rows for the result-store tests: one with every field set, and a failed one."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from multi_agent_pruning.results import TrialResult

START = dt.datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=dt.timezone.utc)


def ok_result(**overrides) -> TrialResult:
    """An ok trial with every column set to a distinct, plausible value."""
    values = dict(
        experiment="exp-a", run=1, method="multi_agent", model="deit_tiny", dataset="digits", seed=7,
        trial_id="t-001", iteration=2,
        strategy_json=json.dumps({"importance": "taylor", "target_kind": "macs", "target_reduction": 0.5},
                                 sort_keys=True),
        importance="taylor", global_pruning=True, isomorphic=False, round_to=8, head_pruning_ratio=0.25,
        learning_rate=3e-4, finetune_steps=120, kd_weight=0.5, group_multipliers_json='{"mlp": 1.2}',
        target_kind="macs", target_value=6.25e8, target_reduction=0.5,
        base_macs=1.25e9, base_params=5_000_000, macs=6.3e8, params=2_600_000,
        macs_reduction=0.496, params_reduction=0.48, target_error=0.008,
        top1_before=0.41, top5_before=0.77, top1_after=0.93, top5_after=0.995, loss_after=0.21,
        latency_ms=3.75, seconds_total=42.5, seconds_prune=1.5, seconds_finetune=38.0, seconds_evaluate=2.25,
        llm_prompt_tokens=1200, llm_completion_tokens=300, status="ok",
        custom_metrics_json='{"ece": 0.031}', started_at=START, finished_at=START + dt.timedelta(seconds=42.5),
        host="node-3",
    )
    values.update(overrides)
    return TrialResult(**values)


def failed_result(**overrides) -> TrialResult:
    """A trial that failed while pruning: only the dense size and the prune time were measured."""
    values = dict(experiment="exp-a", run=0, method="taylor", model="resnet18", dataset="cifar10", seed=3,
                  trial_id="t-002", iteration=0, error=RuntimeError("target unreachable: 3 groups left"),
                  strategy={"importance": "taylor", "target_kind": "params", "target_budget": 1.0e6,
                            "target_reduction": None, "group_multipliers": {}},
                  base_params=11_000_000, base_macs=1.8e9, seconds_prune=0.75, started_at=START)
    values.update(overrides)
    return TrialResult.failed(**values)


@pytest.fixture
def make_ok():
    return ok_result


@pytest.fixture
def make_failed():
    return failed_result
