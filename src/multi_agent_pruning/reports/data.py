"""The report's view of the results table: one frame with a ``series`` column, and header facts.

Every string taken from the data goes through :func:`escape` before it reaches HTML or Plotly
(plotly.js renders hover text, names and tick labels as HTML).
"""

from __future__ import annotations

import html
import json
import textwrap
from typing import Any

import pandas as pd

from multi_agent_pruning.results import add_target_columns

__all__ = ["escape", "escape_block", "prepare_frame", "series_order", "reference_series", "header_facts",
           "macs_scale", "PREFERRED_REFERENCE"]

PREFERRED_REFERENCE = "multi_agent"
_MAX_BLOCK = 600


def escape(value: Any) -> str:
    """HTML-escaped text of ``value`` (quotes included); None becomes an empty string."""
    return "" if value is None else html.escape(str(value), quote=True)


def escape_block(value: Any, width: int = 80, limit: int = _MAX_BLOCK) -> str:
    """Long text for a hover box: truncated, wrapped, each line escaped, joined with ``<br>``."""
    text = "" if value is None else str(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    lines = textwrap.wrap(text, width=width, break_long_words=True, replace_whitespace=True) or [""]
    return "<br>".join(escape(line) for line in lines)


def prepare_frame(table: Any) -> pd.DataFrame:
    """The table as pandas with a ``series`` column: the method, or ``experiment / method``
    when the table holds several experiments (so runs of different experiments never pair)."""
    frame = table if isinstance(table, pd.DataFrame) else table.to_pandas()
    frame = frame.copy()
    if frame["experiment"].nunique() > 1:
        frame["series"] = frame["experiment"].astype(str) + " / " + frame["method"].astype(str)
    else:
        frame["series"] = frame["method"].astype(str)
    return frame


def series_order(frame: pd.DataFrame, column: str = "series") -> list[str]:
    """Names in ``column`` (series or method), the multi-agent one(s) first, then sorted."""
    names = sorted(str(name) for name in frame[column].unique())
    preferred = lambda name: name == PREFERRED_REFERENCE or name.endswith(f" / {PREFERRED_REFERENCE}")  # noqa: E731
    return sorted(names, key=lambda name: (not preferred(name), name))


def reference_series(frame: pd.DataFrame) -> str | None:
    """The series the others are compared with: the first of :func:`series_order`."""
    order = series_order(frame)
    return order[0] if order else None


def macs_scale(frame: pd.DataFrame) -> tuple[float, str]:
    """Divisor and unit that keep MACs readable: G, M, K or none."""
    values = pd.concat([frame["macs"], frame["base_macs"]]).dropna()
    largest = float(values.max()) if len(values) else 0.0
    for divisor, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if largest >= divisor:
            return divisor, unit
    return 1.0, ""


def _unique(frame: pd.DataFrame, column: str) -> list[str]:
    return sorted(str(v) for v in frame[column].dropna().unique())


def _targets(frame: pd.DataFrame) -> list[str]:
    """Target labels, easiest first; only the kinds when no row states a target (all failed early)."""
    labelled = add_target_columns(frame).dropna(subset=["target"]).sort_values("target_order", kind="stable")
    if len(labelled):
        return list(dict.fromkeys(labelled["target"]))
    return _unique(frame, "target_kind")


def _versions(frame: pd.DataFrame) -> list[str]:
    out = []
    for text in _unique(frame, "versions_json"):
        try:
            data = json.loads(text)
        except ValueError:
            out.append(text)
            continue
        out.append(", ".join(f"{key} {value}" for key, value in sorted(data.items()) if value))
    return out


def _when(series: pd.Series) -> str | None:
    values = series.dropna()
    return None if values.empty else values.iloc[0].isoformat(timespec="seconds")


def header_facts(frame: pd.DataFrame) -> dict[str, list[str] | str | None]:
    """Raw (unescaped) facts for the report header."""
    counts = frame["status"].value_counts()
    return {
        "experiments": _unique(frame, "experiment"), "models": _unique(frame, "model"),
        "datasets": _unique(frame, "dataset"), "methods": series_order(frame), "targets": _targets(frame),
        "first_start": _when(frame["started_at"].sort_values()),
        "last_finish": _when(frame["finished_at"].sort_values(ascending=False)),
        "versions": _versions(frame), "hosts": _unique(frame, "host"),
        "trials": (f"{len(frame)} trials: {int(counts.get('ok', 0))} ok, {int(counts.get('failed', 0))} failed, "
                   f"{int(counts.get('rejected', 0))} rejected"),
    }
