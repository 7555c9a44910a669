"""``PaperReproductionValidator``: run the paper targets where their data exists, then analyse the table."""

from __future__ import annotations

import json
import logging
import math
import os
import shlex
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from multi_agent_pruning.exceptions import ConfigurationError, ValidationError
from multi_agent_pruning.orchestrator import MultiAgentPruner
from multi_agent_pruning.orchestrator.compare import all_methods, check_methods
from multi_agent_pruning.reports import render_report_html
from multi_agent_pruning.results import RESULT_SCHEMA, ResultStore, add_target_columns
from multi_agent_pruning.stats.comparison import analyze_methods
from multi_agent_pruning.stats.frontier import analyze_frontier
from multi_agent_pruning.stats.paper_targets import PAPER_TARGETS, PaperTarget, get_paper_target
from multi_agent_pruning.stats.reproduction import compare_with_papers
from multi_agent_pruning.utils.atomic import atomic_write
from multi_agent_pruning.validation.prerequisites import missing_prerequisites

__all__ = ["PaperReproductionValidator", "Runner", "SweepRunner"]

logger = logging.getLogger(__name__)

#: ``runner(target, methods=[...], num_runs=n, output_dir=path)`` runs one target and stores its trials.
Runner = Callable[..., Any]
#: ``sweep_runner([targets], methods=[...], num_runs=n, output_dir=path)`` runs several targets of
#: one base model and dataset as one sweep (one search of their frontier) and stores the trials.
SweepRunner = Callable[..., Any]


