"""ResultStore: layout, round trips, readers (pyarrow, pandas, DuckDB), concurrency, compaction."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from multi_agent_pruning.exceptions import ResultStoreError
from multi_agent_pruning.results import RESULT_SCHEMA, ResultStore


def _files(root):
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_round_trip_of_ok_and_failed_rows_keeps_every_field(tmp_path, make_ok, make_failed):
    store = ResultStore(tmp_path / "runs")
    ok, failed = make_ok(), make_failed()
    store.append([ok, failed])
    rows = {row.trial_id: row for row in store.rows()}
    assert rows["t-001"].to_row() == ok.to_row()
    assert rows["t-002"].to_row() == failed.to_row()
    assert rows["t-002"].macs is None and rows["t-002"].error_type == "RuntimeError"
    table = store.read()
    assert table.schema.equals(RESULT_SCHEMA, check_metadata=True)
    assert table.column("status").to_pylist() == ["ok", "failed"]  # sorted by method: multi_agent < taylor


def test_layout_is_hive_partitioned_with_one_file_per_partition(tmp_path, make_ok):
    store = ResultStore(tmp_path)
    written = store.append([make_ok(trial_id="a"), make_ok(trial_id="b"), make_ok(method="a/b c", trial_id="c")])
    names = sorted(str(p.relative_to(tmp_path)) for p in written)
    assert len(names) == 2
    assert re.fullmatch(r"experiment=exp-a/method=a%2Fb%20c/part-[0-9a-f]{32}\.parquet", names[0])
    assert re.fullmatch(r"experiment=exp-a/method=multi_agent/part-[0-9a-f]{32}\.parquet", names[1])
    assert _files(tmp_path) == sorted(written)
    assert store.count(method="a/b c") == 1 and store.count(method="multi_agent") == 2
    assert store.append([]) == []


def test_external_pyarrow_dataset_reads_the_partitions_with_types(tmp_path, make_ok):
    store = ResultStore(tmp_path)
    store.append([make_ok(trial_id=str(i), run=i) for i in range(3)])
    partitioning = ds.partitioning(pa.schema([("experiment", pa.string()), ("method", pa.string())]),
                                   flavor="hive")
    table = ds.dataset(tmp_path, format="parquet", partitioning=partitioning).to_table()
    assert table.num_rows == 3
    assert table.schema.field("run").type == pa.int64()
    assert sorted(table.column("run").to_pylist()) == [0, 1, 2]
    assert set(table.column("experiment").to_pylist()) == {"exp-a"}


def test_filters_counts_experiments_and_trial_ids(tmp_path, make_ok, make_failed):
    store = ResultStore(tmp_path)
    store.append([make_ok(trial_id="a1"), make_ok(trial_id="a2", method="taylor"), make_failed(trial_id="a3")])
    store.append(make_ok(experiment="exp-b", trial_id="b1"))
    assert store.count() == 4
    assert store.count(experiment="exp-a") == 3
    assert store.count(experiment="exp-a", method="taylor") == 2
    assert store.count(status="failed") == 1
    assert store.count(experiment="missing") == 0
    assert store.experiments() == ["exp-a", "exp-b"]
    assert store.trial_ids("exp-a") == {"a1", "a2", "a3"}
    assert store.last_read_report.files_read == 2 and store.last_read_report.skipped == []
    with pytest.raises(ResultStoreError, match="status filter must be one of ok, failed, rejected, got 'done'"):
        store.read(status="done")


def test_missing_or_empty_root_reads_as_empty_table(tmp_path):
    for root in (tmp_path / "absent", tmp_path):
        store = ResultStore(root)
        table = store.read()
        assert table.num_rows == 0 and table.schema.equals(RESULT_SCHEMA)
        assert store.count() == 0 and store.experiments() == [] and store.rows() == []


def _three_methods(store, make_ok):
    store.append([make_ok(method="multi_agent", trial_id=f"m{i}", top1_after=v) for i, v in enumerate([0.9, 0.8])])
    store.append([make_ok(method="taylor", trial_id=f"t{i}", top1_after=v) for i, v in enumerate([0.5, 0.6, 0.7])])
    store.append(make_ok(method="random", trial_id="r0", top1_after=None, status="failed", error="oom"))


def test_pandas_groupby_gives_counts_and_means(tmp_path, make_ok):
    store = ResultStore(tmp_path)
    _three_methods(store, make_ok)
    frame = store.to_pandas()
    assert len(frame) == 6
    assert str(frame["run"].dtype) == "Int64" and str(frame["global_pruning"].dtype) == "boolean"
    assert str(frame["started_at"].dt.tz) == "UTC"
    means = frame.groupby("method")["top1_after"].mean()
    assert means["multi_agent"] == pytest.approx(0.85) and means["taylor"] == pytest.approx(0.6)
    assert frame.groupby("method").size().to_dict() == {"multi_agent": 2, "random": 1, "taylor": 3}


def test_duckdb_group_by_method(tmp_path, make_ok):
    pytest.importorskip("duckdb")
    store = ResultStore(tmp_path)
    _three_methods(store, make_ok)
    result = store.duckdb_query(
        "SELECT method, count(*) AS n, avg(top1_after) AS mean_top1, "
        "sum(CASE WHEN status = 'ok' THEN 1 ELSE 0 END) AS ok FROM trials GROUP BY method ORDER BY method")
    assert result.column("method").to_pylist() == ["multi_agent", "random", "taylor"]
    assert result.column("n").to_pylist() == [2, 1, 3]
    assert result.column("ok").to_pylist() == [2, 0, 3]
    mean = result.column("mean_top1").to_pylist()
    assert mean[0] == pytest.approx(0.85) and mean[1] is None and mean[2] == pytest.approx(0.6)
    only_taylor = store.duckdb_query("SELECT count(*) AS n FROM trials", method="taylor")
    assert only_taylor.column("n").to_pylist() == [3]


def test_duckdb_query_without_duckdb_says_what_to_install(tmp_path, make_ok, monkeypatch):
    store = ResultStore(tmp_path)
    store.append(make_ok())
    monkeypatch.setitem(sys.modules, "duckdb", None)
    with pytest.raises(ResultStoreError, match="duckdb_query needs the duckdb package: pip install duckdb"):
        store.duckdb_query("SELECT 1")


_WORKER = textwrap.dedent("""
    import datetime as dt, sys
    from multi_agent_pruning.results import ResultStore, TrialResult
    root, worker = sys.argv[1], int(sys.argv[2])
    for i in range(10):
        ResultStore(root).append(TrialResult(
            experiment="concurrent", run=0, method=f"m{worker % 2}", model="tiny", dataset="digits", seed=worker,
            trial_id=f"w{worker}-{i}", iteration=i, strategy_json="{}", target_kind="macs", status="ok",
            top1_after=worker / 10 + i / 1000, started_at=dt.datetime.now(dt.timezone.utc)))
