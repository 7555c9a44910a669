"""The accuracy-vs-MACs figure: each series' best top-1 per target (mean over runs, spread as error
bars), every ok trial as a faint point, the dense model as a point, and the paper results."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from multi_agent_pruning.reports.data import escape, escape_block, macs_scale
from multi_agent_pruning.stats.frontier import FrontierReport
from multi_agent_pruning.stats.paper_targets import PAPER_TARGETS, PaperTarget

__all__ = ["accuracy_vs_macs", "pareto_front"]

SPREAD = "error bars: ±1 std (ddof 1) over runs"


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


def _frontier_hover(series: str, target: str, entry: dict[str, Any], divisor: float, unit: str) -> str:
    spread = (f"± {entry['std']:.2%} (std over {entry['n_runs']} runs), range {entry['min']:.2%} to "
              f"{entry['max']:.2%}" if entry["std"] is not None else "1 run, no spread")
    runs = ", ".join(f"run {run}: {value:.2%}" for run, value in sorted(entry["per_run"].items()))
    return (f"<b>{escape(series)}</b><br>{escape(target)}<br>best top-1, mean over runs: {entry['mean']:.2%} "
            f"{spread}<br>{runs}<br>mean MACs of those best trials: {entry['macs'] / divisor:.4g} {unit} "
            f"({entry['macs_fraction']:.1%} of the dense model)")


def _frontier_trace(series: str, color: str, frontier: FrontierReport, divisor: float,
                    unit: str) -> go.Scatter | None:
    """Mean best top-1 per target through the targets, easiest first; std over runs as error bars."""
    entries = [(t, frontier.per_target[t][series]) for t in frontier.targets if series in frontier.per_target[t]]
    if not entries:
        return None
    std = [None if e["std"] is None else e["std"] * 100 for _, e in entries]
    name = escape(series)
    return go.Scatter(
        x=[e["macs"] / divisor for _, e in entries], y=[e["mean"] * 100 for _, e in entries],
        mode="lines+markers", name=name, legendgroup=name, line={"color": color, "width": 2.5},
        marker={"color": color, "size": 10, "symbol": "diamond"},
        error_y={"type": "data", "array": std, "visible": any(v is not None for v in std), "thickness": 1.5},
        text=[escape(t) for t, _ in entries],
        hovertext=[_frontier_hover(series, t, e, divisor, unit) for t, e in entries], hoverinfo="text")


def _trials_trace(part: pd.DataFrame, series: str, color: str, divisor: float, unit: str) -> go.Scatter:
    name = escape(series)
    return go.Scatter(
        x=(part["macs"] / divisor).tolist(), y=(part["top1_after"] * 100).tolist(), mode="markers",
        name=f"{name} trials", legendgroup=name, showlegend=False,
        marker={"color": color, "size": 7, "opacity": 0.35},
        hovertext=[_point_hover(row, series, divisor, unit) for row in part.itertuples(index=False)],
        hoverinfo="text")


def _pareto_trace(part: pd.DataFrame, series: str, color: str, divisor: float) -> go.Scatter:
    front = pareto_front(list(zip(part["macs"] / divisor, part["top1_after"] * 100)))
    return go.Scatter(x=[p[0] for p in front], y=[p[1] for p in front], mode="lines",
                      line={"color": color, "shape": "hv", "width": 1, "dash": "dot"},
                      name=f"{escape(series)} Pareto front", legendgroup=escape(series), showlegend=False,
                      hoverinfo="skip")


def _dense_markers(fig: go.Figure, frame: pd.DataFrame, divisor: float, unit: str) -> None:
    """The dense model of each model name: a point at its MACs and top-1 (``base_top1``, measured
    once per run); rows without it (tables older than schema version 2) give a vertical line at
    its MACs instead, since there is no accuracy to place a point at."""
    rows = frame.dropna(subset=["base_macs"])
    for model, part in rows.groupby("model", sort=True):
        base = float(part["base_macs"].median())
        label = f"dense {model}: {base / divisor:.4g} {unit}".rstrip()
        top1 = part["base_top1"].dropna() if "base_top1" in part else pd.Series(dtype=float)
        if top1.empty:
            fig.add_vline(x=base / divisor, line={"color": "#666", "dash": "dash", "width": 1},
                          annotation_text=escape(label), annotation_position="top left",
                          annotation_font={"size": 11, "color": "#444"})
            continue
        values = sorted({round(float(v), 6) for v in top1})
        measured = (f"top-1 {values[0]:.2%}" if len(values) == 1 else
                    f"top-1 {float(top1.median()):.2%} (median; {values[0]:.2%} to {values[-1]:.2%} over "
                    f"{len(values)} dense models)")
        hover = (f"<b>dense {escape(model)}</b><br>{base / divisor:.4g} {escape(unit)} MACs<br>{measured} on the "
                 f"evaluation set, measured once per run before the trials")
        fig.add_trace(go.Scatter(x=[base / divisor], y=[float(top1.median()) * 100], mode="markers+text",
                                 name=f"dense {escape(model)}", text=[f"dense {escape(model)}"],
                                 textposition="bottom center", hovertext=[hover], hoverinfo="text",
                                 marker={"symbol": "square", "size": 12, "color": "#444"}))


def accuracy_vs_macs(frame: pd.DataFrame, order: list[str], colors: dict[str, str],
                     frontier: FrontierReport) -> go.Figure:
    """Per series: the best top-1 per target (mean over runs, std as error bars) as a line, every ok
    trial as a faint point, and, for a single target, the trials' Pareto front; then the dense
    model (a point at its MACs and top-1) and the paper results for the same model and dataset."""
    divisor, unit = macs_scale(frame)
    single_target = len(frontier.targets) <= 1
    fig = go.Figure()
    ok = frame[(frame["status"] == "ok") & frame["macs"].notna() & frame["top1_after"].notna()]
    for series in order:
        part = ok[ok["series"] == series].sort_values(["macs", "trial_id"])
        if part.empty:
            continue
        color = colors[series]
        fig.add_trace(_trials_trace(part, series, color, divisor, unit))
        line = _frontier_trace(series, color, frontier, divisor, unit)
        if line is not None:
            fig.add_trace(line)
        if single_target:
            fig.add_trace(_pareto_trace(part, series, color, divisor))
    _dense_markers(fig, frame, divisor, unit)
    anchors = _paper_trace(frame, divisor)
    if anchors is not None:
        fig.add_trace(anchors)
    fig.update_layout(legend_title_text=f"best top-1 per target, mean over runs;<br>{SPREAD}")
    return fig
