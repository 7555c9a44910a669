"""The report's Plotly figures, each built from the prepared results frame alone (deterministic)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from multi_agent_pruning.reports._accuracy import accuracy_vs_macs, pareto_front
from multi_agent_pruning.reports.data import escape, escape_block, macs_scale, reference_series, series_order
from multi_agent_pruning.results import STATUSES, add_target_columns
from multi_agent_pruning.stats.frontier import FrontierReport, analyze_frontier
from multi_agent_pruning.stats.reproduction import compare_with_papers

__all__ = ["FIGURE_IDS", "build_figures", "pareto_front"]

FIGURE_IDS = ("accuracy-vs-macs", "convergence", "success-rate", "stage-times", "paper-reproduction")
_PALETTE = list(qualitative.Plotly) + list(qualitative.D3)
_STATUS_COLORS = {"ok": "#2ca02c", "failed": "#d62728", "rejected": "#ff7f0e"}
_STAGES = (("seconds_prune", "prune"), ("seconds_finetune", "fine-tune"), ("seconds_evaluate", "evaluate"))
_DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
_PANEL_COLUMNS = 3


def _none(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _layout(fig: go.Figure, title: str, x_title: str, y_title: str, height: int = 480) -> go.Figure:
    fig.update_layout(title={"text": title}, template="plotly_white", height=height, hovermode="closest",
                      margin={"l": 70, "r": 30, "t": 60, "b": 60}, legend={"groupclick": "togglegroup"})
    fig.update_xaxes(title_text=x_title)
    fig.update_yaxes(title_text=y_title)
    return fig


def _convergence_trace(rows: pd.DataFrame, series: str, run: int, color: str, target: str | None,
                       showlegend: bool) -> go.Scatter:
    rows = rows.sort_values(["iteration", "finished_at", "trial_id"], na_position="last")
    accuracy = rows["top1_after"].where(rows["status"] == "ok").astype(float)
    best = (accuracy.cummax().ffill() * 100).tolist()
    label = f"{escape(series)} (run {run})"
    where = "" if target is None else f"<br>{escape(target)}"
    return go.Scatter(
        x=list(range(1, len(rows) + 1)), y=[_none(v) for v in best], mode="lines+markers", name=label,
        legendgroup=escape(series), showlegend=showlegend, line={"color": color, "dash": _DASHES[run % len(_DASHES)]},
        hovertext=[f"{label}{where}<br>trial {i} ({escape(t)})<br>best so far "
                   + ("none yet" if _none(v) is None else f"{v:.2f} %")
                   for i, (t, v) in enumerate(zip(rows["trial_id"], best), start=1)],
        hoverinfo="text")


def convergence(frame: pd.DataFrame, order: list[str], colors: dict[str, str]) -> go.Figure:
    """Best top-1 so far against the trial index, one line per series and run; with several
    targets, one panel per target (easiest first) and the index counts that target's trials."""
    framed = add_target_columns(frame)
    labelled = framed.dropna(subset=["target"]).sort_values("target_order", kind="stable")
    targets = list(dict.fromkeys(labelled["target"]))
    panels = [(None, framed)] if len(targets) <= 1 else [(t, labelled[labelled["target"] == t]) for t in targets]
    columns = min(len(panels), _PANEL_COLUMNS)
    n_rows = math.ceil(len(panels) / columns)
    fig = (go.Figure() if len(panels) == 1 else
           make_subplots(rows=n_rows, cols=columns, shared_yaxes="all", horizontal_spacing=0.05,
                         vertical_spacing=0.3 / n_rows, subplot_titles=[escape(t) for t, _ in panels]))
    longest, shown = 1, set()
    for index, (target, rows_at) in enumerate(panels):
        cell = {} if len(panels) == 1 else {"row": index // columns + 1, "col": index % columns + 1}
        for series in order:
            for run, rows in sorted(rows_at[rows_at["series"] == series].groupby("run"), key=lambda i: int(i[0])):
                longest = max(longest, len(rows))
                key = (series, int(run))
                fig.add_trace(_convergence_trace(rows, series, int(run), colors[series], target, key not in shown),
                              **cell)
                shown.add(key)
    fig.update_xaxes(tick0=1, dtick=max(1, math.ceil(longest / 10)))  # whole trials only
    if len(panels) == 1:
        return _layout(fig, "Convergence: best top-1 so far", "Trial index within the run", "Best top-1 so far (%)")
    fig = _layout(fig, "Convergence per target: best top-1 so far", "Trial index within the run and target",
                  "Best top-1 so far (%)", height=140 + 340 * n_rows)
    fig.update_yaxes(title_text=None)  # the panels share the y axis: one title, on the first column
    fig.update_yaxes(title_text="Best top-1 so far (%)", col=1)
    return fig


def _top_error(rows: pd.DataFrame) -> str | None:
    errors = rows["error"].dropna().astype(str)
    if errors.empty:
        return None
    counts = errors.groupby(errors).size().reset_index(name="n").sort_values(["n", "error"], ascending=[False, True])
    return f"most common ({int(counts.iloc[0]['n'])}x): " + escape_block(counts.iloc[0]["error"], limit=300)


def success_rate(frame: pd.DataFrame, order: list[str]) -> go.Figure:
    """Share of ok, failed and rejected trials per series (stacked to 100 %)."""
    fig = go.Figure()
    for status in STATUSES:
        counts, hover = [], []
        for series in order:
            part = frame[frame["series"] == series]
            rows = part[part["status"] == status]
            counts.append(len(rows))
            text = (f"<b>{escape(series)}</b><br>{status}: {len(rows)} of {len(part)} trials "
                    f"({len(rows) / len(part):.0%})")
            error = _top_error(rows)
            hover.append(text + (f"<br>{error}" if error else ""))
        totals = [len(frame[frame["series"] == series]) for series in order]
        fig.add_trace(go.Bar(x=[escape(s) for s in order], y=[100 * c / n for c, n in zip(counts, totals)],
                             name=status, marker_color=_STATUS_COLORS[status],
                             text=[str(c) if c else "" for c in counts],
                             textposition="inside", hovertext=hover, hoverinfo="text"))
    fig.update_layout(barmode="stack")
    return _layout(fig, "Trial outcomes per method", "Method", "Trials (%)")


def stage_times(frame: pd.DataFrame, order: list[str]) -> go.Figure:
    """Mean seconds per trial spent pruning, fine-tuning and evaluating, per series."""
    fig = go.Figure()
    for column, label in _STAGES:
        means, hover = [], []
        for series in order:
            values = frame.loc[frame["series"] == series, column].dropna().astype(float)
            mean = float(values.mean()) if len(values) else None
            means.append(mean)
            hover.append(f"<b>{escape(series)}</b><br>{label}: "
                         + (f"{mean:.3g} s mean over {len(values)} trials" if mean is not None else "not measured"))
        fig.add_trace(go.Bar(x=[escape(s) for s in order], y=means, name=label, hovertext=hover, hoverinfo="text"))
    fig.update_layout(barmode="stack")
    return _layout(fig, "Time per trial stage", "Method", "Mean seconds per trial")


def _cell(entry: dict[str, Any] | None, reason: str | None) -> tuple[float | None, str, str]:
    if entry is None:
        return None, "no data", "no data" + (f"<br>{escape_block(reason)}" if reason else "")
    delta = entry["delta"] * 100
    hover = (f"ours {entry['best_top1']:.2%} vs paper {entry['paper_top1']:.2%} ({delta:+.2f} pp)"
             f"<br>trial {escape(entry['trial_id'])}, run {entry['run']}, MACs off by {entry['size_error']:.2%}"
             f"<br>{entry['n_matching']} matching trial(s) in {entry['n_runs']} run(s)")
    return delta, f"{delta:+.2f} pp", hover


def paper_reproduction(reproduction: dict[str, dict[str, Any]], order: list[str]) -> go.Figure:
    """Top-1 difference (ours - paper, percentage points) per paper target and series."""
    z, text, hover, labels = [], [], [], []
    for item in reproduction.values():
        target = item["target"]
        labels.append(escape(f"{target['model']} ({target['paper']}, {target['base_model']}, {target['dataset']})"))
        cells = [_cell(item["methods"].get(series), item["reason"]) for series in order]
        z.append([c[0] for c in cells])
        text.append([c[1] for c in cells])
        hover.append([f"<b>{labels[-1]}</b> / {escape(s)}<br>{c[2]}" for s, c in zip(order, cells)])
    values = [abs(v) for row in z for v in row if v is not None]
    limit = max(values) if values and max(values) > 0 else 1.0
    x = [escape(s) for s in order]
    common = dict(x=x, y=labels, text=text, texttemplate="%{text}", hovertext=hover, hoverinfo="text", xgap=2, ygap=2)
    # plotly draws nothing for null cells, so "no data" cells are a second, grey layer.
    blank = [[0 if v is None else None for v in row] for row in z]
    fig = go.Figure([
        go.Heatmap(z=blank, colorscale=[[0, "#e8e8e8"], [1, "#e8e8e8"]], showscale=False, name="no data", **common),
        go.Heatmap(z=z, colorscale="RdBu", zmin=-limit, zmax=limit, zmid=0, name="ours - paper",
                   colorbar={"title": {"text": "Δ top-1 (pp)"}}, **common),
    ])
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, "Paper reproduction: our best top-1 minus the paper's", "Method", "",
                   height=140 + 55 * max(len(labels), 1))


