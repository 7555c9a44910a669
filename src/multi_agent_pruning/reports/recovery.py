"""The report's final-recovery section: proxy against recovered accuracy, and whether the search's
ranking holds after the long recovery (Kendall's tau over the recovered strategies)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go
from scipy.stats import kendalltau

from multi_agent_pruning.reports.data import escape, prepare_frame
from multi_agent_pruning.results import add_target_columns
from multi_agent_pruning.stats.fidelity import SIGNALS, signal_rankings

__all__ = ["recovery_pairs", "recovery_section", "rank_correlation", "signals_section"]

_EXPLAIN = ("Each recovered strategy (<code>mapruner finetune</code>, rows with stage <code>final</code>): its "
            "top-1 after the search's short fine-tune (the proxy the search ranked it by) against its top-1 after "
            "the final recovery (re-pruned from the dense model, recovered for the epochs shown). Points above the "
            "diagonal gained from the recovery. Kendall's tau says whether the recovered strategies keep the order "
            "the proxy gave them (1: the same order; needs at least 3 of the same target; recover more with "
            "<code>--top-k</code>).")


def recovery_pairs(search: Any, final: Any) -> pd.DataFrame:
    """One row per ok final recovery: its target, series, proxy and recovered top-1, epochs."""
    search, final = prepare_frame(search), add_target_columns(prepare_frame(final))
    ok = final[(final["status"] == "ok") & final["top1_after"].notna()]
    proxies = search.set_index(["experiment", "trial_id"])["top1_after"]
    rows = []
    for _, row in ok.iterrows():
        proxy = proxies.get((row["experiment"], row["source_trial_id"]))
        rows.append({"series": row["series"], "target": row["target"], "source_trial_id": row["source_trial_id"],
                     "proxy": None if proxy is None or pd.isna(proxy) else float(proxy),
                     "recovered": float(row["top1_after"]), "epochs": int(row["recovery_epochs"]),
                     "macs": row["macs"]})
    return pd.DataFrame(rows, columns=["series", "target", "source_trial_id", "proxy", "recovered", "epochs", "macs"])


def rank_correlation(pairs: pd.DataFrame) -> list[dict[str, Any]]:
    """Kendall's tau (tau-b, two-sided p) of proxy against recovered top-1 per (series, target)
    with at least 3 recovered strategies."""
    out = []
    for (series, target), group in pairs.dropna(subset=["proxy"]).groupby(["series", "target"], sort=True):
        if len(group) >= 3:
            result = kendalltau(group["proxy"], group["recovered"])
            out.append({"series": series, "target": target, "n": len(group), "tau": float(result.statistic),
                        "p": float(result.pvalue)})
    return out


def _figure(pairs: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    for series, group in pairs.dropna(subset=["proxy"]).groupby("series", sort=True):
        fig.add_trace(go.Scatter(
            x=group["proxy"], y=group["recovered"], mode="markers", name=escape(series),
            text=[f"{escape(t)}<br>trial {escape(s)}<br>{e} epochs" for t, s, e in
                  zip(group["target"], group["source_trial_id"], group["epochs"])],
            hovertemplate="%{text}<br>proxy %{x:.2%} → recovered %{y:.2%}<extra></extra>"))
    values = pd.concat([pairs["proxy"].dropna(), pairs["recovered"]])
    low, high = (float(values.min()), float(values.max())) if len(values) else (0.0, 1.0)
    fig.add_trace(go.Scatter(x=[low, high], y=[low, high], mode="lines", name="no change",
                             line={"dash": "dot", "color": "#999"}, hoverinfo="skip"))
    fig.update_layout(title="Proxy vs recovered top-1", xaxis_title="top-1 after the search's fine-tune (proxy)",
                      yaxis_title="top-1 after the final recovery", height=440, template="plotly_white")
    return fig


def recovery_section(search: Any, final: Any, figure_div) -> str:
    """The HTML section, or "" when no recovery is stored."""
    pairs = recovery_pairs(search, final)
    if pairs.empty:
        return ""
    rows = "".join(
        f"<tr><td>{escape(r.series)}</td><td>{escape(r.target)}</td><td>{escape(r.source_trial_id)}</td>"
        f"<td>{'-' if r.proxy is None or pd.isna(r.proxy) else format(r.proxy, '.2%')}</td><td>{r.recovered:.2%}</td>"
        f"<td>{'-' if r.proxy is None or pd.isna(r.proxy) else format((r.recovered - r.proxy) * 100, '+.2f')}</td>"
        f"<td>{r.epochs}</td></tr>" for r in pairs.itertuples())
    taus = rank_correlation(pairs)
    tau_text = ("; ".join(f"{escape(t['series'])} at {escape(t['target'])}: " + (
        f"tau {t['tau']:+.2f} over {t['n']} strategies (p {t['p']:.3f})" if t["tau"] == t["tau"] else
        f"undefined over {t['n']} strategies (every proxy or every recovered top-1 is the same)") for t in taus)
                if taus else "fewer than 3 recovered strategies per target: no rank correlation")
    return "".join([
        '<section id="recovery"><h2>Final recovery</h2>', f'<p class="explain">{_EXPLAIN}</p>',
        figure_div(_figure(pairs), "figure-recovery"),
        "<table><tr><th>series</th><th>target</th><th>search trial</th><th>proxy top-1</th><th>recovered top-1</th>"
        f"<th>gain (pp)</th><th>epochs</th></tr>{rows}</table>",
        f"<p>Rank correlation (Kendall's tau-b, proxy vs recovered): {tau_text}.</p></section>"])


def signals_section(frame: Any) -> str:
    """How well the signals measured before the fine-tune rank the strategies (only when adaptive
    BatchNorm was measured: ``evaluation.adaptive_bn_batches``), or ""."""
    frame = prepare_frame(frame)
    if "top1_adaptive_bn" not in frame.columns or not frame["top1_adaptive_bn"].notna().any():
        return ""
    rows = "".join(
        f"<tr><td>{escape(r.series)}</td><td>{escape(SIGNALS[r.signal])}</td><td>{r.groups}</td><td>{r.trials}</td>"
        f"<td>{'-' if r.tau is None else format(r.tau, '+.2f')}</td></tr>" for r in signal_rankings(frame, "series"))
    return "".join([
        '<section id="signals"><h2>Early signals</h2><p class="explain">Kendall\'s tau-b of each signal measured '
        "before the fine-tune against the top-1 after it, within each run and target (at least 3 trials), then "
        "averaged weighted by trial pairs: 1 means the signal orders strategies exactly as the fine-tune does, "
        "0 not at all. A signal that ranks well could stop bad strategies before their fine-tune.</p>",
        "<table><tr><th>series</th><th>signal</th><th>run x target groups</th><th>trials</th><th>mean tau</th></tr>",
        rows, "</table></section>"])
