"""The schema, TrialResult helpers and value validation."""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.metadata
import json
import math
from pathlib import Path

import pytest

from multi_agent_pruning.exceptions import ResultStoreError
from multi_agent_pruning.results import (RESULT_SCHEMA, SCHEMA_VERSION, TrialResult, current_versions,
                                         schema_markdown, strategy_columns)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "results-schema.md"


def test_dataclass_fields_equal_schema_columns_in_order():
    assert [f.name for f in dataclasses.fields(TrialResult)] == RESULT_SCHEMA.names
    assert len(RESULT_SCHEMA) == 62  # version 2 added base_top1, version 3 stage, source_trial_id, recovery_epochs, top1_adaptive_bn, version 4 the rung and placement columns


def test_required_fields_are_the_non_nullable_columns_without_defaults():
    required = {f.name for f in dataclasses.fields(TrialResult)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    non_nullable = {f.name for f in RESULT_SCHEMA if not f.nullable}
    assert required == {"experiment", "run", "method", "model", "dataset", "seed", "trial_id", "iteration",
                        "strategy_json", "target_kind", "status"}
    assert non_nullable == required | {"versions_json", "schema_version", "stage"}


def test_every_field_is_documented_and_schema_carries_its_version():
    for fld in RESULT_SCHEMA:
        assert fld.metadata[b"doc"], fld.name
        assert b"unit" in fld.metadata and fld.metadata[b"null_when"], fld.name
    assert RESULT_SCHEMA.metadata[b"multi_agent_pruning.schema_version"] == str(SCHEMA_VERSION).encode()
    assert str(RESULT_SCHEMA.field("started_at").type) == "timestamp[us, tz=UTC]"
    assert str(RESULT_SCHEMA.field("base_params").type) == "int64"


def test_docs_contain_the_generated_column_table():
    text = DOCS.read_text()
    assert schema_markdown() in text
    for name in RESULT_SCHEMA.names:
        assert f"`{name}`" in text


def test_current_versions_reads_installed_distributions():
    versions = current_versions()
    assert set(versions) == {"torch", "timm", "torch_pruning", "ray", "multi_agent_pruning"}
    assert versions["torch"] == importlib.metadata.version("torch")
    assert versions["torch_pruning"] == importlib.metadata.version("torch-pruning")
    row = TrialResult(experiment="e", run=0, method="m", model="x", dataset="d", seed=0, trial_id="t",
                      iteration=0, strategy_json="{}", target_kind="macs", status="ok")
    assert json.loads(row.versions_json) == versions
    assert row.macs is None and row.top1_after is None and row.latency_ms is None


def test_strategy_columns_from_a_core_strategy():
    from multi_agent_pruning.core.strategy import Strategy

    strategy = Strategy(importance="l2", global_pruning=False, isomorphic=False, round_to=8,
                        group_multipliers={"mlp": 1.5, "attention": 0.5}, target_kind="params",
                        target_reduction=None, target_budget=2.0e6, finetune_steps=50, learning_rate=2e-4,
                        kd_weight=0.3)
    columns = strategy_columns(strategy)
    assert columns["strategy_json"] == strategy.to_json()
    assert columns["group_multipliers_json"] == '{"attention": 0.5, "mlp": 1.5}'
    assert (columns["importance"], columns["global_pruning"], columns["isomorphic"]) == ("l2", False, False)
    assert (columns["round_to"], columns["finetune_steps"], columns["kd_weight"]) == (8, 50, 0.3)
    assert (columns["target_kind"], columns["target_value"], columns["target_reduction"]) == ("params", 2.0e6, None)
    assert strategy_columns(strategy.to_json()) == columns


def test_failed_row_records_the_error_and_nothing_invented(make_failed):
    row = make_failed()
    assert row.status == "failed"
    assert row.error == "target unreachable: 3 groups left"
    assert row.error_type == "RuntimeError"
    assert row.target_kind == "params" and row.target_value == 1.0e6
    assert row.base_params == 11_000_000 and row.seconds_prune == 0.75
    for name in ("macs", "params", "top1_after", "top1_before", "loss_after", "latency_ms", "seconds_total"):
        assert getattr(row, name) is None, name
    assert row.finished_at.tzinfo is not None
    row.validate()


def test_rejected_row_from_text_without_strategy():
    row = TrialResult.failed(experiment="e", run=0, method="multi_agent", model="m", dataset="d", seed=1,
                             trial_id="t", iteration=0, error="ratio 0.99 above safety limit 0.8",
                             status="rejected", target_kind="macs")
    assert (row.status, row.error, row.error_type, row.strategy_json) == (
        "rejected", "ratio 0.99 above safety limit 0.8", None, "{}")
    row.validate()
    with pytest.raises(ResultStoreError, match="target_kind is required"):
        TrialResult.failed(experiment="e", run=0, method="m", model="m", dataset="d", seed=1, trial_id="t",
                           iteration=0, error="x")


@pytest.mark.parametrize(("changes", "expected"), [
    ({"status": "done"}, "status: must be one of ok, failed, rejected (got 'done')"),
    ({"run": 1.5}, "run: must be an integer (got 1.5)"),
    ({"seed": True}, "seed: must be an integer (got True)"),
    ({"top1_after": 93.0}, "top1_after: must be a fraction in [0, 1] (got 93.0)"),
    ({"top1_after": math.nan}, "top1_after: must be a finite number (got nan)"),
    ({"macs": -1.0}, "macs: must be >= 0 (got -1.0)"),
    ({"experiment": ""}, "experiment: must not be empty"),
    ({"method": None}, "method: must not be null (got None)"),
    ({"target_kind": "flops"}, "target_kind: must be one of macs, params (got 'flops')"),
    ({"error": "boom"}, "error: must be null when status is ok (got 'boom')"),
    ({"custom_metrics_json": "{oops"}, "custom_metrics_json: must be valid JSON"),
    ({"strategy_json": "[1, 2]"}, "strategy_json: must be a JSON object"),
    ({"started_at": dt.datetime(2025, 1, 1)}, "started_at: must be a timezone-aware datetime"),
    ({"finished_at": dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)}, "finished_at: must not be before"),
    ({"schema_version": 0}, "schema_version: must be the current version 4 (got 0)"),
    ({"stage": "rung"}, "stage: must be one of search, final (got 'rung')"),
    ({"stage": "final"}, "source_trial_id: must name the recovered search trial when stage is final"),
    ({"global_pruning": 1}, "global_pruning: must be true or false (got 1)"),
])
def test_validation_names_the_field(make_ok, changes, expected):
    with pytest.raises(ResultStoreError) as info:
        make_ok(**changes).validate()
    assert expected in str(info.value)
    assert "trial_id='t-001'" in str(info.value)