class PaperReproductionValidator:
    """Checks our search against published pruning results (see ``stats.paper_targets``).

    Args:
        config_path: Experiment YAML used for the runs and for dataset paths; None uses defaults.
        output_dir: Where runs, the analysis and the report are written.
        results_dir: Result store to analyse in addition to any found under ``output_dir``.
        runner: Runs one target; defaults to ``MultiAgentPruner(config_path).compare_methods``.
        sweep_runner: Runs the targets of one base model and dataset as one sweep
            (``validate_all_targets(sweep=True)``); defaults to ``compare_methods`` with the
            targets as a list.
        macs_tolerance: Relative MACs distance for a row to count for a target.
        top1_tolerance: Accuracy distance (fraction) called "within tolerance" of the paper.
        seed: Seed of the bootstrap intervals.
        n_resamples: Bootstrap resamples.
        reference_accuracy: Accuracy at which the frontier area of a sweep starts counting
            (:mod:`multi_agent_pruning.stats.frontier`); 0 counts all of it.
    """

    def __init__(self, config_path: str | os.PathLike[str] | None = None,
                 output_dir: str | os.PathLike[str] = "./validation_results", *,
                 results_dir: str | os.PathLike[str] | None = None, runner: Runner | None = None,
                 sweep_runner: SweepRunner | None = None,
                 macs_tolerance: float = 0.02, top1_tolerance: float = 0.01, seed: int = 0,
                 n_resamples: int = 10_000, reference_accuracy: float = 0.0) -> None:
        self.config_path = Path(config_path) if config_path else None
        self.output_dir = Path(output_dir)
        self.results_dir = Path(results_dir) if results_dir else None
        self.runner = runner or self._compare_with_pruner
        self.sweep_runner = sweep_runner or self._compare_sweep_with_pruner
        self.macs_tolerance = macs_tolerance
        self.top1_tolerance = top1_tolerance
        self.seed = seed
        self.n_resamples = n_resamples
        if not 0.0 <= reference_accuracy < 1.0:
            raise ValidationError(f"reference_accuracy must be in [0, 1), got {reference_accuracy!r}")
        self.reference_accuracy = reference_accuracy

    # -- running ---------------------------------------------------------------------------
    def validate_all_targets(self, methods: Sequence[str] | None = None, num_runs: int = 3, *,
                             targets: Sequence[str] | None = None, sweep: bool = False) -> dict[str, dict[str, Any]]:
        """Runs every target whose model and dataset are available; skips the others with the reason.

        Args:
            methods: Methods to compare (default: every method, as ``compare_methods``).
            num_runs: Repetitions per method.
            targets: Target names to run (default: all of ``PAPER_TARGETS``).
            sweep: Run the targets that share a base model and dataset (the Isomorphic Pruning
                DeiT-Base 4.2 / 2.6 / 1.2 / 0.6 G, for one) as one sweep: one profile, one
                search of their frontier and one table, with each method's trial budget split
                over them (issue 21), instead of one comparison per target. Each such target's
                entry names the sweep (``"sweep"``: the target names) and shares its ``output``;
                a target alone on its model and dataset runs as without ``sweep``.

        Returns:
            ``{target name: {"status": "skipped" | "completed" | "failed", "reason", ...}}``;
            also written to ``<output_dir>/validation_status.json``.

        Raises:
            ValidationError: An invalid request, before anything runs: ``num_runs`` is not a
                positive integer, a method or a target is unknown (the message suggests names).
                A target that cannot run here is skipped with the reason, not an error.
        """
        if isinstance(num_runs, bool) or not isinstance(num_runs, int) or num_runs < 1:
            raise ValidationError(f"num_runs must be a positive integer, got {num_runs!r}")
        try:
            chosen = [get_paper_target(name) for name in targets] if targets else list(PAPER_TARGETS)
            methods = list(all_methods() if methods is None else methods)
            if not methods:
                raise ConfigurationError("methods must name at least one method")
            check_methods(methods)
        except ConfigurationError as err:
            raise ValidationError(f"Invalid validation request: {err}") from err
        if sweep:
            outcome = self._validate_sweeps(chosen, methods, num_runs)
        else:
            outcome = {target.name: self._validate(target, methods, num_runs) for target in chosen}
        self.output_dir.mkdir(parents=True, exist_ok=True)
        _write_json(self.output_dir / "validation_status.json", outcome)
        return outcome

    def _validate(self, target: PaperTarget, methods: list[str], num_runs: int) -> dict[str, Any]:
        return self._skipped(target) or self._run([target], methods, num_runs)[target.name]

    def _validate_sweeps(self, chosen: list[PaperTarget], methods: list[str],
                         num_runs: int) -> dict[str, dict[str, Any]]:
        """``validate_all_targets(sweep=True)``: the runnable targets grouped by base model, dataset
        and kind of target (absolute MACs or a speed-up), each group of two or more as one sweep."""
        outcome: dict[str, dict[str, Any]] = {}
        groups: dict[tuple[str, str, str], list[PaperTarget]] = {}
        for target in chosen:
            skipped = self._skipped(target)
            if skipped:
                outcome[target.name] = skipped
            else:
                kind = "macs" if target.macs is not None else "speedup"
                groups.setdefault((target.base_model, target.dataset, kind), []).append(target)
        for group in groups.values():
            outcome.update(self._run(group, methods, num_runs))
        return {target.name: outcome[target.name] for target in chosen}

    def _skipped(self, target: PaperTarget) -> dict[str, Any] | None:
        """The ``skipped`` entry of a target that cannot run here, with the reasons; None if it can."""
        reasons = self.missing_prerequisites(target)
        if not reasons:
            return None
        logger.info("Skipping %s: %s", target.name, "; ".join(reasons))
        return {"status": "skipped", "reason": "; ".join(reasons)}

    def _run(self, group: list[PaperTarget], methods: list[str], num_runs: int) -> dict[str, dict[str, Any]]:
        """Runs one target (``runner``) or several as one sweep (``sweep_runner``; each entry then
        names the sweep). A failure is each target's ``failed`` entry: it must not stop the others."""
        names = [t.name for t in group]
        sweep = {"sweep": names} if len(group) > 1 else {}
        runner, what = (self.sweep_runner, group) if sweep else (self.runner, group[0])
        try:
            output = runner(what, methods=methods, num_runs=num_runs, output_dir=self.output_dir / "runs")
        except Exception as exc:  # noqa: BLE001 - see the docstring
            logger.exception("%s %s failed", "Sweep" if sweep else "Target", ", ".join(names))
            return {name: {"status": "failed", "reason": f"{type(exc).__name__}: {exc}", **sweep} for name in names}
        return {name: {"status": "completed", "reason": None, "methods": methods, "num_runs": num_runs, **sweep,
                       "output": _jsonable(output)} for name in names}

    def missing_prerequisites(self, target: PaperTarget) -> list[str]:
        """Why ``target`` cannot run here (model not registered, dataset not found); empty when it can."""
        return missing_prerequisites(target, self.config_path)

    def _compare_with_pruner(self, target: PaperTarget, *, methods: list[str], num_runs: int,
                             output_dir: Path) -> Any:
        pruner = MultiAgentPruner(self.config_path, overrides=[f"experiment.name={target.name}"])
        ratio = None if target.macs is not None else 1.0 - 1.0 / float(target.speedup)
        return pruner.compare_methods(model_name=target.base_model, dataset=target.dataset, target_ratio=ratio,
                                      target_macs=target.macs, methods=methods, num_runs=num_runs,
                                      output_dir=output_dir / target.name)

    def _compare_sweep_with_pruner(self, targets: list[PaperTarget], *, methods: list[str], num_runs: int,
                                   output_dir: Path) -> Any:
        first = targets[0]
        name = sweep_name(targets)
        pruner = MultiAgentPruner(self.config_path, overrides=[f"experiment.name={name}"])
        if first.macs is not None:
            ratios, budgets = None, [t.macs for t in targets]
        else:
            ratios, budgets = [1.0 - 1.0 / float(t.speedup) for t in targets], None
        return pruner.compare_methods(model_name=first.base_model, dataset=first.dataset, target_ratio=ratios,
                                      target_macs=budgets, methods=methods, num_runs=num_runs,
                                      output_dir=output_dir / name)

    # -- analysis --------------------------------------------------------------------------
    def result_roots(self) -> list[Path]:
        """Result stores analysed: ``results_dir`` and every store found under ``output_dir``."""
        roots = [self.results_dir] if self.results_dir else []
        if self.output_dir.is_dir():
            roots += sorted({p.parent for p in self.output_dir.rglob("experiment=*") if p.is_dir()})
        unique: dict[Path, Path] = {}
        for root in roots:
            unique.setdefault(root.resolve(), root)
        return list(unique.values())

    def _no_results(self) -> str:
        searched = ", ".join(str(root) for root in self.result_roots()) or str(self.output_dir)
        return f"No trial results under {searched}; run validate_all_targets() first or pass results_dir"

    def read_results(self) -> pa.Table:
        """All rows of all :meth:`result_roots`, concatenated."""
        tables = [ResultStore(root).read() for root in self.result_roots()]
        return pa.concat_tables(tables) if tables else RESULT_SCHEMA.empty_table()

    def analyze_results(self) -> dict[str, Any]:
        """Summary, per-experiment method comparison and statistics, the frontier of each sweep,
        and the paper reproduction table.

        ``method_comparison`` and ``statistical_tests`` compare the best top-1 of each method per
        run, which only means something at one target: they are keyed by experiment, and an
        experiment searched at several targets (a sweep) gets one entry per target instead,
        keyed ``"<experiment> @ <target>"`` (``"cmp @ remove 50% of MACs"``); its rows without
        a target (failed before they had a strategy) count in no entry. The comparison over all
        targets of a sweep is its ``frontier`` entry.

        ``frontier`` has an entry for each experiment whose rows were searched at two or more
        targets (a sweep): the targets (easiest first), per target and method the best top-1 of
        each run (``per_run``, with mean, std, range and mean MACs), per method the frontier area
        of each run and its spread, and ``area_statistics``: the paired tests across seeds of
        ``statistical_tests`` (Wilcoxon, paired t, Holm, Friedman) on the area instead of the best
        accuracy. The area is the normalised hypervolume of each run's (MACs / dense MACs, top-1)
        points above ``reference_accuracy`` (:mod:`multi_agent_pruning.stats.frontier`); each
        entry states both (``area_definition``, ``dense_macs``, ``reference_accuracy``).

        Returns:
            ``{"summary", "method_comparison", "statistical_tests", "frontier",
            "paper_reproduction"}``; also written to ``<output_dir>/analysis.json``.

        Raises:
            ValidationError: There are no trial results to analyse.
        """
        table = self.read_results()
        if table.num_rows == 0:
            raise ValidationError(self._no_results())
        frame = table.to_pandas()
        comparison: dict[str, Any] = {}
        tests: dict[str, Any] = {}
        for key, part in _comparable_groups(frame):
            report = analyze_methods(part, seed=self.seed, n_resamples=self.n_resamples)
            tests[key] = report.to_dict()
            comparison[key] = _method_table(part, report)
        analysis = {
            "summary": _summary(frame, self.result_roots()),
            "method_comparison": comparison,
            "statistical_tests": tests,
            "frontier": self._frontiers(frame),
            "paper_reproduction": compare_with_papers(frame, macs_tolerance=self.macs_tolerance,
                                                      top1_tolerance=self.top1_tolerance),
        }
        self.output_dir.mkdir(parents=True, exist_ok=True)
        _write_json(self.output_dir / "analysis.json", analysis)
        return analysis

    def _frontiers(self, frame: Any) -> dict[str, Any]:
        """``analyze_frontier`` of each experiment with two or more targets, keyed by experiment."""
        out: dict[str, Any] = {}
        for experiment, part in sorted(frame.groupby("experiment"), key=lambda item: str(item[0])):
            if len(_targets(part)[1]) < 2:
                continue
            report = analyze_frontier(part, reference_accuracy=self.reference_accuracy, seed=self.seed,
                                      n_resamples=self.n_resamples)
            ok = part[part["status"] == "ok"]["base_macs"].dropna()
            out[str(experiment)] = {
                "area_definition": _AREA_DEFINITION,
                "dense_macs": sorted(float(v) for v in ok.unique()),
                **report.to_dict(),
            }
        return out

    def generate_visualizations(self) -> list[Path]:
        """Writes the HTML report of every analysed store to ``<output_dir>/report.html``.

        Returns:
            The written paths: the report and ``analysis.json``.

        Raises:
            ValidationError: There are no trial results to show yet.
        """
        roots = self.result_roots()
        table = self.read_results()
        if table.num_rows == 0:
            raise ValidationError(self._no_results())
        self.analyze_results()
        if len(roots) == 1:
            regenerate = shlex.join(["mapruner", "report", str(roots[0])])
        else:
            regenerate = f"PaperReproductionValidator(output_dir={str(self.output_dir)!r}).generate_visualizations()"
        html = render_report_html(table, title="Paper reproduction", source=", ".join(str(r) for r in roots),
                                  regenerate=regenerate, seed=self.seed, n_resamples=self.n_resamples)
        report = self.output_dir / "report.html"
        atomic_write(report, html)
        return [report, self.output_dir / "analysis.json"]


