"""How well a cheap signal ranks strategies: Kendall's tau of a signal measured before the
fine-tune (``top1_before``: right after pruning; ``top1_adaptive_bn``: after re-estimating the
BatchNorm statistics) against the accuracy after it (``top1_after``).

A signal is only worth using to skip fine-tunes if it orders strategies as the fine-tune does.
The tau is computed within each (series, run, target) over its ok trials that have both values
(strategies are only comparable at the same target), then averaged over those groups, weighted by
their number of trial pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
from scipy.stats import kendalltau

from multi_agent_pruning.results.targets import add_target_columns

__all__ = ["SIGNALS", "SignalRanking", "signal_rankings"]

#: The signals measured before the fine-tune, with their names in words.
SIGNALS = {"top1_before": "top-1 right after pruning", "top1_adaptive_bn": "top-1 after adaptive BatchNorm"}


@dataclass(frozen=True)
class SignalRanking:
    """Kendall's tau-b of ``signal`` against ``top1_after`` for one series.

    Attributes:
        series / signal: What was compared.
        groups: (run, target) groups with at least 3 trials that have both values.
        trials: Trials in those groups.
        tau: Mean of the groups' tau, weighted by their number of pairs (None without a group).
        taus: Each group's tau, as ``{"run", "target", "n", "tau"}``.
    """

    series: str
    signal: str
    groups: int
    trials: int
    tau: float | None
    taus: tuple[dict[str, Any], ...]


def signal_rankings(frame: pd.DataFrame, group: str = "method") -> list[SignalRanking]:
    """One :class:`SignalRanking` per series and measured signal (signals never measured are left out)."""
    frame = add_target_columns(frame)
    ok = frame[(frame["status"] == "ok") & frame["top1_after"].notna()]
    out = []
    for signal in SIGNALS:
        if signal not in ok.columns or not ok[signal].notna().any():
            continue
        for series, rows in ok[ok[signal].notna()].groupby(group, sort=True):
            taus, weights = [], []
            for (run, target), part in rows.groupby(["run", "target"], sort=True, dropna=False):
                if len(part) < 3:
                    continue
                tau = kendalltau(part[signal].astype(float), part["top1_after"].astype(float)).statistic
                if tau == tau:  # undefined when every value of one side is equal
                    taus.append({"run": int(run), "target": target, "n": len(part), "tau": float(tau)})
                    weights.append(len(part) * (len(part) - 1) / 2)
            mean = sum(t["tau"] * w for t, w in zip(taus, weights)) / sum(weights) if weights else None
            out.append(SignalRanking(series=str(series), signal=signal, groups=len(taus),
                                     trials=sum(t["n"] for t in taus), tau=mean, taus=tuple(taus)))
    return out
