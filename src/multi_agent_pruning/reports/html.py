"""The self-contained HTML report: plotly.js inline (opens offline), figures, tables, header."""

from __future__ import annotations

import datetime as dt
import os
import shlex
from pathlib import Path
from typing import Any

import plotly.io as pio
from plotly.offline import get_plotlyjs

from multi_agent_pruning.exceptions import ConfigurationError, ResultStoreError, UnknownNameError
from multi_agent_pruning.reports.data import (escape, header_facts, macs_scale, prepare_frame, reference_series,
                                              series_order)
from multi_agent_pruning.reports.figures import build_figures
from multi_agent_pruning.reports.fidelity import rungs_section
from multi_agent_pruning.reports.recovery import recovery_section, signals_section
from multi_agent_pruning.reports.tables import (area_per_run_table, best_per_run_table, failures_table,
                                                frontier_table, friedman_text, statistics_table)
from multi_agent_pruning.results import ResultStore
from multi_agent_pruning.results._files import describe_os_error
from multi_agent_pruning.stats.comparison import StatisticsReport, analyze_methods
from multi_agent_pruning.stats.frontier import FrontierReport, analyze_frontier
from multi_agent_pruning.utils.atomic import atomic_write

__all__ = ["figures_json", "render_report_html", "resolve_results_dir", "write_report"]

_SECTIONS = {
    "accuracy-vs-macs": "Top-1 after fine-tuning against the pruned model's MACs. The line of each method goes "
                        "through its best trial at each target: the mean over runs of the best top-1, at the mean "
                        "MACs of those best trials, with ±1 standard deviation over runs as error bars. Faint "
                        "points are every ok trial. With a single target, the dotted staircase is each method's "
                        "Pareto front over its trials. The grey square is the dense model, at its MACs and its "
                        "top-1 on the same evaluation set (a dashed vertical line at its MACs for tables written "
                        "before that accuracy was recorded). Stars are published results for the same model and "
                        "dataset.",
    "convergence": "Best top-1 reached so far against the trial index, per method and run (failed and rejected "
                   "trials count as trials that did not improve). With several targets, one panel per target: "
                   "the index counts the trials at that target, and trials that failed before they had a "
                   "target are left out.",
    "success-rate": "Share of trials that finished (ok), failed with an error, or were rejected before running.",
    "stage-times": "Mean wall time per trial of the pruning, fine-tuning and evaluation stages, over the trials "
                   "that measured the stage.",
    "paper-reproduction": "Our best top-1 minus the paper's, in percentage points, using only trials of the same "
                          "model and dataset within 2 % of the paper's MACs (or speed-up), pooled over experiments "
                          "per method.",
}
_TITLES = {"accuracy-vs-macs": "Accuracy vs MACs", "convergence": "Convergence", "success-rate": "Success rate",
           "stage-times": "Time per stage", "paper-reproduction": "Paper reproduction"}
