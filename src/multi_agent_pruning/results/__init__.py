"""The results table: one Arrow row per trial (ok, failed or rejected) in a Parquet dataset.

See ``docs/results-schema.md`` for every column and the versioning rule.
"""

from multi_agent_pruning.results.schema import RESULT_SCHEMA, SCHEMA_VERSION, STATUSES, schema_markdown
from multi_agent_pruning.results.targets import (TargetKey, add_target_columns, point_target, row_target,
                                                strategy_target, target_key)
from multi_agent_pruning.results.store import ReadReport, ResultStore, SkippedFile
from multi_agent_pruning.results.trial import TrialResult, current_versions, strategy_columns
from multi_agent_pruning.results.upgrade import register_upgrade, upgrade_table

__all__ = [
    "TrialResult",
    "ResultStore",
    "ReadReport",
    "SkippedFile",
    "RESULT_SCHEMA",
    "SCHEMA_VERSION",
    "STATUSES",
    "current_versions",
    "strategy_columns",
    "register_upgrade",
    "upgrade_table",
    "schema_markdown",
    "TargetKey",
    "add_target_columns",
    "point_target",
    "row_target",
    "strategy_target",
    "target_key",
]
