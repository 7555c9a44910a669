"""ResultStore under bad input and bad disks: corrupt files, unwritable roots, full disks."""

from __future__ import annotations

import errno
import logging
import os

import pytest

from multi_agent_pruning.exceptions import ResultStoreError
from multi_agent_pruning.results import ResultStore


def _files(root):
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.fixture
def filled(tmp_path, make_ok):
    """A store with four files of 2, 3, 4 and 1 rows."""
    store = ResultStore(tmp_path / "store")
    paths = []
    for batch, size in enumerate((2, 3, 4, 1)):
        paths += store.append([make_ok(trial_id=f"b{batch}-{i}") for i in range(size)])
    return store, paths


def test_corrupt_files_are_skipped_and_reported(filled, caplog):
    store, paths = filled
    truncated, garbage = paths[1], paths[2]
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    garbage.write_bytes(b"this is not parquet at all" * 10)
    with caplog.at_level(logging.WARNING, logger="multi_agent_pruning.results.store"):
        table = store.read()
    assert table.num_rows == 3
    assert sorted(table.column("trial_id").to_pylist()) == ["b0-0", "b0-1", "b3-0"]
    report = store.last_read_report
    assert report.files_read == 2 and report.rows == 3
    assert sorted(s.path for s in report.skipped) == sorted([truncated, garbage])
    assert all(s.reason.startswith("ArrowInvalid") for s in report.skipped)
    assert "Skipped 2 unreadable result file(s)" in caplog.text and garbage.name in caplog.text
    assert store.count() == 3 and len(store.rows()) == 3


def test_file_without_schema_version_is_skipped_with_reason(filled):
    import pyarrow as pa
    import pyarrow.parquet as pq

    store, paths = filled
    pq.write_table(pa.table({"x": [1, 2]}), paths[0].parent / "part-foreign.parquet")
    assert store.count() == 10
    (skipped,) = store.last_read_report.skipped
    assert skipped.path.name == "part-foreign.parquet"
    assert "has no 'schema_version' column" in skipped.reason


def test_root_under_a_regular_file_raises_and_keeps_nothing(tmp_path, make_ok):
    blocker = tmp_path / "plain-file"
    blocker.write_text("not a folder")
    store = ResultStore(blocker / "runs")
    with pytest.raises(ResultStoreError) as info:
        store.append(make_ok())
    message = str(info.value)
    assert "Could not write 1 trial result(s)" in message and "Not a directory" in message
    assert "Nothing was written" in message
    assert blocker.read_text() == "not a folder"
    with pytest.raises(ResultStoreError, match="is not a directory"):
        ResultStore(blocker).read()


def test_partition_path_taken_by_a_file_raises(filled, make_ok):
    store, paths = filled
    (store.root / "experiment=other").write_text("x")
    with pytest.raises(ResultStoreError, match="Could not write 1 trial result"):
        store.append(make_ok(experiment="other"))
    assert store.count(experiment="exp-a") == 10


def test_disk_full_on_rename_leaves_earlier_rows_and_no_partial_file(filled, make_ok, monkeypatch):
    store, paths = filled
    before = {p: p.read_bytes() for p in _files(store.root)}

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(ResultStoreError, match=r"disk full \(No space left on device\)"):
        store.append([make_ok(trial_id="late")])
    monkeypatch.undo()
    assert {p: p.read_bytes() for p in _files(store.root)} == before
    assert store.count() == 10 and "late" not in store.trial_ids("exp-a")


def test_disk_full_while_writing_removes_the_temp_file(filled, make_ok, monkeypatch):
    store, paths = filled
    before = _files(store.root)

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(ResultStoreError, match="disk full") as info:
        store.append(make_ok(trial_id="late", method="taylor"))
    monkeypatch.undo()
    assert isinstance(info.value.__cause__, OSError)
    assert _files(store.root) == before
    assert store.count() == 10


def test_multi_partition_append_is_all_or_nothing(filled, make_ok, monkeypatch):
    store, paths = filled
    before = _files(store.root)
    real_replace = os.replace
    calls = []

    def fail_second(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_second)
    with pytest.raises(ResultStoreError, match="Input/output error"):
        store.append([make_ok(trial_id="p1", method="m1"), make_ok(trial_id="p2", method="m2")])
    monkeypatch.undo()
    assert len(calls) == 2
    assert _files(store.root) == before
    assert store.count() == 10


def test_validation_error_names_the_field_and_writes_nothing(filled, make_ok):
    store, paths = filled
    before = _files(store.root)
    with pytest.raises(ResultStoreError, match=r"trial_id='bad'.*status: must be one of ok, failed, rejected"):
        store.append([make_ok(trial_id="fine"), make_ok(trial_id="bad", status="done")])
    with pytest.raises(ResultStoreError, match=r"results\[1\] must be a TrialResult, got dict"):
        store.append([make_ok(), {"trial_id": "x"}])
    with pytest.raises(ResultStoreError, match="top5_after: must be a fraction in \\[0, 1\\] \\(got 99.5\\)"):
        store.append(make_ok(top5_after=99.5))
    assert _files(store.root) == before
