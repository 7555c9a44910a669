"""The report's Plotly figures, each built from the prepared results frame alone (deterministic)."""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from multi_agent_pruning.reports.data import escape, escape_block, macs_scale, series_order
from multi_agent_pruning.results import STATUSES
from multi_agent_pruning.stats.paper_targets import PAPER_TARGETS, PaperTarget
from multi_agent_pruning.stats.reproduction import compare_with_papers

__all__ = ["FIGURE_IDS", "build_figures", "pareto_front"]

FIGURE_IDS = ("accuracy-vs-macs", "convergence", "success-rate", "stage-times", "paper-reproduction")
_PALETTE = list(qualitative.Plotly) + list(qualitative.D3)
_STATUS_COLORS = {"ok": "#2ca02c", "failed": "#d62728", "rejected": "#ff7f0e"}
_STAGES = (("seconds_prune", "prune"), ("seconds_finetune", "fine-tune"), ("seconds_evaluate", "evaluate"))
_DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")


def _none(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _layout(fig: go.Figure, title: str, x_title: str, y_title: str, height: int = 480) -> go.Figure:
    fig.update_layout(title={"text": title}, template="plotly_white", height=height, hovermode="closest",
                      margin={"l": 70, "r": 30, "t": 60, "b": 60}, legend={"groupclick": "togglegroup"})
    fig.update_xaxes(title_text=x_title)
    fig.update_yaxes(title_text=y_title)
    return fig


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points not beaten by another with fewer-or-equal MACs and higher-or-equal accuracy, by MACs."""
    front: list[tuple[float, float]] = []
    for macs, accuracy in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or accuracy > front[-1][1]:
            front.append((macs, accuracy))
    return front


def _reasoning(strategy_json: Any) -> str | None:
    try:
        data = json.loads(strategy_json)
    except (TypeError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    text = data.get("reasoning") or data.get("rationale")
    return None if text is None else str(text)


def _point_hover(row: Any, series: str, divisor: float, unit: str) -> str:
    macs = f"MACs {row.macs / divisor:.4g} {unit}"
    if pd.notna(row.macs_reduction):
        macs += f" ({row.macs_reduction:.1%} removed)"
    lines = [f"<b>{escape(series)}</b>",
             f"trial {escape(row.trial_id)} (run {int(row.run)}, iteration {int(row.iteration)})", macs]
    if pd.notna(row.params):
        lines.append(f"params {int(row.params):,}")
    top1 = f"top-1 {row.top1_after:.2%}"
    if pd.notna(row.top1_before):
        top1 += f" (before fine-tuning {row.top1_before:.2%})"
    lines.append(top1)
    if pd.notna(row.importance):
        lines.append(f"importance: {escape(row.importance)}")
    lines.append("strategy: " + escape_block(row.strategy_json))
    reasoning = _reasoning(row.strategy_json)
    if reasoning:
        lines.append("reasoning: " + escape_block(reasoning))
    return "<br>".join(lines)


def _anchor(target: PaperTarget, frame: pd.DataFrame) -> float | None:
    """MACs of a paper target; a speed-up is applied to the measured dense MACs of our rows."""
    if target.macs is not None:
        return target.macs
    rows = frame[frame["model"].isin(target.models) & (frame["dataset"] == target.dataset)]
    base = rows["base_macs"].dropna()
    return float(base.median()) / float(target.speedup) if len(base) else None


def _paper_trace(frame: pd.DataFrame, divisor: float) -> go.Scatter | None:
    points = []
    present = set(zip(frame["model"], frame["dataset"]))
    for target in PAPER_TARGETS:
        if not any((model, target.dataset) in present for model in target.models):
            continue
        macs = _anchor(target, frame)
        if macs is not None:
            hover = (f"<b>{escape(target.paper)}: {escape(target.model)}</b><br>from {escape(target.base_model)}"
                     f"<br>top-1 {target.top1:.2%} at {macs / divisor:.4g}<br>{escape(target.source.venue)} "
                     f"{target.source.year}, arXiv {escape(target.source.arxiv_id)}"
                     f"<br>verified: {'yes' if target.verified else 'no'}<br>{escape_block(target.note)}")
            points.append((macs / divisor, target.top1 * 100, escape(target.model), hover))
    if not points:
        return None
    x, y, text, hover = zip(*points)
    return go.Scatter(x=list(x), y=list(y), text=list(text), hovertext=list(hover), hoverinfo="text",
                      mode="markers+text", textposition="top center", name="paper targets",
                      marker={"symbol": "star", "size": 14, "color": "black"})


def accuracy_vs_macs(frame: pd.DataFrame, order: list[str], colors: dict[str, str]) -> go.Figure:
    """Top-1 after fine-tuning against MACs, every ok trial, each series' Pareto front, paper anchors."""
    divisor, unit = macs_scale(frame)
    fig = go.Figure()
    ok = frame[(frame["status"] == "ok") & frame["macs"].notna() & frame["top1_after"].notna()]
    for series in order:
        part = ok[ok["series"] == series].sort_values(["macs", "trial_id"])
        if part.empty:
            continue
        name, color = escape(series), colors[series]
        fig.add_trace(go.Scatter(
            x=(part["macs"] / divisor).tolist(), y=(part["top1_after"] * 100).tolist(), mode="markers",
            name=name, legendgroup=name, marker={"color": color, "size": 8, "opacity": 0.75},
            hovertext=[_point_hover(row, series, divisor, unit) for row in part.itertuples(index=False)],
            hoverinfo="text"))
        front = pareto_front(list(zip(part["macs"] / divisor, part["top1_after"] * 100)))
        fig.add_trace(go.Scatter(x=[p[0] for p in front], y=[p[1] for p in front], mode="lines",
                                 line={"color": color, "shape": "hv", "width": 2}, name=f"{name} Pareto front",
                                 legendgroup=name, showlegend=False, hoverinfo="skip"))
    anchors = _paper_trace(frame, divisor)
    if anchors is not None:
        fig.add_trace(anchors)
    return _layout(fig, "Accuracy vs MACs (Pareto front per method)", f"MACs ({unit})".replace(" ()", ""),
                   "Top-1 after fine-tuning (%)")


def convergence(frame: pd.DataFrame, order: list[str], colors: dict[str, str]) -> go.Figure:
    """Best top-1 so far against the trial index, one line per series and run."""
    fig = go.Figure()
    longest = 1
    for series in order:
        part = frame[frame["series"] == series]
        for run, rows in sorted(part.groupby("run"), key=lambda item: int(item[0])):
            longest = max(longest, len(rows))
            rows = rows.sort_values(["iteration", "finished_at", "trial_id"], na_position="last")
            accuracy = rows["top1_after"].where(rows["status"] == "ok").astype(float)
            best = (accuracy.cummax().ffill() * 100).tolist()
            fig.add_trace(go.Scatter(
                x=list(range(1, len(rows) + 1)), y=[_none(v) for v in best], mode="lines+markers",
                name=f"{escape(series)} (run {int(run)})", legendgroup=escape(series),
                line={"color": colors[series], "dash": _DASHES[int(run) % len(_DASHES)]},
                hovertext=[f"{escape(series)}, run {int(run)}<br>trial {i} ({escape(t)})<br>best so far "
                           + ("none yet" if _none(v) is None else f"{v:.2f} %")
                           for i, (t, v) in enumerate(zip(rows["trial_id"], best), start=1)],
                hoverinfo="text"))
    fig.update_xaxes(tick0=1, dtick=max(1, math.ceil(longest / 10)))  # whole trials only
    return _layout(fig, "Convergence: best top-1 so far", "Trial index within the run", "Best top-1 so far (%)")


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


def build_figures(frame: pd.DataFrame) -> dict[str, go.Figure]:
    """Every figure of the report, keyed by :data:`FIGURE_IDS`, from a :func:`prepare_frame` frame."""
    order = series_order(frame)
    colors = {series: _PALETTE[i % len(_PALETTE)] for i, series in enumerate(order)}
    # Targets are matched by model and size, so every experiment's trials of a method count together.
    reproduction = compare_with_papers(frame, group="method")
    return {
        "accuracy-vs-macs": accuracy_vs_macs(frame, order, colors),
        "convergence": convergence(frame, order, colors),
        "success-rate": success_rate(frame, order),
        "stage-times": stage_times(frame, order),
        "paper-reproduction": paper_reproduction(reproduction, series_order(frame, "method")),
    }
