"""describe_models / format_model_table: the numbers behind `mapruner models`."""

from __future__ import annotations

import pytest

from multi_agent_pruning.exceptions import UnknownNameError
from multi_agent_pruning.models import create_model, describe_models, format_model_table, list_models
from multi_agent_pruning.utils.metrics import compute_macs, compute_params


def test_deit_small_row() -> None:
    (row,) = describe_models(["deit_small"])
    assert (row["name"], row["timm_name"], row["input_size"]) == ("deit_small", "deit_small_patch16_224", (3, 224, 224))
    assert row["params"] == 22_050_664
    assert row["macs"] / 1e9 == pytest.approx(4.61, abs=0.01)


def test_table_prints_measured_values() -> None:
    table = format_model_table(describe_models(["deit_small", "compact_cnn"]))
    header, rule, deit, cnn = table.splitlines()
    assert header.split() == ["name", "timm", "id", "input", "params", "(M)", "GMACs"]
    assert set(rule.replace(" ", "")) == {"-"}
    assert deit.split() == ["deit_small", "deit_small_patch16_224", "3x224x224", "22.05", "4.61"]
    assert cnn.split() == ["compact_cnn", "-", "1x16x16", "0.31", "0.0123"]


def test_all_models_are_described() -> None:
    rows = describe_models()
    assert [row["name"] for row in rows] == list_models()
    by_name = {row["name"]: row for row in rows}
    assert by_name["resnet50"]["params"] == 25_557_032
    assert by_name["deit_micro"]["input_size"] == (1, 16, 16)
    assert all(row["macs"] > 0 and row["params"] > 0 for row in rows)


def test_input_size_override_matches_a_real_model() -> None:
    (row,) = describe_models(["deit_micro"], input_size=32)
    assert row["input_size"] == (1, 32, 32)
    real = create_model("deit_micro", input_size=32)
    assert row["macs"] == compute_macs(real, (1, 1, 32, 32))
    assert row["params"] == compute_params(real)


def test_unknown_model() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean: deit_small"):
        describe_models(["deit_smal"])
