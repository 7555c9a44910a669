"""The report's multi-fidelity section, from rows with rungs alone."""

from __future__ import annotations

import dataclasses
import json

from multi_agent_pruning.reports import write_report
from multi_agent_pruning.reports.fidelity import rung_table
from multi_agent_pruning.results import ResultStore


def _rungs(row, reached: int, base: int = 5):
    entries = [{"rung": k, "budget": 3**k, "steps": base * 3**k, "top1": 0.5 + 0.1 * k} for k in range(reached)]
    return dataclasses.replace(row, rung=reached - 1, stopped_early=reached < 3, rungs_json=json.dumps(entries),
                               steps_trained=entries[-1]["steps"], top1_after=entries[-1]["top1"])


def test_rung_section_counts_where_trials_ended_and_the_steps_spent(clean_rows_factory, tmp_path):
    ok = [r for r in clean_rows_factory() if r.method == "multi_agent" and r.status == "ok"][:3]
    store = ResultStore(tmp_path / "asha")
    store.append([_rungs(row, reached) for row, reached in zip(ok, (1, 2, 3))])
    table = rung_table(store.read())
    assert len(table) == 6 and sorted(table["budget"]) == [1, 1, 1, 3, 3, 9]
    assert table.groupby("trial_id")["stopped"].first().sum() == 2
    page = write_report(store.root).read_text()
    assert 'id="rungs"' in page and 'id="figure-rungs"' in page
    # ended at rung 0, 1 and 2 once each; 5 + 15 + 45 = 65 steps against 3 x 45 = 135 (48 %)
    assert "<td>multi_agent</td><td>3</td><td>rung 0: 1, rung 1: 1, rung 2: 1</td><td>65</td><td>135</td><td>48%</td>" \
        in page
    plain = ResultStore(tmp_path / "plain")
    plain.append(clean_rows_factory())
    assert 'id="rungs"' not in write_report(plain.root).read_text()
