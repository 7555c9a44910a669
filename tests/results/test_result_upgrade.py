"""Schema upgrades: a fabricated version-0 table (a renamed and two missing columns) and a real
version-1 table (no ``base_top1``) read as the current version."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from multi_agent_pruning.exceptions import MultiAgentPruningError, ResultStoreError
from multi_agent_pruning.results import RESULT_SCHEMA, SCHEMA_VERSION, ResultStore, register_upgrade, upgrade_table
from multi_agent_pruning.results.upgrade import UPGRADES, add_null_columns, rename_columns

_DROPPED = ("llm_prompt_tokens", "llm_completion_tokens")


def _version_zero(rows) -> pa.Table:
    """What version 0 looked like: no LLM token columns, ``top1_after`` called ``final_top1``."""
    table = pa.Table.from_pylist([r.to_row() for r in rows], schema=RESULT_SCHEMA).drop_columns(list(_DROPPED))
    table = table.rename_columns(["final_top1" if n == "top1_after" else n for n in table.column_names])
    index = table.column_names.index("schema_version")
    return table.set_column(index, "schema_version", pa.array([0] * table.num_rows, pa.int32()))


@pytest.fixture
def upgrade_zero():
    @register_upgrade(0)
    def zero_to_one(table: pa.Table) -> pa.Table:
        table = rename_columns(table, {"final_top1": "top1_after"})
        return add_null_columns(table, [RESULT_SCHEMA.field(name) for name in _DROPPED])

    yield zero_to_one
    UPGRADES.remove("0")


def test_version_zero_table_upgrades_with_nulls(upgrade_zero, make_ok, make_failed):
    ok, failed = make_ok(), make_failed()
    old = _version_zero([ok, failed])
    assert "llm_prompt_tokens" not in old.column_names and "final_top1" in old.column_names
    new = upgrade_table(old)
    assert new.schema.equals(RESULT_SCHEMA, check_metadata=True)
    assert new.column("schema_version").to_pylist() == [SCHEMA_VERSION] * 2
    assert new.column("llm_prompt_tokens").to_pylist() == [None, None]
    assert new.column("llm_completion_tokens").null_count == 2
    assert new.column("top1_after").to_pylist() == [0.93, None]
    expected = {**ok.to_row(), "llm_prompt_tokens": None, "llm_completion_tokens": None}
    assert new.to_pylist()[0] == expected


def test_mixed_versions_in_one_table_are_upgraded_per_version(make_ok):
    @register_upgrade(0)
    def latency_seconds_to_ms(table: pa.Table) -> pa.Table:
        index = table.column_names.index("latency_ms")
        return table.set_column(index, "latency_ms", pc.multiply(table.column("latency_ms"), 1000.0))

    try:
        rows = [make_ok(trial_id="new", latency_ms=4.0).to_row(), make_ok(trial_id="old", latency_ms=0.004).to_row()]
        rows[1]["schema_version"] = 0
        new = upgrade_table(pa.Table.from_pylist(rows, schema=RESULT_SCHEMA))
    finally:
        UPGRADES.remove("0")
    by_id = {r["trial_id"]: r for r in new.to_pylist()}
    assert by_id["new"]["latency_ms"] == 4.0 and by_id["old"]["latency_ms"] == pytest.approx(4.0)
    assert new.column("schema_version").to_pylist() == [SCHEMA_VERSION] * 2


def test_store_reads_old_files_next_to_current_ones(tmp_path, upgrade_zero, make_ok):
    store = ResultStore(tmp_path)
    (written,) = store.append(make_ok(trial_id="v1"))
    pq.write_table(_version_zero([make_ok(trial_id="v0")]), written.parent / "part-legacy.parquet")
    rows = {r.trial_id: r for r in store.rows()}
    assert set(rows) == {"v0", "v1"}
    assert rows["v0"].llm_prompt_tokens is None and rows["v1"].llm_prompt_tokens == 1200
    assert rows["v0"].top1_after == rows["v1"].top1_after == 0.93
    assert store.last_read_report.skipped == []


def test_missing_upgrade_step_skips_the_old_file_with_reason(tmp_path, make_ok):
    with pytest.raises(ResultStoreError, match="No upgrade registered from schema version 0 to 1"):
        upgrade_table(_version_zero([make_ok()]))
    store = ResultStore(tmp_path)
    (written,) = store.append(make_ok(trial_id="v1"))
    pq.write_table(_version_zero([make_ok(trial_id="v0")]), written.parent / "part-legacy.parquet")
    assert store.trial_ids("exp-a") == {"v1"}
    (skipped,) = store.last_read_report.skipped
    assert skipped.path.name == "part-legacy.parquet" and "from schema version 0 to 1" in skipped.reason


def test_newer_and_unversioned_tables_are_refused(make_ok):
    table = pa.Table.from_pylist([make_ok().to_row()], schema=RESULT_SCHEMA)
    newer = table.set_column(table.column_names.index("schema_version"), "schema_version", pa.array([SCHEMA_VERSION + 1]))
    with pytest.raises(ResultStoreError, match=f"schema version {SCHEMA_VERSION + 1}, newer than this package's {SCHEMA_VERSION}"):
        upgrade_table(newer)
    with pytest.raises(ResultStoreError, match="no 'schema_version' column"):
        upgrade_table(table.drop_columns(["schema_version"]))
    with pytest.raises(ResultStoreError, match=f"lacks column\\(s\\) of schema version {SCHEMA_VERSION}: host"):
        upgrade_table(table.drop_columns(["host"]))


def test_an_upgrade_step_can_only_be_registered_once(upgrade_zero):
    with pytest.raises(MultiAgentPruningError, match="schema upgrade '0' is already registered"):
        register_upgrade(0)(lambda table: table)


V4_COLUMNS = ("steps_trained", "rung", "stopped_early", "rungs_json", "node_id", "node_ip", "gpu_ids", "device")


def test_version_one_rows_upgrade_without_a_dense_accuracy(tmp_path, make_ok):
    """Version 2 added ``base_top1``: a version-1 file (written before it) still loads, with the
    column null (never a made-up value), next to current rows that have it; version 3 then makes
    it a search row."""
    assert SCHEMA_VERSION == 4
    old = pa.Table.from_pylist([make_ok(trial_id="v1").to_row()], schema=RESULT_SCHEMA).drop_columns(
        ["base_top1", "stage", "source_trial_id", "recovery_epochs", "top1_adaptive_bn", *V4_COLUMNS])
    old = old.set_column(old.column_names.index("schema_version"), "schema_version", pa.array([1]))
    new = upgrade_table(old)
    assert new.schema.equals(RESULT_SCHEMA, check_metadata=True)
    assert new.column("base_top1").to_pylist() == [None] and new.column("schema_version").to_pylist() == [4]
    assert new.column("stage").to_pylist() == ["search"] and new.column("source_trial_id").to_pylist() == [None]
    assert new.column("top1_after").to_pylist() == [0.93]
    store = ResultStore(tmp_path)
    (written,) = store.append(make_ok(trial_id="v2", base_top1=0.97))
    pq.write_table(old, written.parent / "part-legacy.parquet")
    rows = {r.trial_id: r for r in store.rows()}
    assert (rows["v1"].base_top1, rows["v2"].base_top1) == (None, 0.97)


def test_final_rows_are_read_only_when_asked_for(tmp_path, make_ok):
    """Version 3: the final recoveries share the table; every reader gets the search rows unless
    it asks for another stage, so no statistic mixes a 30-epoch recovery with a proxy trial."""
    store = ResultStore(tmp_path)
    store.append([make_ok(trial_id="s1"), make_ok(trial_id="final-s1", stage="final", source_trial_id="s1",
                                                    recovery_epochs=3, top1_after=0.97)])
    assert [r.trial_id for r in store.rows()] == ["s1"] and store.count() == 1
    (final,) = store.rows(stage="final")
    assert (final.source_trial_id, final.recovery_epochs, final.top1_after) == ("s1", 3, 0.97)
    assert len(store.rows(stage=None)) == 2 and store.trial_ids(final.experiment) == {"s1", "final-s1"}
    with pytest.raises(ResultStoreError, match="stage filter must be one of search, final"):
        store.read(stage="rung")
    # A version-2 file: all search rows.
    v2 = pa.Table.from_pylist([make_ok(trial_id="old").to_row()], schema=RESULT_SCHEMA).drop_columns(
        ["stage", "source_trial_id", "recovery_epochs", "top1_adaptive_bn", *V4_COLUMNS])
    v2 = v2.set_column(v2.column_names.index("schema_version"), "schema_version", pa.array([2]))
    pq.write_table(v2, next(tmp_path.rglob("*.parquet")).parent / "part-v2.parquet")
    assert sorted(r.trial_id for r in store.rows()) == ["old", "s1"]


def test_version_three_rows_upgrade_without_rungs_or_placement(make_ok):
    """Version 4 added the multi-fidelity and placement columns: a version-3 row gets them null
    (nothing was recorded), everything else as written."""
    row = make_ok(trial_id="v3", top1_adaptive_bn=0.5)
    old = pa.Table.from_pylist([row.to_row()], schema=RESULT_SCHEMA).drop_columns(list(V4_COLUMNS))
    old = old.set_column(old.column_names.index("schema_version"), "schema_version", pa.array([3]))
    (upgraded,) = upgrade_table(old).to_pylist()
    assert all(upgraded[name] is None for name in V4_COLUMNS)
    assert (upgraded["top1_adaptive_bn"], upgraded["top1_after"], upgraded["schema_version"]) == (0.5, 0.93, 4)


def test_rung_and_placement_columns_are_validated(make_ok):
    ok = make_ok(trial_id="r", rung=1, stopped_early=True, steps_trained=30, gpu_ids="[0]", device="cpu",
                 rungs_json='[{"rung": 0, "steps": 10, "top1": 0.5}, {"rung": 1, "steps": 30, "top1": 0.6}]')
    ok.validate()
    bad = make_ok(trial_id="b", rung=-1, rungs_json='{"rung": 0}', gpu_ids="0")
    with pytest.raises(ResultStoreError) as err:
        bad.validate()
    assert "rung: must be >= 0" in str(err.value) and "rungs_json: must be a JSON list" in str(err.value)
    assert "gpu_ids: must be a JSON list" in str(err.value)