def sweep_name(targets: Sequence[PaperTarget]) -> str:
    """The experiment (and directory) name of a sweep of paper targets: ``sweep-deit_base-imagenet``."""
    return f"sweep-{targets[0].base_model}-{targets[0].dataset}"


_AREA_DEFINITION = ("normalised hypervolume of each run's best (MACs / dense_macs, top-1) per target: the area "
                    "the points dominate in [0, 1] x [reference_accuracy, 1], divided by 1 - reference_accuracy "
                    "(1: all accuracy kept at no MACs)")


def _targets(part: Any) -> tuple[Any, list[str]]:
    """``part`` with its ``target`` columns (``add_target_columns``) and its targets' labels,
    easiest first; an experiment with two or more is a sweep."""
    labelled = add_target_columns(part)
    targets = labelled.dropna(subset=["target"]).drop_duplicates("target").sort_values("target_order")["target"]
    return labelled, list(targets)


def _comparable_groups(frame: Any) -> list[tuple[str, Any]]:
    """The rows whose best top-1 can be compared across methods: per experiment, and per target
    within an experiment searched at several (keyed ``"<experiment> @ <target>"``), easiest first."""
    groups = []
    for experiment, part in sorted(frame.groupby("experiment"), key=lambda item: str(item[0])):
        labelled, targets = _targets(part)
        if len(targets) < 2:
            groups.append((str(experiment), part))
            continue
        for target in targets:
            groups.append((f"{experiment} @ {target}", part[(labelled["target"] == target).to_numpy()]))
    return groups


