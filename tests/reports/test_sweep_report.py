"""The report of a sweep (issue 21): a line per method through its best top-1 per target, the
frontier tables, convergence per target. Expected numbers are worked out by hand from the table
in conftest.py (``SWEEP_TRIALS``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

import pytest

from multi_agent_pruning.reports import build_figures, figures_json, render_report_html, write_report
from multi_agent_pruning.reports.data import prepare_frame
from multi_agent_pruning.results import ResultStore

SCRIPT = "<script>window.__pwned=1</script>"
IMG = "<img src=x onerror=window.__pwned=2>"
WHEN = dt.datetime(2025, 7, 1, 12, 0, tzinfo=dt.timezone.utc)
TARGETS = ["remove 50% of MACs", "remove 70% of MACs", "remove 85% of MACs", "remove 90% of MACs"]
SQRT2 = math.sqrt(2)  # the std (ddof 1) of two values 1 pp apart from their mean is sqrt(2) pp
# Frontier areas by hand: sum over the run's best points, sorted by MACs kept, of
# (next point's MACs fraction, or 1) - (this one's)) * (best top-1 so far).
AREA = {
    ("multi_agent", 0): 0.05 * 0.70 + 0.14 * 0.80 + 0.21 * 0.86 + 0.50 * 0.90,  # 0.7776
    ("multi_agent", 1): 0.05 * 0.74 + 0.16 * 0.78 + 0.19 * 0.84 + 0.50 * 0.92,  # 0.7814
    ("taylor", 0): 0.15 * 0.70 + 0.20 * 0.80 + 0.50 * 0.89,  # 0.71, misses the 90 % target
    ("taylor", 1): 0.05 * 0.50 + 0.15 * 0.66 + 0.20 * 0.82 + 0.50 * 0.87,  # 0.723
}


@pytest.fixture(scope="module")
def sweep_table(tmp_path_factory, sweep_rows_factory):
    store = ResultStore(tmp_path_factory.mktemp("sweep") / "results")
    store.append(sweep_rows_factory())
    return store.read()


@pytest.fixture(scope="module")
def figures(sweep_table):
    return build_figures(prepare_frame(sweep_table))


@pytest.fixture(scope="module")
def page(sweep_table):
    return render_report_html(sweep_table, source="x", regenerate="mapruner report x", generated_at=WHEN)


def test_a_line_per_method_through_the_mean_best_per_target(figures):
    fig = figures["accuracy-vs-macs"]
    assert [t.name for t in fig.data] == ["multi_agent trials", "multi_agent", "taylor trials", "taylor",
                                          "dense compact_cnn"]
    ours, taylor = fig.data[1], fig.data[3]
    assert "lines" in ours.mode and "lines" in taylor.mode
    # Easiest target first; x is the mean MACs (M) of the best trials: (2.9 + 3.1) / 2 at 70 %.
    assert list(ours.x) == pytest.approx([5.0, 3.0, 1.5, 1.0])
    assert list(ours.y) == pytest.approx([91.0, 85.0, 79.0, 72.0])
    assert list(ours.error_y.array) == pytest.approx([SQRT2, SQRT2, SQRT2, 2 * SQRT2])
    assert ours.error_y.visible and ours.error_y.type == "data"
    assert list(taylor.x) == pytest.approx([5.0, 3.0, 1.5, 1.0])
    assert list(taylor.y) == pytest.approx([88.0, 81.0, 68.0, 50.0])
    # At 90 % only run 1 has an ok trial: no spread to draw.
    assert list(taylor.error_y.array[:3]) == pytest.approx([SQRT2, SQRT2, 2 * SQRT2])
    assert taylor.error_y.array[3] is None
    assert list(ours.text) == TARGETS
    assert ("remove 70% of MACs<br>best top-1, mean over runs: 85.00% ± 1.41% (std over 2 runs), range 84.00% "
            "to 86.00%<br>run 0: 86.00%, run 1: 84.00%<br>mean MACs of those best trials: 3 M (30.0% of the "
            "dense model)") in ours.hovertext[1]
    assert "1 run, no spread<br>run 1: 50.00%" in taylor.hovertext[3]


def test_every_trial_is_a_faint_point_and_the_dense_model_a_point(figures):
    fig = figures["accuracy-vs-macs"]
    trials = fig.data[0]
    assert sorted(trials.x) == pytest.approx([1.0, 1.0, 1.5, 1.5, 2.9, 3.0, 3.1, 4.9, 5.0, 5.0])
    assert sorted(trials.y) == pytest.approx([70, 74, 78, 80, 84, 85, 86, 88, 90, 92])
    assert trials.mode == "markers" and trials.marker.opacity < 0.5
    assert not any("Pareto" in t.name for t in fig.data)  # the per-target line replaces it in a sweep
    # The rows carry the dense model's top-1 (base_top1 = 0.97): a point at (10 M, 97 %), no line.
    dense = fig.data[-1]
    assert (list(dense.x), list(dense.y)) == (pytest.approx([10.0]), pytest.approx([97.0]))
    assert dense.mode == "markers+text" and dense.marker.symbol == "square"
    assert "97.00% on the evaluation set" in dense.hovertext[0]
    assert not fig.layout.shapes and not fig.layout.annotations
    assert fig.layout.xaxis.title.text == "MACs (M)"


def test_convergence_has_a_panel_per_target(figures):
    fig = figures["convergence"]
    assert [a.text for a in fig.layout.annotations] == TARGETS
    by_panel: dict[str, dict[str, list]] = {}
    for trace in fig.data:
        by_panel.setdefault(trace.xaxis, {})[trace.name] = list(trace.y)
    assert sorted(by_panel) == ["x", "x2", "x3", "x4"]
    assert by_panel["x"] == {"multi_agent (run 0)": pytest.approx([88.0, 90.0]),
                             "multi_agent (run 1)": pytest.approx([92.0]),
                             "taylor (run 0)": pytest.approx([89.0]), "taylor (run 1)": pytest.approx([87.0])}
    assert by_panel["x2"]["multi_agent (run 0)"] == pytest.approx([85.0, 86.0])
    assert by_panel["x2"]["taylor (run 0)"] == pytest.approx([80.0, 80.0])  # 79 % did not improve
    # 90 %: an ok trial then the failed one; taylor run 0 has only the failure. The trials that
    # failed before they had a strategy (no target) are in no panel.
    assert by_panel["x4"]["multi_agent (run 0)"] == pytest.approx([70.0, 70.0])
    assert by_panel["x4"]["taylor (run 0)"] == [None]
    assert sum(len(t.x) for t in fig.data) == 26 - 4
    assert [t.name for t in fig.data if t.showlegend is not False] == [
        "multi_agent (run 0)", "multi_agent (run 1)", "taylor (run 0)", "taylor (run 1)"]
    assert "remove 90% of MACs<br>trial 2 (multi_agent-0-07)" in fig.data[12].hovertext[1]


def test_the_frontier_table_lists_the_best_per_target_and_method(page):
    assert '<dt>Target</dt><dd>remove 50% of MACs, remove 70% of MACs, remove 85% of MACs, remove 90% of MACs</dd>' \
        in page
    assert page.index('id="accuracy-vs-macs"') < page.index('id="frontier"') < page.index('id="convergence"')
    expected = [
        ["remove 50% of MACs", "multi_agent", "2", "91.00", "1.41", "90.00 to 92.00", "5", "50.0"],
        ["remove 50% of MACs", "taylor", "2", "88.00", "1.41", "87.00 to 89.00", "5", "50.0"],
        ["remove 70% of MACs", "multi_agent", "2", "85.00", "1.41", "84.00 to 86.00", "3", "30.0"],
        ["remove 70% of MACs", "taylor", "2", "81.00", "1.41", "80.00 to 82.00", "3", "30.0"],
        ["remove 85% of MACs", "multi_agent", "2", "79.00", "1.41", "78.00 to 80.00", "1.5", "15.0"],
        ["remove 85% of MACs", "taylor", "2", "68.00", "2.83", "66.00 to 70.00", "1.5", "15.0"],
        ["remove 90% of MACs", "multi_agent", "2", "72.00", "2.83", "70.00 to 74.00", "1", "10.0"],
        ["remove 90% of MACs", "taylor", "1", "50.00", "-", "50.00 to 50.00", "1", "10.0"],
    ]
    table = page[page.index('<table class="frontier">'):]
    table = table[:table.index("</table>")]
    assert "<th>mean MACs (M)</th>" in table
    body = table[table.index("<tbody>"):]
    rows = [row.split("</td><td>") for row in body.removeprefix("<tbody><tr><td>").removesuffix(
        "</td></tr></tbody>").split("</td></tr><tr><td>")]
    assert rows == expected


def test_the_frontier_area_table_and_its_paired_test(page):
    ours = (AREA["multi_agent", 0] + AREA["multi_agent", 1]) / 2
    taylor = (AREA["taylor", 0] + AREA["taylor", 1]) / 2
    assert (round(ours * 100, 2), round(taylor * 100, 2)) == (77.95, 71.65)
    assert "Reference accuracy: 0.0 (top-1 0%)." in page
    assert "Frontier area: the share of the square" in page
    section = page[page.index('id="frontier"'):page.index('id="convergence"')]
    assert "<th>mean frontier area (% of the ideal) [95% CI]</th>" in section
    assert "<td>multi_agent</td><td>2</td><td>77.95 [77.76, 78.14]</td><td>0.27</td><td>reference</td>" in section
    # taylor - multi_agent per run: 71.00 - 77.76 and 72.30 - 78.14, mean -6.30.
    assert ("<td>taylor</td><td>2</td><td>71.65 [71.00, 72.30]</td><td>0.92</td><td>-6.30 [-6.76, -5.84]</td>"
            "<td>2</td><td>0.5 (0.5)</td>") in section
    assert ("<tr><td>multi_agent</td><td>77.76 (4/4 targets)</td><td>78.14 (4/4 targets)</td></tr>"
            "<tr><td>taylor</td><td>71.00 (3/4 targets)</td><td>72.30 (4/4 targets)</td></tr>") in section
    statistics = page[page.index('id="statistics"'):]
    assert "mostly the easiest target" in statistics


def test_a_single_target_report_has_no_frontier_section(clean_store):
    html = write_report(clean_store.root).read_text()
    assert 'id="frontier"' not in html and "mostly the easiest target" not in html


def test_one_run_draws_no_error_bars(tmp_path, sweep_rows_factory):
    store = ResultStore(tmp_path / "results")
    store.append([row for row in sweep_rows_factory() if row.run == 0])
    fig = build_figures(prepare_frame(store.read()))["accuracy-vs-macs"]
    ours = fig.data[1]
    assert list(ours.y) == pytest.approx([90.0, 86.0, 80.0, 70.0]) and list(ours.x) == pytest.approx(
        [5.0, 2.9, 1.5, 1.0])
    assert ours.error_y.visible is False and list(ours.error_y.array) == [None] * 4


def test_sweep_figures_are_deterministic_and_escaped(tmp_path, sweep_table, sweep_rows_factory):
    assert figures_json(sweep_table) == figures_json(sweep_table)
    store = ResultStore(tmp_path / "results")
    store.append([dataclasses.replace(row, method=SCRIPT, error=IMG if row.error else None)
                  if row.method == "taylor" else row for row in sweep_rows_factory()])
    html = render_report_html(store.read(), generated_at=WHEN)
    section = html[html.index('id="frontier"'):html.index('id="convergence"')]
    assert SCRIPT not in section and "<td>&lt;script&gt;window.__pwned=1&lt;/script&gt;</td><td>2</td>" in section
    for fig in build_figures(prepare_frame(store.read())).values():
        assert SCRIPT not in fig.to_json() and IMG not in fig.to_json()
