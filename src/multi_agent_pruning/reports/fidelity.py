"""The report's multi-fidelity section (``search.scheduler: asha``): every trial's top-1 at each
rung it reached, which were stopped where, and the fine-tune steps the rungs cost."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from multi_agent_pruning.reports.data import escape, prepare_frame

__all__ = ["rung_table", "rungs_section"]

_EXPLAIN = ("A multi-fidelity search (<code>search.scheduler: asha</code>): each line is one trial's top-1 after "
            "each rung of its fine-tune (x: the rung's budget, a multiple of the strategy's fine-tune budget). Ray "
            "Tune's ASHA scheduler stopped the grey ones at their last point (not promoted: a result, not a "
            "failure); the coloured ones reached the last rung. The table counts the trials that ended at each "
            "rung and the fine-tune steps the search spent, against running every trial to the last rung.")


def rung_table(frame: Any) -> pd.DataFrame:
    """One row per (trial, rung reached): series, trial, budget, cumulative steps, top-1, and
    whether the trial was stopped at its last rung; empty without multi-fidelity rows."""
    frame = prepare_frame(frame)
    if "rungs_json" not in frame.columns:
        return pd.DataFrame()
    rows = []
    for _, row in frame[frame["rungs_json"].notna()].iterrows():
        for entry in json.loads(row["rungs_json"]):
            rows.append({"series": row["series"], "trial_id": row["trial_id"], "rung": int(entry["rung"]),
                         "budget": int(entry["budget"]), "steps": int(entry["steps"]), "top1": entry["top1"],
                         "stopped": bool(row["stopped_early"]), "status": row["status"]})
    return pd.DataFrame(rows)


def _figure(table: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    shown: set[str] = set()
    for (series, trial), group in table.groupby(["series", "trial_id"], sort=True):
        stopped = bool(group["stopped"].iloc[0])
        legend = f"{series} (stopped)" if stopped else series
        fig.add_trace(go.Scatter(
            x=group["budget"], y=group["top1"], mode="lines+markers", name=escape(legend), legendgroup=legend,
            showlegend=legend not in shown, line={"color": "#bbb"} if stopped else {},
            hovertemplate=f"trial {escape(trial)}<br>budget %{{x}}x: top-1 %{{y:.2%}}<extra></extra>"))
        shown.add(legend)
    fig.update_layout(title="Top-1 at each rung", xaxis_title="fine-tune budget (x the strategy's)",
                      xaxis_type="log", yaxis_title="top-1", height=440, template="plotly_white")
    return fig


def rungs_section(frame: Any, figure_div) -> str:
    """The HTML section, or "" when no trial ran in rungs."""
    table = rung_table(frame)
    if table.empty:
        return ""
    lines = []
    for series, group in table.groupby("series", sort=True):
        last = group.sort_values("rung").groupby("trial_id").tail(1)
        top = int(group["budget"].max())
        ended = last.groupby("rung").size().to_dict()
        spent = int(last["steps"].sum())
        base = last["steps"] / last["budget"]  # each trial's rung-0 steps
        full = int((base * top).sum())
        cells = ", ".join(f"rung {rung}: {count}" for rung, count in sorted(ended.items()))
        lines.append(f"<tr><td>{escape(series)}</td><td>{len(last)}</td><td>{escape(cells)}</td><td>{spent}</td>"
                     f"<td>{full}</td><td>{spent / full:.0%}</td></tr>" if full else "")
    return "".join([
        '<section id="rungs"><h2>Multi-fidelity rungs</h2>', f'<p class="explain">{_EXPLAIN}</p>',
        figure_div(_figure(table), "figure-rungs"),
        "<table><tr><th>series</th><th>trials</th><th>ended at</th><th>fine-tune steps spent</th>"
        "<th>every trial to the last rung</th><th>share</th></tr>", *lines, "</table></section>"])