def _summary(frame: Any, roots: list[Path]) -> dict[str, Any]:
    counts = frame["status"].value_counts().to_dict() if len(frame) else {}
    return {
        "stores": [str(root) for root in roots], "rows": int(len(frame)),
        **{status: int(counts.get(status, 0)) for status in ("ok", "failed", "rejected")},
        **{f"{column}s": sorted(str(v) for v in frame[column].dropna().unique())
           for column in ("experiment", "method", "model", "dataset")},
        "runs": sorted(int(v) for v in frame["run"].dropna().unique()),
    }


def _method_table(part: Any, report: Any) -> dict[str, Any]:
    table = {}
    for summary in report.summaries:
        rows = part[part["method"] == summary.method]
        table[summary.method] = {
            "trials": int(len(rows)), "ok": int((rows["status"] == "ok").sum()),
            "success_rate": float((rows["status"] == "ok").mean()), "n_runs": summary.n_runs,
            "mean_best_top1": summary.mean, "std_best_top1": summary.std,
            "ci_low": summary.ci_low, "ci_high": summary.ci_high, "max_best_top1": summary.maximum,
            "mean_seconds_total": _mean(rows["seconds_total"]),
        }
    return table


def _mean(series: Any) -> float | None:
    values = series.dropna()
    return float(values.astype(float).mean()) if len(values) else None


def _jsonable(value: Any) -> Any:
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return repr(value)


def _finite(value: Any) -> Any:
    """NaN and infinities become None so that the JSON stays standard."""
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write_json(path: Path, data: Any) -> None:
    text = json.dumps(_finite(data), indent=2, sort_keys=True, default=str, allow_nan=False)
    atomic_write(path, text + "\n")