def test_validation_reports_all_problems_and_accepts_diverged_loss(make_ok):
    with pytest.raises(ResultStoreError) as info:
        make_ok(status="done", params=-5, latency_ms="fast").validate()
    message = str(info.value)
    assert "status:" in message and "params: must be >= 0" in message and "latency_ms: must be a number" in message
    make_ok(loss_after=math.inf).validate()
    make_ok(status="failed", error="diverged", loss_after=math.nan).validate()
    with pytest.raises(ResultStoreError, match="error: must describe why the trial is failed"):
        make_ok(status="failed").validate()


def test_to_row_and_from_row_round_trip_and_normalise_to_utc(make_ok):
    plus_two = dt.timezone(dt.timedelta(hours=2))
    local = dt.datetime(2025, 3, 1, 14, 0, tzinfo=plus_two)
    row = make_ok(started_at=local, finished_at=local + dt.timedelta(seconds=5)).to_row()
    assert row["started_at"] == dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
    assert row["started_at"].tzinfo is dt.timezone.utc
    assert TrialResult.from_row(row).to_row() == row
    with pytest.raises(ResultStoreError, match="Unknown trial result column.*accuracy"):
        TrialResult.from_row({**row, "accuracy": 0.9})
    del row["status"]
    with pytest.raises(ResultStoreError, match="Incomplete trial result row.*status"):
        TrialResult.from_row(row)