""")


def test_concurrent_appends_from_four_processes(tmp_path):
    processes = [subprocess.Popen([sys.executable, "-c", _WORKER, str(tmp_path), str(w)], stderr=subprocess.PIPE)
                 for w in range(4)]
    for process in processes:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err.decode()
    store = ResultStore(tmp_path)
    table = store.read()
    assert table.num_rows == 40
    assert store.trial_ids("concurrent") == {f"w{w}-{i}" for w in range(4) for i in range(10)}
    assert store.count(method="m0") == 20 and store.count(method="m1") == 20
    files = _files(tmp_path)
    assert len(files) == 40
    assert all(re.fullmatch(r"part-[0-9a-f]{32}\.parquet", p.name) for p in files)


def test_compact_merges_files_without_losing_or_duplicating_rows(tmp_path, make_ok):
    store = ResultStore(tmp_path)
    for i in range(5):
        store.append(make_ok(trial_id=f"c{i}", top1_after=i / 10))
    store.append(make_ok(method="taylor", trial_id="solo"))
    before = store.read()
    old = {p: p.read_bytes() for p in _files(tmp_path / "experiment=exp-a" / "method=multi_agent")}
    assert store.compact("exp-a") == 5
    merged = _files(tmp_path / "experiment=exp-a" / "method=multi_agent")
    assert len(merged) == 1 and merged[0] not in old
    assert len(_files(tmp_path / "experiment=exp-a" / "method=taylor")) == 1
    assert store.read().equals(before)
    # A compaction that died before deleting the old files must not double-count them.
    for path, data in old.items():
        path.write_bytes(data)
    assert store.count() == 6
    assert store.compact("exp-a") == 6
    assert len(_files(tmp_path)) == 2 and store.read().equals(before)


def test_compact_refuses_when_another_compaction_holds_the_lock(tmp_path, make_ok):
    store = ResultStore(tmp_path)
    store.append(make_ok(trial_id="x"))
    store.append(make_ok(trial_id="y"))
    lock = tmp_path / "experiment=exp-a" / "method=multi_agent" / ".compact.lock"
    lock.touch()
    with pytest.raises(ResultStoreError, match="being compacted by another process"):
        store.compact("exp-a")
    assert store.count() == 2
