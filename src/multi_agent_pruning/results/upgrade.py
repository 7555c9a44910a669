"""Reading tables written with older schema versions.

Each schema bump ``N -> N+1`` registers one function that turns a version-N table into a
version-(N+1) table (rename, add null columns, convert units...). :func:`upgrade_table` groups
rows by their ``schema_version`` column, chains the functions up to :data:`SCHEMA_VERSION` and
casts the result to exactly :data:`RESULT_SCHEMA`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import pyarrow as pa
import pyarrow.compute as pc

from multi_agent_pruning.exceptions import ResultStoreError
from multi_agent_pruning.results.schema import RESULT_SCHEMA, SCHEMA_VERSION
from multi_agent_pruning.utils.registry import Registry

__all__ = ["UPGRADES", "register_upgrade", "upgrade_table", "conform_table", "rename_columns",
           "add_null_columns"]

Upgrade = Callable[[pa.Table], pa.Table]

#: Upgrade functions keyed by the version they read, as a string ("0" upgrades 0 -> 1).
UPGRADES: Registry[Upgrade] = Registry("schema upgrade")


def register_upgrade(from_version: int) -> Callable[[Upgrade], Upgrade]:
    """Decorator registering the upgrade of tables from ``from_version`` to ``from_version + 1``."""
    return UPGRADES.register(str(from_version))


def rename_columns(table: pa.Table, renames: Mapping[str, str]) -> pa.Table:
    """``table`` with columns renamed ``old -> new``; a missing old name is an error."""
    missing = [old for old in renames if old not in table.column_names]
    if missing:
        raise ResultStoreError(f"Cannot rename missing column(s): {', '.join(missing)}")
    return table.rename_columns([renames.get(name, name) for name in table.column_names])


def add_null_columns(table: pa.Table, fields: Iterable[pa.Field]) -> pa.Table:
    """``table`` with an all-null column appended for each field it lacks."""
    for fld in fields:
        if fld.name not in table.column_names:
            table = table.append_column(fld.with_nullable(True), pa.nulls(table.num_rows, fld.type))
    return table


def conform_table(table: pa.Table) -> pa.Table:
    """``table`` cast to exactly ``RESULT_SCHEMA`` (column order, types, metadata).

    Raises:
        ResultStoreError: A column is missing, cannot be cast, or is null where it may not be.
    """
    missing = [name for name in RESULT_SCHEMA.names if name not in table.column_names]
    if missing:
        raise ResultStoreError(f"Table lacks column(s) of schema version {SCHEMA_VERSION}: {', '.join(missing)}")
    arrays = []
    for fld in RESULT_SCHEMA:
        try:
            column = table.column(fld.name).cast(fld.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ResultStoreError(f"Column {fld.name!r} cannot be read as {fld.type}: {exc}") from None
        if not fld.nullable and column.null_count:
            raise ResultStoreError(f"Column {fld.name!r} has {column.null_count} null value(s) but may not be null")
        arrays.append(column)
    return pa.Table.from_arrays(arrays, schema=RESULT_SCHEMA)


def upgrade_table(table: pa.Table) -> pa.Table:
    """Upgrades a results table of any known schema version to the current one.

    Args:
        table: Rows with a ``schema_version`` column; several versions may be mixed.

    Returns:
        The rows (grouped by version, oldest first) as a table of ``RESULT_SCHEMA``.

    Raises:
        ResultStoreError: No ``schema_version`` column, a version newer than this package, or
            a missing upgrade step.
    """
    if "schema_version" not in table.column_names:
        raise ResultStoreError("Not a trial results table: it has no 'schema_version' column")
    versions = pc.unique(table.column("schema_version")).to_pylist()
    if None in versions:
        raise ResultStoreError("Column 'schema_version' has null values")
    if versions == [SCHEMA_VERSION]:
        return conform_table(table)
    parts = [_upgrade_from(table.filter(pc.equal(table.column("schema_version"), v)), v) for v in sorted(versions)]
    return pa.concat_tables(parts)


def _upgrade_from(table: pa.Table, version: int) -> pa.Table:
    if version > SCHEMA_VERSION:
        raise ResultStoreError(
            f"Results written with schema version {version}, newer than this package's "
            f"{SCHEMA_VERSION}; upgrade multi_agent_pruning to read them")
    while version < SCHEMA_VERSION:
        if str(version) not in UPGRADES:
            raise ResultStoreError(f"No upgrade registered from schema version {version} to {version + 1}")
        table = UPGRADES.get(str(version))(table)
        version += 1
        table = _set_version(table, version)
    return conform_table(table)


def _set_version(table: pa.Table, version: int) -> pa.Table:
    column = pa.array([version] * table.num_rows, pa.int64())
    if "schema_version" in table.column_names:
        return table.set_column(table.column_names.index("schema_version"), "schema_version", column)
    return table.append_column("schema_version", column)


@register_upgrade(1)
def _add_base_top1(table: pa.Table) -> pa.Table:
    """Version 2 added ``base_top1`` (the dense model's top-1); version-1 rows have none."""
    return add_null_columns(table, [RESULT_SCHEMA.field("base_top1")])


@register_upgrade(2)
def _add_stage(table: pa.Table) -> pa.Table:
    """Version 3 added ``stage`` (every earlier row is a search trial), ``source_trial_id`` and
    ``recovery_epochs`` (null on search rows), and ``top1_adaptive_bn`` (never measured before)."""
    if "stage" not in table.column_names:
        table = table.append_column(RESULT_SCHEMA.field("stage"), pa.array(["search"] * table.num_rows, pa.string()))
    return add_null_columns(table, [RESULT_SCHEMA.field(name) for name in
                                    ("source_trial_id", "recovery_epochs", "top1_adaptive_bn")])


@register_upgrade(3)
def _add_fidelity_and_placement(table: pa.Table) -> pa.Table:
    """Version 4 added the multi-fidelity columns (``steps_trained``, ``rung``, ``stopped_early``,
    ``rungs_json``) and where a trial ran (``node_id``, ``node_ip``, ``gpu_ids``, ``device``);
    none was recorded before."""
    return add_null_columns(table, [RESULT_SCHEMA.field(name) for name in
                                    ("steps_trained", "rung", "stopped_early", "rungs_json", "node_id", "node_ip",
                                     "gpu_ids", "device")])
