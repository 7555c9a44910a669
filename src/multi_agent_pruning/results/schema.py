"""The Arrow schema of the results table: one row per trial, ok, failed or rejected.

Every column is declared once, in :data:`COLUMNS`, with its type, unit, meaning and when it is
null. :data:`RESULT_SCHEMA`, the field documentation stored in every Parquet file and the
column table of ``docs/results-schema.md`` are all derived from that one list.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

__all__ = ["SCHEMA_VERSION", "STAGES", "STATUSES", "TARGET_KINDS", "COLUMNS", "ColumnSpec", "RESULT_SCHEMA",
           "schema_markdown"]

#: Bumped whenever a column is added, removed, renamed or changes meaning or type; every bump
#: comes with an upgrade function from the previous version (see ``results.upgrade``).
SCHEMA_VERSION = 4

STATUSES = ("ok", "failed", "rejected")
#: ``search``: a trial of a search; ``final``: the final recovery of a searched strategy.
STAGES = ("search", "final")
TARGET_KINDS = ("macs", "params")

_STR, _INT, _FLOAT, _BOOL = pa.string(), pa.int64(), pa.float64(), pa.bool_()
_TIME = pa.timestamp("us", tz="UTC")

_NOT_MEASURED = "not measured (trial failed or was rejected before this stage)"
_NO_STRATEGY = "the strategy does not set it"


@dataclass(frozen=True)
class ColumnSpec:
    """One column of the results table.

    Attributes:
        name: Column name, equal to the ``TrialResult`` attribute.
        type: Arrow type.
        unit: Unit of the values ("" for none).
        doc: What the value means.
        null_when: When the value is null; None means the column is never null.
    """

    name: str
    type: pa.DataType
    unit: str
    doc: str
    null_when: str | None = None


COLUMNS: tuple[ColumnSpec, ...] = (
    # -- identifiers ---------------------------------------------------------------------
    ColumnSpec("experiment", _STR, "", "Experiment name; hive partition key `experiment=`."),
    ColumnSpec("run", _INT, "", "Repetition index of the experiment (0, 1, ... for --num-runs)."),
    ColumnSpec("method", _STR, "", "Search method (multi_agent, magnitude_l2, optuna_tpe, ...); "
               "hive partition key `method=`."),
    ColumnSpec("model", _STR, "", "Model short name as given to the model registry."),
    ColumnSpec("dataset", _STR, "", "Dataset name as given to the dataset registry."),
    ColumnSpec("seed", _INT, "", "Random seed of the trial."),
    ColumnSpec("trial_id", _STR, "", "Identifier of the trial, unique within an experiment."),
    ColumnSpec("iteration", _INT, "", "Search iteration (batch of proposals) that produced the trial; for Optuna methods the Optuna trial number."),
    ColumnSpec("stage", _STR, "", "`search`: a trial of the search (a short fine-tune ranks the strategy); "
               "`final`: the final recovery of a searched strategy by `mapruner finetune` (re-pruned from "
               "the dense model, recovered for `recovery_epochs`). Readers return search rows unless asked."),
    ColumnSpec("source_trial_id", _STR, "", "For a `final` row: the search trial whose strategy was "
               "recovered (its `top1_after` is the proxy accuracy).", "a search row"),
    ColumnSpec("recovery_epochs", _INT, "epochs", "For a `final` row: the epochs of the recovery that ended "
               "(all of them when the row is ok).", "a search row"),
    # -- strategy ------------------------------------------------------------------------
    ColumnSpec("strategy_json", _STR, "", "The full strategy as canonical JSON (sorted keys); "
               "`{}` when the trial failed before a strategy existed."),
    ColumnSpec("importance", _STR, "", "Channel importance criterion.", _NO_STRATEGY),
    ColumnSpec("global_pruning", _BOOL, "", "Channels ranked across layers (true) or per layer.", _NO_STRATEGY),
    ColumnSpec("isomorphic", _BOOL, "", "Global ranking only among isomorphic groups.", _NO_STRATEGY),
    ColumnSpec("round_to", _INT, "channels", "Kept channel counts are multiples of this.",
               "no rounding, or " + _NO_STRATEGY),
    ColumnSpec("head_pruning_ratio", _FLOAT, "fraction", "Fraction of attention heads removed.", _NO_STRATEGY),
    ColumnSpec("learning_rate", _FLOAT, "", "Peak AdamW learning rate of the recovery.", _NO_STRATEGY),
    ColumnSpec("finetune_steps", _INT, "steps", "Recovery optimiser steps.",
               "the recovery is set in epochs, or " + _NO_STRATEGY),
    ColumnSpec("kd_weight", _FLOAT, "", "Weight of the distillation loss (0: no distillation).", _NO_STRATEGY),
    ColumnSpec("group_multipliers_json", _STR, "", "Per group-kind multipliers of the pruning "
               "ratio as canonical JSON object.", _NO_STRATEGY),
    # -- target --------------------------------------------------------------------------
    ColumnSpec("target_kind", _STR, "", "What the budget counts: `macs` or `params`."),
    ColumnSpec("target_value", _FLOAT, "MACs or params", "Absolute budget to keep "
               "(MACs or params per `target_kind`).", "the dense size was not measured and "
               "the strategy gives a reduction"),
    ColumnSpec("target_reduction", _FLOAT, "fraction", "Fraction of the dense MACs/params to remove.",
               "the strategy gives an absolute budget"),
    # -- size ----------------------------------------------------------------------------
    ColumnSpec("base_macs", _FLOAT, "MACs", "MACs of the dense model, one image.", "dense model not measured"),
    ColumnSpec("base_params", _INT, "params", "Parameters of the dense model.", "dense model not measured"),
    ColumnSpec("base_top1", _FLOAT, "fraction", "Top-1 accuracy of the dense model on the evaluation set, "
               "measured once per run before the trials, as the trials measure theirs (every row of a run "
               "has the same value).", "not measured (the row was written without its run's context, the "
               "dense evaluation failed, or the table predates schema version 2)"),
    ColumnSpec("macs", _FLOAT, "MACs", "MACs of the pruned model, one image.", _NOT_MEASURED),
    ColumnSpec("params", _INT, "params", "Parameters of the pruned model.", _NOT_MEASURED),
    ColumnSpec("macs_reduction", _FLOAT, "fraction", "1 - macs / base_macs.", _NOT_MEASURED),
    ColumnSpec("params_reduction", _FLOAT, "fraction", "1 - params / base_params.", _NOT_MEASURED),
    ColumnSpec("target_error", _FLOAT, "fraction", "(achieved - target_value) / target_value for "
               "the counted quantity; positive means over budget.", _NOT_MEASURED),
    # -- accuracy ------------------------------------------------------------------------
    ColumnSpec("top1_before", _FLOAT, "fraction", "Top-1 accuracy after pruning, before fine-tuning.",
               _NOT_MEASURED + ", or evaluation before fine-tuning disabled"),
    ColumnSpec("top5_before", _FLOAT, "fraction", "Top-5 accuracy after pruning, before fine-tuning.",
               _NOT_MEASURED + ", or evaluation before fine-tuning disabled"),
    ColumnSpec("top1_adaptive_bn", _FLOAT, "fraction", "Top-1 accuracy after pruning with the BatchNorm "
               "statistics re-estimated on `evaluation.adaptive_bn_batches` training batches, before "
               "fine-tuning (adaptive BN, EagleEye).", "adaptive BN off, the model has no BatchNorm, " + _NOT_MEASURED),
    ColumnSpec("top1_after", _FLOAT, "fraction", "Top-1 accuracy after fine-tuning.", _NOT_MEASURED),
    ColumnSpec("top5_after", _FLOAT, "fraction", "Top-5 accuracy after fine-tuning.", _NOT_MEASURED),
    ColumnSpec("loss_after", _FLOAT, "nats", "Mean cross-entropy on the evaluation set after "
               "fine-tuning; may be NaN/inf when training diverged.", _NOT_MEASURED),
    ColumnSpec("latency_ms", _FLOAT, "ms", "Wall time of one forward pass of the pruned model "
               "as measured by the evaluation stage.", _NOT_MEASURED + ", or latency not requested"),
    # -- multi-fidelity (search.scheduler: asha) -----------------------------------------
    ColumnSpec("steps_trained", _INT, "steps", "Fine-tuning optimiser steps the pruned model got in this trial, "
               "all rungs together (the compute a search spent on it).", _NOT_MEASURED),
    ColumnSpec("rung", _INT, "", "Last rung of a multi-fidelity search the trial reached (0-based); `top1_after` "
               "is its accuracy there. Rung k trains `reduction_factor**k` times the strategy's budget in all.",
               "a one-budget (FIFO) search, or a final row"),
    ColumnSpec("stopped_early", _BOOL, "", "The scheduler stopped the trial at `rung` (not promoted to the next "
               "rung); a result, not a failure.", "a one-budget (FIFO) search, or a final row"),
    ColumnSpec("rungs_json", _STR, "", "Each rung the trial reached as a JSON list of "
               "`{rung, budget, steps, top1, top5, loss, seconds, session}` (`budget`: multiple of the strategy's "
               "fine-tune budget; `steps`: cumulative; `seconds`: that rung's fine-tune; `session`: 0, or how many "
               "times the trial had continued from its checkpoint after its worker died).",
               "a one-budget (FIFO) search, or a final row"),
    # -- placement ---------------------------------------------------------------------
    ColumnSpec("node_id", _STR, "", "Ray node id of the worker that ran the trial.",
               "not run in a Ray worker (or rejected)"),
    ColumnSpec("node_ip", _STR, "", "IP address of that Ray node.", "not run in a Ray worker (or rejected)"),
    ColumnSpec("gpu_ids", _STR, "", "JSON list of the GPU ids Ray assigned to the trial (`[]` for none); with a "
               "fractional share, trials sharing a GPU have the same id.", "not run in a Ray worker (or rejected)"),
    ColumnSpec("device", _STR, "", "Device the trial computed on (`cpu`, `cuda:0`, ...); `cpu` with non-empty "
               "`gpu_ids` means the GPU Ray assigned does not exist on that node (a simulated one).",
               "rejected, or an invalid `hardware.device`"),
    # -- time and cost -------------------------------------------------------------------
    ColumnSpec("seconds_total", _FLOAT, "s", "Wall time of the whole trial.", "the trial never ran"),
    ColumnSpec("seconds_prune", _FLOAT, "s", "Wall time of the pruning stage.", _NOT_MEASURED),
    ColumnSpec("seconds_finetune", _FLOAT, "s", "Wall time of the fine-tuning stage.", _NOT_MEASURED),
    ColumnSpec("seconds_evaluate", _FLOAT, "s", "Wall time of the evaluation stage.", _NOT_MEASURED),
    ColumnSpec("llm_prompt_tokens", _INT, "tokens", "LLM prompt tokens attributed to this trial.",
               "the strategy did not come from an LLM"),
    ColumnSpec("llm_completion_tokens", _INT, "tokens", "LLM completion tokens attributed to this trial.",
               "the strategy did not come from an LLM"),
    # -- outcome and provenance ----------------------------------------------------------
    ColumnSpec("status", _STR, "", "`ok`, `failed` (an error stopped the trial) or `rejected` "
               "(the strategy was refused before running)."),
    ColumnSpec("error", _STR, "", "Error message, or the rejection reasons.", "status is ok"),
    ColumnSpec("error_type", _STR, "", "Exception class name of the error.", "status is ok, or the error "
               "was given as text"),
    ColumnSpec("custom_metrics_json", _STR, "", "Registered custom metrics as a JSON object.",
               "no custom metric was measured"),
    ColumnSpec("versions_json", _STR, "", "Versions of torch, timm, torch_pruning, ray and "
               "multi_agent_pruning (JSON object, null for a package not installed)."),
    ColumnSpec("started_at", _TIME, "UTC", "When the trial started.", "the trial never started"),
    ColumnSpec("finished_at", _TIME, "UTC", "When the trial ended (or was rejected).", "not recorded"),
    ColumnSpec("host", _STR, "", "Host name of the process that built the row.", "unknown"),
    ColumnSpec("schema_version", _INT, "", "Schema version the row was written with."),
)


def _field(spec: ColumnSpec) -> pa.Field:
    metadata = {"doc": spec.doc, "unit": spec.unit, "null_when": spec.null_when or "never"}
    return pa.field(spec.name, spec.type, nullable=spec.null_when is not None, metadata=metadata)


RESULT_SCHEMA: pa.Schema = pa.schema(
    [_field(spec) for spec in COLUMNS],
    metadata={"multi_agent_pruning.schema_version": str(SCHEMA_VERSION)},
)


def schema_markdown() -> str:
    """The column table of ``docs/results-schema.md`` (Markdown), generated from :data:`COLUMNS`."""
    lines = ["| column | type | unit | meaning | null when |", "|---|---|---|---|---|"]
    for spec in COLUMNS:
        unit = spec.unit or "-"
        lines.append(f"| `{spec.name}` | {spec.type} | {unit} | {spec.doc} | {spec.null_when or 'never'} |")
    return "\n".join(lines) + "\n"
