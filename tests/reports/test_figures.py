"""The report's figures from a synthetic table: which traces, which numbers."""

from __future__ import annotations

import dataclasses

import pytest

from multi_agent_pruning.reports import FIGURE_IDS, build_figures, figures_json, pareto_front
from multi_agent_pruning.reports.data import prepare_frame
from multi_agent_pruning.results import ResultStore


@pytest.fixture(scope="module")
def figures(tmp_path_factory, clean_rows_factory):
    store = ResultStore(tmp_path_factory.mktemp("figures") / "results")
    store.append(clean_rows_factory())
    return build_figures(prepare_frame(store.read()))


def test_pareto_front():
    points = [(5.0, 60.0), (4.2, 70.0), (3.0, 65.0), (4.16, 72.0), (3.0, 64.0), (6.0, 72.0)]
    assert pareto_front(points) == [(3.0, 65.0), (4.16, 72.0)]
    assert pareto_front([]) == []


def test_figure_ids(figures):
    assert tuple(figures) == FIGURE_IDS == ("accuracy-vs-macs", "convergence", "success-rate", "stage-times",
                                            "paper-reproduction")


def test_accuracy_vs_macs(figures):
    """One target (remove 75 %): each method's line is a single point, the mean of its two runs' bests."""
    fig = figures["accuracy-vs-macs"]
    assert [t.name for t in fig.data] == ["multi_agent trials", "multi_agent", "multi_agent Pareto front",
                                          "taylor trials", "taylor", "taylor Pareto front", "paper targets"]
    ours, line, front = fig.data[0], fig.data[1], fig.data[2]
    assert list(ours.x) == [3.0, 4.16, 4.2, 5.0]
    assert list(ours.y) == pytest.approx([65.0, 72.0, 70.0, 60.0])
    assert ours.marker.opacity < 0.5 and ours.showlegend is False
    # Best per run: run 0 70 % at 4.2 G, run 1 72 % at 4.16 G.
    assert list(line.x) == pytest.approx([(4.2 + 4.16) / 2]) and list(line.y) == pytest.approx([71.0])
    assert list(line.error_y.array) == pytest.approx([2 ** 0.5]) and line.error_y.visible
    assert "lines" in line.mode and "remove 75% of MACs" in line.hovertext[0]
    assert "± 1.41% (std over 2 runs), range 70.00% to 72.00%" in line.hovertext[0]
    assert (list(front.x), list(front.y)) == (pytest.approx([3.0, 4.16]), pytest.approx([65.0, 72.0]))
    taylor_line, taylor_front = fig.data[4], fig.data[5]
    assert list(taylor_line.x) == pytest.approx([4.75]) and list(taylor_line.y) == pytest.approx([56.5])
    assert list(taylor_line.error_y.array) == pytest.approx([4.5 ** 0.5])  # 55 and 58: variance 2 * 1.5^2 / 1
    assert (list(taylor_front.x), list(taylor_front.y)) == (pytest.approx([2.6, 4.5]), pytest.approx([50.0, 58.0]))
    paper = fig.data[6]
    assert list(paper.x) == pytest.approx([4.16, 2.61, 1.21, 0.62])
    assert list(paper.y) == pytest.approx([82.41, 81.13, 77.5, 72.6])
    assert fig.layout.xaxis.title.text == "MACs (G)"
    assert "±1 std (ddof 1) over runs" in fig.layout.legend.title.text
    # These rows have no base_top1 (as tables before schema version 2): the dense model is a line.
    (dense,) = fig.layout.shapes
    assert (dense.x0, dense.x1) == (pytest.approx(17.58), pytest.approx(17.58))
    assert [a.text for a in fig.layout.annotations] == ["dense deit_base: 17.58 G"]
    assert "trial multi_agent-0-4 (run 0, iteration 1)" in ours.hovertext[0]
    assert "top-1 65.00% (before fine-tuning 32.50%)" in ours.hovertext[0]


def test_convergence(figures):
    fig = figures["convergence"]
    assert [t.name for t in fig.data] == ["multi_agent (run 0)", "multi_agent (run 1)", "taylor (run 0)",
                                          "taylor (run 1)"]
    assert list(fig.data[0].x) == [1, 2, 3, 4]
    assert list(fig.data[0].y) == pytest.approx([None, 60.0, 70.0, 70.0])
    assert list(fig.data[1].y) == pytest.approx([72.0, 72.0])
    assert list(fig.data[2].y) == pytest.approx([55.0, 55.0])
    assert "best so far none yet" in fig.data[0].hovertext[0]


def test_success_rate(figures):
    fig = figures["success-rate"]
    assert [t.name for t in fig.data] == ["ok", "failed", "rejected"]
    assert list(fig.data[0].x) == ["multi_agent", "taylor"]
    assert list(fig.data[0].y) == pytest.approx([400 / 6, 75.0])
    assert list(fig.data[1].text) == ["1", "1"] and list(fig.data[2].text) == ["1", ""]
    assert "most common (1x): CUDA out of memory" in fig.data[1].hovertext[0]
    assert fig.layout.barmode == "stack"


def test_stage_times(figures):
    fig = figures["stage-times"]
    assert [t.name for t in fig.data] == ["prune", "fine-tune", "evaluate"]
    # The failed trial measured its prune stage (0.5 s) and counts there, not in the others.
    assert list(fig.data[0].y) == pytest.approx([(1 + 2 + 3 + 4 + 0.5) / 5, 1.0])
    assert list(fig.data[1].y) == pytest.approx([8.0, 8.0])
    assert "mean over 5 trials" in fig.data[0].hovertext[0]


def test_paper_reproduction_heatmap(figures):
    blank, values = figures["paper-reproduction"].data
    assert list(values.x) == ["multi_agent", "taylor"]
    assert len(values.y) == 7 and values.y[0] == "DeiT-4.2G (Isomorphic Pruning, deit_base, imagenet)"
    assert values.z[0][0] == pytest.approx((0.72 - 0.8241) * 100)
    assert values.z[0][1] is None and list(blank.z[0]) == [None, 0]
    assert list(values.text[0]) == ["-10.41 pp", "no data"]
    assert values.z[1][1] == pytest.approx((0.50 - 0.8113) * 100)
    assert all(v is None for row in values.z[2:] for v in row)
    assert list(values.text[6]) == ["no data", "no data"]
    assert "no ok rows of resnet56 on cifar10" in values.hovertext[6][0]


def test_figures_are_deterministic(clean_store):
    first = figures_json(clean_store.read())
    second = figures_json(clean_store.read())
    assert first == second and set(first) == set(FIGURE_IDS)


def test_several_experiments_never_pair_across_experiments(tmp_path, clean_rows_factory):
    store = ResultStore(tmp_path / "results")
    rows = clean_rows_factory()
    store.append(rows + [dataclasses.replace(row, experiment="demo2") for row in rows])
    figures = build_figures(prepare_frame(store.read()))
    names = [t.name for t in figures["accuracy-vs-macs"].data if "lines" in t.mode and "Pareto" not in t.name]
    assert names == ["demo / multi_agent", "demo2 / multi_agent", "demo / taylor", "demo2 / taylor"]
    _, values = figures["paper-reproduction"].data
    assert list(values.x) == ["multi_agent", "taylor"]
    assert values.text[0][0] == "-10.41 pp"
