"""``ResultStore``: every trial of every experiment as a hive-partitioned Parquet dataset.

Layout: ``root/experiment=<e>/method=<m>/part-<uuid>.parquet``. Each :meth:`ResultStore.append`
adds new files and never rewrites one, so any number of processes may append at once.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from multi_agent_pruning.exceptions import ResultStoreError
from multi_agent_pruning.results._files import (describe_os_error, list_part_files, partition_dir,
                                                partition_value, write_atomically)
from multi_agent_pruning.results._loading import (REPLACES_KEY, VANISHED, LoadedFile, SkippedFile, load_files,
                                                  without_replaced)
from multi_agent_pruning.results._validate import check_row
from multi_agent_pruning.results.schema import RESULT_SCHEMA, STAGES, STATUSES
from multi_agent_pruning.results.trial import TrialResult

__all__ = ["ResultStore", "ReadReport", "SkippedFile", "SkippedRow"]

logger = logging.getLogger(__name__)

_SORT_KEYS = [(name, "ascending") for name in ("experiment", "method", "run", "iteration", "trial_id")]


@dataclass(frozen=True)
class SkippedRow:
    """A stored row that breaks the schema's rules (an edited or foreign file), and why."""

    path: Path
    trial_id: Any
    problems: list[str]


@dataclass
class ReadReport:
    """What the last read of a store loaded and skipped."""

    files_read: int = 0
    rows: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)
    invalid_rows: list[SkippedRow] = field(default_factory=list)