_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1320px;
color:#222;padding:0 16px}h1{margin-bottom:4px}section{margin:28px 0}dl{display:grid;
grid-template-columns:max-content 1fr;gap:4px 16px;margin:12px 0}dt{font-weight:600}dd{margin:0}
code{background:#f3f3f3;padding:2px 5px;border-radius:3px}table{border-collapse:collapse;font-size:13px;
margin:8px 0}th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f5f5f5}
td{max-width:520px;overflow-wrap:anywhere}td:first-child{white-space:nowrap}.explain{color:#555;max-width:960px}
footer{color:#777;font-size:12px}"""


_AREA_DEFINITION = ("Frontier area: the share of the square (MACs kept as a fraction of the dense model, top-1 "
                    "from the reference accuracy to 100 %) dominated by a run's best trials at its targets; "
                    "100 % would be full accuracy at no MACs, and a missed target lowers it.")


def _frontier_section(frame: Any, frontier: FrontierReport, n_resamples: int, seed: int) -> str:
    """Best top-1 per target and method, and the frontier area with its paired tests (sweeps only)."""
    order = series_order(frame)
    divisor, unit = macs_scale(frame)
    stats = frontier.area_statistics
    return "".join([
        '<section id="frontier"><h2>Accuracy–MACs frontier</h2>',
        f'<p class="explain">Best top-1 of each method at each of the {len(frontier.targets)} targets (easiest '
        "first): the best ok trial per (method, run, target), then mean, standard deviation (ddof 1) and range "
        "over runs, and the mean MACs of those best trials.</p>",
        frontier_table(frontier, order, divisor, unit),
        "<h3>Frontier area per method</h3>",
        f'<p class="explain">{escape(_AREA_DEFINITION)} Reference accuracy: '
        f"{frontier.reference_accuracy:.1f} (top-1 {frontier.reference_accuracy:.0%}). Areas are paired on the run; differences are "
        f"method minus reference. Bootstrap: {n_resamples} resamples, seed {seed}; p-values in brackets are "
        "Holm-adjusted.</p>",
        statistics_table(stats, order, quantity="frontier area (% of the ideal)"),
        f"<p>{friedman_text(stats)}</p>",
        "<h3>Frontier area (% of the ideal) per run</h3>",
        area_per_run_table(frontier, order), "</section>",
    ])


def _statistics_section(frame: Any, stats: StatisticsReport, n_resamples: int, seed: int, sweep: bool) -> str:
    pooled = (" With several targets this is the best over all of them (mostly the easiest target's); the "
              "frontier section compares the methods per target and by area." if sweep else "")
    return "".join([
        '<section id="statistics"><h2>Statistics</h2><p class="explain">Best top-1 per (method, run); methods are '
        f"paired on the run; differences are method minus reference. Bootstrap: {n_resamples} resamples, "
        f"seed {seed}. p-values in brackets are Holm-adjusted across the methods compared with the "
        f"reference.{pooled}</p>",
        statistics_table(stats, series_order(frame)), f"<p>{friedman_text(stats)}</p>",
        "<h3>Best top-1 (%) per run</h3>", best_per_run_table(frame, series_order(frame)), "</section>",
    ])


def figures_json(frame: Any) -> dict[str, str]:
    """The JSON of every figure (what the page draws), for determinism checks."""
    return {key: fig.to_json() for key, fig in build_figures(prepare_frame(frame)).items()}


def _figure_div(fig: Any, div_id: str) -> str:
    return pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=div_id,
                       config={"responsive": True, "displaylogo": False})


def _header(facts: dict[str, Any], source: str, regenerate: str) -> str:
    def joined(key: str) -> str:
        return escape(", ".join(facts[key]) or "-")

    items = [("Experiment", joined("experiments")), ("Model", joined("models")), ("Dataset", joined("datasets")),
             ("Methods", joined("methods")), ("Target", joined("targets")), ("Trials", escape(facts["trials"])),
             ("First trial started", escape(facts["first_start"] or "-")),
             ("Last trial finished", escape(facts["last_finish"] or "-")),
             ("Versions", "<br>".join(escape(v) for v in facts["versions"]) or "-"), ("Hosts", joined("hosts")),
             ("Results", f"<code>{escape(source)}</code>"), ("Regenerate", f"<code>{escape(regenerate)}</code>")]
    return "<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def render_report_html(table: Any, *, title: str | None = None, source: str = "", regenerate: str = "",
                       generated_at: dt.datetime | None = None, seed: int = 0, n_resamples: int = 10_000,
                       final: Any = None) -> str:
    """The whole report page for ``table`` (pyarrow Table or DataFrame of results rows).

    ``final`` holds the final recoveries (rows with stage ``final``, ``mapruner finetune``):
    with any, the page has a section comparing them with their search trials.

    Only the footer's generation time depends on anything but the arguments.
    """
    frame = prepare_frame(table)
    if frame.empty:
        raise ResultStoreError("Cannot build a report from an empty results table")
    facts = header_facts(frame)
    title = title or f"Pruning report: {', '.join(facts['experiments'])}"
    reference = reference_series(frame)
    stats = analyze_methods(frame, group="series", reference=reference, seed=seed, n_resamples=n_resamples)
    frontier = analyze_frontier(frame, group="series", reference=reference, seed=seed, n_resamples=n_resamples)
    sweep = len(frontier.targets) > 1
    figures = build_figures(frame, frontier)
    sections = [f'<section id="{key}"><h2>{_TITLES[key]}</h2><p class="explain">{_SECTIONS[key]}</p>'
                f"{_figure_div(fig, 'figure-' + key)}</section>" for key, fig in figures.items()]
    if sweep:  # right after the accuracy-vs-MACs figure it tabulates
        sections.insert(list(figures).index("accuracy-vs-macs") + 1,
                        _frontier_section(frame, frontier, n_resamples, seed))
    when = (generated_at or dt.datetime.now(dt.timezone.utc)).isoformat(timespec="seconds")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{escape(title)}</title>",
        f"<style>{_CSS}</style>", f'<script type="text/javascript">{get_plotlyjs()}</script>', "</head><body>",
        f"<header><h1>{escape(title)}</h1>{_header(facts, source, regenerate)}</header>", *sections,
        recovery_section(frame, final, _figure_div) if final is not None and len(final) else "",
        rungs_section(frame, _figure_div),
        signals_section(frame),
        _statistics_section(frame, stats, n_resamples, seed, sweep),
        f'<section id="failures"><h2>Failed and rejected trials</h2>{failures_table(frame)}</section>',
        f"<footer>Generated {escape(when)} by multi_agent_pruning from the results table alone.</footer>",
        "</body></html>", ""])


