"""Plotly HTML reports built from the results table alone (``mapruner report <results dir>``).

    from multi_agent_pruning.reports import write_report
    write_report("runs/quickstart/results")        # -> runs/quickstart/report.html

See docs/reports.md for what each figure shows.
"""

from multi_agent_pruning.reports.figures import FIGURE_IDS, build_figures, pareto_front
from multi_agent_pruning.reports.html import figures_json, render_report_html, write_report

__all__ = ["write_report", "render_report_html", "figures_json", "build_figures", "pareto_front", "FIGURE_IDS"]
