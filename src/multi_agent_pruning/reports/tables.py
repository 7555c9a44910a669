"""HTML tables of the report: statistics, best accuracy per run, the frontier of a sweep, failures.
Every cell is escaped."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from multi_agent_pruning.reports.data import escape
from multi_agent_pruning.stats.comparison import StatisticsReport, best_per_run
from multi_agent_pruning.stats.frontier import FrontierReport

__all__ = ["html_table", "statistics_table", "friedman_text", "best_per_run_table", "frontier_table",
           "area_per_run_table", "failures_table"]

_MAX_FAILURE_ROWS = 50


def html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], css_class: str = "data") -> str:
    """A ``<table>`` whose header and cells are all HTML-escaped text."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="{escape(css_class)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _pct(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value * 100:+.2f}" if signed else f"{value * 100:.2f}"


def _interval(low: float | None, high: float | None, signed: bool = False) -> str:
    return "-" if low is None or high is None else f"[{_pct(low, signed)}, {_pct(high, signed)}]"


def _p(value: float | None, adjusted: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g} ({adjusted:.4g})" if adjusted is not None else f"{value:.4g}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def statistics_table(report: StatisticsReport, order: Sequence[str] = (), quantity: str = "best top-1 %") -> str:
    """One row per series (in ``order``, then the rest): the mean of ``quantity`` (a fraction, shown
    in %) with CI, and the paired comparison with the reference."""
    comparisons = {c.method: c for c in report.comparisons}
    rank = {name: i for i, name in enumerate(order)}
    rows = []
    for summary in sorted(report.summaries, key=lambda s: (rank.get(s.method, len(rank)), s.method)):
        ci = "" if summary.ci_low is None else " " + _interval(summary.ci_low, summary.ci_high)
        row = [summary.method, summary.n_runs, _pct(summary.mean) + ci,
               "-" if summary.std is None else f"{summary.std * 100:.2f}"]
        c = comparisons.get(summary.method)
        if c is None:
            row += ["reference", "-", "-", "-", "-", "-", "-"]
        else:
            notes = "; ".join(sorted({r for r in (c.wilcoxon_reason, c.t_reason) if r}))
            row += [f"{_pct(c.mean_difference, True)} {_interval(c.ci_low, c.ci_high, True)}", c.n_pairs,
                    _p(c.wilcoxon_p, c.wilcoxon_p_holm), _p(c.t_p, c.t_p_holm), _number(c.cohens_dz),
                    _number(c.rank_biserial), notes or "-"]
        rows.append(row)
    level = f"{report.confidence:.0%}"
    headers = ["method", "runs", f"mean {quantity} [{level} CI]", "sd (pp)",
               f"difference vs {report.reference or '-'} (pp) [{level} CI]", "pairs",
               "Wilcoxon p (Holm)", "paired t p (Holm)", "Cohen's d_z", "rank-biserial", "notes"]
    return html_table(headers, rows, "statistics")


def friedman_text(report: StatisticsReport) -> str:
    """One escaped sentence on the Friedman test."""
    f = report.friedman
    if f.statistic is None:
        return escape(f"Friedman test not computed: {f.reason}.")
    return escape(f"Friedman test over {len(f.methods)} methods and {len(f.runs)} shared runs: "
                  f"chi-square = {f.statistic:.4g}, p = {f.p_value:.4g}.")


def best_per_run_table(frame: pd.DataFrame, order: Sequence[str]) -> str:
    """Best top-1 (%) of each series in each run, the unit of the paired comparisons."""
    best = best_per_run(frame, group="series")
    runs = sorted(int(r) for r in best["run"].unique())
    lookup = {(row.series, int(row.run)): row for row in best.itertuples(index=False)}
    rows = []
    for series in order:
        cells = [lookup.get((series, run)) for run in runs]
        rows.append([series] + ["-" if c is None else f"{c.best * 100:.2f} ({c.trial_id})" for c in cells])
    return html_table(["method"] + [f"run {run}" for run in runs], rows, "best-per-run")


def _ordered(names: Sequence[str], order: Sequence[str]) -> list[str]:
    rank = {name: i for i, name in enumerate(order)}
    return sorted(names, key=lambda name: (rank.get(name, len(rank)), name))


def frontier_table(frontier: FrontierReport, order: Sequence[str], divisor: float, unit: str) -> str:
    """Best top-1 of each (target, series) over runs: targets easiest first, series in ``order``."""
    rows = []
    for target in frontier.targets:
        for series in _ordered(list(frontier.per_target[target]), order):
            e = frontier.per_target[target][series]
            rows.append([target, series, e["n_runs"], _pct(e["mean"]),
                         "-" if e["std"] is None else f"{e['std'] * 100:.2f}",
                         f"{_pct(e['min'])} to {_pct(e['max'])}",
                         f"{e['macs'] / divisor:.4g}", f"{e['macs_fraction'] * 100:.1f}"])
    headers = ["target", "method", "runs", "mean best top-1 %", "sd (pp)", "range over runs (%)",
               f"mean MACs ({unit})".replace(" ()", ""), "MACs kept (% of dense)"]
    return html_table(headers, rows, "frontier")


def area_per_run_table(frontier: FrontierReport, order: Sequence[str]) -> str:
    """Frontier area (% of the ideal) of each series in each run, with the targets that run reached."""
    runs = sorted({run for entry in frontier.areas.values() for run in entry["per_run"]})
    total = len(frontier.targets)
    rows = []
    for series in _ordered(list(frontier.areas), order):
        entry = frontier.areas[series]
        rows.append([series] + [f"{entry['per_run'][run] * 100:.2f} ({entry['targets_reached'][run]}/{total} "
                                f"targets)" if run in entry["per_run"] else "-" for run in runs])
    return html_table(["method"] + [f"run {run}" for run in runs], rows, "area-per-run")


def failures_table(frame: pd.DataFrame) -> str:
    """Distinct errors of failed and rejected trials with their counts (most frequent first)."""
    failed = frame[frame["status"] != "ok"]
    if failed.empty:
        return "<p>No failed or rejected trials.</p>"
    keys = ["series", "status", "error_type", "error"]
    counts = (failed[keys].astype(object).where(failed[keys].notna(), "")
              .groupby(keys, sort=False).size().reset_index(name="count")
              .sort_values(["count", "series", "status", "error"], ascending=[False, True, True, True]))
    rows = [[r.series, r.status, r.error_type or "-", _clip(r.error), r.count]
            for r in counts.head(_MAX_FAILURE_ROWS).itertuples(index=False)]
    note = "" if len(counts) <= _MAX_FAILURE_ROWS else f"<p>{len(counts) - _MAX_FAILURE_ROWS} more not shown.</p>"
    return html_table(["method", "status", "error type", "error", "trials"], rows, "failures") + note


def _clip(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