def resolve_results_dir(results_dir: str | os.PathLike[str]) -> Path:
    """The result store root: ``results_dir`` itself, or its ``results/`` folder (an experiment folder)."""
    root = Path(results_dir)
    if not any(root.glob("experiment=*")) and (root / "results").is_dir():
        return root / "results"
    return root


def write_report(results_dir: str | os.PathLike[str], output: str | os.PathLike[str] | None = None, *,
                 experiment: str | None = None, title: str | None = None) -> Path:
    """Writes the HTML report of a result store.

    Args:
        results_dir: The result store root (``runs/<experiment>/results``) or the experiment
            folder holding it.
        output: HTML file to write; default ``<results_dir>/../report.html``.
        experiment: Only this experiment's rows; default every experiment in the store.
        title: Page title; default names the experiments.

    Returns:
        The path written.

    Raises:
        ResultStoreError: No results directory, or no rows in it.
        ConfigurationError: ``output`` cannot be written (a folder, a read-only place, a full
            disk); nothing is left behind.
        UnknownNameError: ``experiment`` is not in the store.
    """
    root = resolve_results_dir(results_dir)
    if not root.is_dir():
        raise ResultStoreError(f"No results directory at {root} (expected runs/<experiment>/results)")
    store = ResultStore(root)
    if experiment is not None and experiment not in store.experiments():
        raise UnknownNameError("experiment", experiment, store.experiments())
    table = store.read(experiment=experiment)
    if table.num_rows == 0:
        raise ResultStoreError(f"No trial results under {root}; nothing to report")
    target = Path(output) if output else root.parent / "report.html"
    command = ["mapruner", "report", str(results_dir)] + (["--experiment", experiment] if experiment else [])
    command += ["-o", str(output)] if output else []
    html = render_report_html(table, title=title, source=str(root), regenerate=shlex.join(command),
                              final=store.read(experiment=experiment, stage="final"))
    try:
        return atomic_write(target, html)
    except OSError as err:
        raise ConfigurationError(f"Could not write the report to {target}: {describe_os_error(err)}") from err
