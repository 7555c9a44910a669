"""write_report: paths, errors, offline page, determinism, and escaping of every data string."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from plotly.offline import get_plotlyjs

from multi_agent_pruning.exceptions import ResultStoreError, UnknownNameError
from multi_agent_pruning.reports import render_report_html, write_report
from multi_agent_pruning.reports.data import prepare_frame
from multi_agent_pruning.reports.figures import build_figures
from multi_agent_pruning.results import ResultStore, TrialResult

SCRIPT = "<script>window.__pwned=1</script>"
IMG = "<img src=x onerror=window.__pwned=2>"
WHEN = dt.datetime(2025, 7, 1, 12, 0, tzinfo=dt.timezone.utc)


def test_default_output_is_next_to_the_results(clean_store):
    path = write_report(clean_store.root)
    assert path == clean_store.root.parent / "report.html"
    html = path.read_text()
    assert html.count('class="plotly-graph-div"') == 5
    assert "<dt>Experiment</dt><dd>demo</dd>" in html
    assert "<dt>Model</dt><dd>deit_base</dd>" in html
    assert "<dt>Target</dt><dd>remove 75% of MACs</dd>" in html
    assert "10 trials: 7 ok, 2 failed, 1 rejected" in html
    assert f"<code>mapruner report {clean_store.root}</code>" in html
    assert "2025-06-01T08:00:00+00:00" in html and "2025-06-01T08:10:00+00:00" in html
    assert not (clean_store.root.parent / ".report.html.tmp").exists()


def test_experiment_folder_and_explicit_output(clean_store, tmp_path):
    out = tmp_path / "elsewhere" / "r.html"
    path = write_report(clean_store.root.parent, out, experiment="demo", title="My report")
    html = path.read_text()
    assert path == out and "<title>My report</title>" in html
    assert f"mapruner report {clean_store.root.parent} --experiment demo -o {out}" in html


def test_bad_input_is_reported(clean_store, tmp_path):
    with pytest.raises(UnknownNameError, match="Unknown experiment 'dem'. Did you mean: demo"):
        write_report(clean_store.root, experiment="dem")
    with pytest.raises(ResultStoreError, match="No results directory at"):
        write_report(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ResultStoreError, match="No trial results under"):
        write_report(tmp_path / "empty")


def test_page_opens_offline(clean_store):
    html = write_report(clean_store.root).read_text()
    plotly_js = get_plotlyjs()
    assert html.count(plotly_js) == 1
    page = html.replace(plotly_js, "")  # plotly.js itself names CDNs for map tiles, unused here
    assert "<script src" not in page and "https://" not in page and "http://" not in page


def test_statistics_section(clean_store):
    html = write_report(clean_store.root).read_text()
    assert "<td>multi_agent</td><td>2</td><td>71.00 [70.00, 72.00]</td>" in html
    assert "difference vs multi_agent (pp) [95% CI]" in html
    assert "<td>taylor</td><td>2</td><td>56.50 [55.00, 58.00]</td><td>2.12</td><td>-14.50 [-15.00, -14.00]</td>" in html
    assert "Friedman test not computed: needs at least 3 methods, got 2." in html
    assert "<td>CUDA out of memory</td><td>2</td>" not in html  # counted per method, not pooled
    assert "<td>taylor</td><td>failed</td><td>RuntimeError</td><td>CUDA out of memory</td><td>1</td>" in html


def test_same_table_same_page(clean_store):
    table = clean_store.read()
    first = render_report_html(table, source="x", regenerate="mapruner report x", generated_at=WHEN)
    second = render_report_html(clean_store.read(), source="x", regenerate="mapruner report x", generated_at=WHEN)
    assert first == second
    later = render_report_html(table, source="x", regenerate="mapruner report x",
                               generated_at=WHEN + dt.timedelta(days=1))
    differing = [(a, b) for a, b in zip(first.splitlines(), later.splitlines()) if a != b]
    assert len(differing) == 1 and differing[0][0].startswith("<footer>Generated 2025-07-01T12:00:00+00:00")


def test_hostile_text_is_escaped_everywhere(hostile_store):
    html = write_report(hostile_store.root).read_text()
    plotly_js = get_plotlyjs()
    page = html.replace(plotly_js, "")
    assert SCRIPT not in page and IMG not in page
    assert "<img" not in page and "onerror=window" not in page.replace("onerror=window.__pwned=2&gt;", "")
    assert re.findall(r"<script\b", page) == ['<script'] * 6  # plotly.js + one per figure
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in page  # tables and header
    assert "&lt;img src=x onerror=window.__pwned=2&gt; &lt;script&gt;" in page  # failures table
    figures = build_figures(prepare_frame(hostile_store.read()))
    escaped_name = "&lt;script&gt;window.__pwned=1&lt;/script&gt;"
    scatter = next(t for t in figures["accuracy-vs-macs"].data if t.name == f"{escaped_name} trials")
    assert "reasoning: &lt;script&gt;window.__pwned=1&lt;/script&gt; &lt;img src=x" in scatter.hovertext[0]
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in figures["success-rate"].data[0].x
    for fig in figures.values():
        assert SCRIPT not in fig.to_json() and IMG not in fig.to_json()


def test_store_rows_survive_a_rerender(hostile_store):
    """The report is a pure function of the stored rows: re-reading the store changes nothing."""
    again = ResultStore(hostile_store.root).read()
    first = render_report_html(hostile_store.read(), generated_at=WHEN)
    assert render_report_html(again, generated_at=WHEN) == first


def test_a_table_without_any_ok_trial_still_renders(tmp_path):
    store = ResultStore(tmp_path / "results")
    store.append([TrialResult.failed(experiment="e", run=run, method=method, model="deit_tiny", dataset="digits",
                                     seed=0, trial_id=f"{method}{run}", iteration=0, target_kind="macs",
                                     error="boom")
                  for method in ("a", "b", "c") for run in range(2)])
    html = write_report(store.root).read_text()
    assert html.count('class="plotly-graph-div"') == 5
    assert "Friedman test not computed: needs at least 3 methods, got 0." in html
    assert "<td>a</td><td>failed</td><td>-</td><td>boom</td><td>2</td>" in html