def build_figures(frame: pd.DataFrame, frontier: FrontierReport | None = None) -> dict[str, go.Figure]:
    """Every figure of the report, keyed by :data:`FIGURE_IDS`, from a :func:`prepare_frame` frame.

    ``frontier`` is :func:`~multi_agent_pruning.stats.frontier.analyze_frontier` of the frame by
    ``series``; computed here when not given.
    """
    order = series_order(frame)
    colors = {series: _PALETTE[i % len(_PALETTE)] for i, series in enumerate(order)}
    if frontier is None:
        frontier = analyze_frontier(frame, group="series", reference=reference_series(frame))
    # Targets are matched by model and size, so every experiment's trials of a method count together.
    reproduction = compare_with_papers(frame, group="method")
    unit = macs_scale(frame)[1]
    accuracy = _layout(accuracy_vs_macs(frame, order, colors, frontier),
                       "Accuracy vs MACs: best top-1 per target, mean over runs",
                       f"MACs ({unit})".replace(" ()", ""), "Top-1 after fine-tuning (%)", height=520)
    return {
        "accuracy-vs-macs": accuracy,
        "convergence": convergence(frame, order, colors),
        "success-rate": success_rate(frame, order),
        "stage-times": stage_times(frame, order),
        "paper-reproduction": paper_reproduction(reproduction, series_order(frame, "method")),
    }