class ResultStore:
    """The Parquet result store under ``root`` (created on first append).

    Args:
        root: Folder of the dataset.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.last_read_report = ReadReport()

    def __repr__(self) -> str:
        return f"ResultStore({str(self.root)!r})"

    # -- writing ---------------------------------------------------------------------------
    def append(self, results: TrialResult | Iterable[TrialResult]) -> list[Path]:
        """Validates ``results`` and writes them as new files, atomically, one per partition.

        Returns:
            The files written (none for an empty list).

        Raises:
            ResultStoreError: A value breaks the schema (the message names the field), or the
                files could not be written (nothing is left behind).
        """
        batch = [results] if isinstance(results, TrialResult) else list(results)
        for index, result in enumerate(batch):
            if not isinstance(result, TrialResult):
                raise ResultStoreError(f"results[{index}] must be a TrialResult, got {type(result).__name__}")
            result.validate()
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for result in batch:
            groups.setdefault((result.experiment, result.method), []).append(result.to_row())
        targets = [(partition_dir(self.root, exp, method), pa.Table.from_pylist(rows, schema=RESULT_SCHEMA))
                   for (exp, method), rows in groups.items()]
        written = write_atomically(targets) if targets else []
        logger.debug("Appended %d trial result(s) to %s", len(batch), self.root)
        return written

    def compact(self, experiment: str) -> int:
        """Merges each method's files of ``experiment`` into one file; returns files removed.

        The merged file records the names it replaces, so readers never count a row twice,
        even if the process dies before the old files are deleted. Unreadable files are left
        alone. Appends may run meanwhile; two compactions of one folder may not.
        """
        removed = 0
        for method_dir in sorted(partition_dir(self.root, experiment).glob("method=*")):
            removed += self._compact_folder(method_dir)
        return removed

    def _compact_folder(self, folder: Path) -> int:
        lock = folder / ".compact.lock"
        try:
            os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            raise ResultStoreError(f"{folder} is being compacted by another process "
                                   f"(delete {lock} if that process died)") from None
        except OSError as exc:
            raise ResultStoreError(f"Cannot compact {folder}: {describe_os_error(exc)}") from exc
        try:
            loaded, _ = load_files(sorted(folder.glob("part-*.parquet")))
            if len(loaded) < 2:
                return 0
            merged = pa.concat_tables([item.table for item in without_replaced(loaded)])
            names = sorted(item.path.name for item in loaded)
            metadata = {**(merged.schema.metadata or {}), REPLACES_KEY: json.dumps(names).encode()}
            write_atomically([(folder, merged.replace_schema_metadata(metadata))])
            for item in loaded:
                item.path.unlink(missing_ok=True)
            return len(loaded)
        finally:
            lock.unlink(missing_ok=True)

    # -- reading ---------------------------------------------------------------------------
    def read(self, experiment: str | None = None, method: str | None = None,
             status: str | None = None, stage: str | None = "search") -> pa.Table:
        """All rows matching the filters, upgraded to ``RESULT_SCHEMA``.

        ``stage`` is ``"search"`` by default: the search's trials, which every statistic, report
        and resume reads; ``"final"`` gives the final recoveries (``mapruner finetune``), None
        both.

        Unreadable files, and rows that break the schema's rules (a top-1 of 1.5, a
        ``strategy_json`` that is not JSON: the store never writes such rows, so the file was
        edited), are skipped, logged as a warning and listed in :attr:`last_read_report`; the
        rest still loads. A missing or empty root gives an empty table with the schema.
        """
        if status is not None and status not in STATUSES:
            raise ResultStoreError(f"status filter must be one of {', '.join(STATUSES)}, got {status!r}")
        if stage is not None and stage not in STAGES:
            raise ResultStoreError(f"stage filter must be one of {', '.join(STAGES)}, got {stage!r}")
        for _attempt in range(3):
            files = list_part_files(self.root, experiment, method)
            loaded, skipped = load_files(files)
            # A file that vanished was merged by a concurrent compact(): list again.
            if not any(s.reason == VANISHED for s in skipped):
                break
        invalid: list[SkippedRow] = []
        tables = [_valid_rows(item, invalid) for item in without_replaced(loaded)]
        table = pa.concat_tables(tables) if tables else RESULT_SCHEMA.empty_table()
        table = _filter(table, experiment=experiment, method=method, status=status, stage=stage).sort_by(_SORT_KEYS)
        self.last_read_report = ReadReport(files_read=len(loaded), rows=table.num_rows, skipped=skipped,
                                           invalid_rows=invalid)
        if skipped:
            logger.warning("Skipped %d unreadable result file(s) under %s: %s", len(skipped), self.root,
                           "; ".join(f"{s.path} ({s.reason})" for s in skipped))
        if invalid:
            logger.warning("Skipped %d invalid result row(s) under %s: %s", len(invalid), self.root,
                           "; ".join(f"trial {r.trial_id!r} in {r.path} ({'; '.join(r.problems[:3])})"
                                     for r in invalid[:5]))
        return table

    def to_pandas(self, experiment: str | None = None, method: str | None = None,
                  status: str | None = None, stage: str | None = "search") -> Any:
        """:meth:`read` as a pandas DataFrame; integer and boolean columns keep nullable dtypes."""
        import pandas as pd

        mapping = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
        return self.read(experiment, method, status, stage).to_pandas(types_mapper=mapping.get)

    def rows(self, experiment: str | None = None, method: str | None = None,
             status: str | None = None, stage: str | None = "search") -> list[TrialResult]:
        """:meth:`read` as ``TrialResult`` objects."""
        return [TrialResult.from_row(row) for row in self.read(experiment, method, status, stage).to_pylist()]

    def count(self, experiment: str | None = None, method: str | None = None, status: str | None = None,
              stage: str | None = "search") -> int:
        """Number of rows matching the filters."""
        return self.read(experiment, method, status, stage).num_rows

    def experiments(self) -> list[str]:
        """Names of the experiments that have data files, sorted."""
        return sorted({partition_value(path.parent.parent) for path in list_part_files(self.root)})

    def trial_ids(self, experiment: str) -> set[str]:
        """Trial ids of every row (any status, any stage) of ``experiment``."""
        return set(self.read(experiment, stage=None).column("trial_id").to_pylist())

    def duckdb_query(self, sql: str, experiment: str | None = None, method: str | None = None,
                     status: str | None = None, stage: str | None = "search") -> pa.Table:
        """Runs ``sql`` with the (filtered) rows registered as the DuckDB table ``trials``.

        Raises:
            ResultStoreError: duckdb is not installed.
        """
        try:
            import duckdb
        except ImportError:
            raise ResultStoreError("duckdb_query needs the duckdb package: pip install duckdb "
                                   "(it is part of the dev extras)") from None
        table = self.read(experiment, method, status, stage)
        connection = duckdb.connect()
        try:
            connection.register("trials", table)
            relation = connection.sql(sql)
            if relation is None:
                return pa.table({})
            return relation.to_arrow_table() if hasattr(relation, "to_arrow_table") else relation.arrow()
        finally:
            connection.close()


def _valid_rows(item: LoadedFile, invalid: list[SkippedRow]) -> pa.Table:
    """``item``'s rows that pass :func:`check_row`; the others are added to ``invalid``."""
    keep = []
    for index, row in enumerate(item.table.to_pylist()):
        problems = check_row(row)
        if problems:
            invalid.append(SkippedRow(item.path, row.get("trial_id"), problems))
        else:
            keep.append(index)
    return item.table if len(keep) == item.table.num_rows else item.table.take(keep)


def _filter(table: pa.Table, **equal: str | None) -> pa.Table:
    for name, value in equal.items():
        if value is not None:
            table = table.filter(pc.equal(table.column(name), value))
    return table
