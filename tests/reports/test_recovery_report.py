"""The report's final-recovery section: proxy vs recovered top-1 per recovered strategy, and
Kendall's tau of the two rankings, from the table's final rows alone."""

from __future__ import annotations

import dataclasses

import pytest

from multi_agent_pruning.reports import write_report
from multi_agent_pruning.reports.recovery import rank_correlation, recovery_pairs
from multi_agent_pruning.results import ResultStore


def _final(row, top1, epochs=30):
    return dataclasses.replace(row, trial_id=f"final-{row.trial_id}", stage="final", source_trial_id=row.trial_id,
                               recovery_epochs=epochs, top1_after=top1)


def test_final_rows_make_a_recovery_section_with_the_rank_correlation(clean_store, clean_rows_factory, tmp_path):
    ok = [r for r in clean_rows_factory() if r.method == "multi_agent" and r.status == "ok"]
    # proxies 0.60, 0.70, 0.65, 0.72 -> recovered 0.75, 0.80, 0.78, 0.79: one discordant pair of 6
    clean_store.append([_final(r, top1) for r, top1 in zip(ok, (0.75, 0.80, 0.78, 0.79))])
    search = clean_store.read()
    final = clean_store.read(stage="final")
    pairs = recovery_pairs(search, final)
    assert list(pairs["proxy"]) == [0.60, 0.70, 0.65, 0.72] and list(pairs["recovered"]) == [0.75, 0.80, 0.78, 0.79]
    (tau,) = rank_correlation(pairs)
    assert (tau["series"], tau["n"]) == ("multi_agent", 4)
    assert tau["tau"] == pytest.approx((5 - 1) / 6)  # 5 concordant, 1 discordant pair
    page = write_report(clean_store.root).read_text()
    assert 'id="recovery"' in page and 'id="figure-recovery"' in page
    assert "tau +0.67 over 4 strategies" in page
    assert "<td>60.00%</td><td>75.00%</td><td>+15.00</td><td>30</td>" in page
    # The search statistics are untouched by the recoveries: same page without them, but the section.
    plain = ResultStore(tmp_path / "plain")
    plain.append(clean_rows_factory())
    assert 'id="recovery"' not in write_report(plain.root).read_text()


def test_fewer_than_three_recoveries_give_no_correlation(clean_store, clean_rows_factory):
    ok = [r for r in clean_rows_factory() if r.method == "multi_agent" and r.status == "ok"]
    clean_store.append([_final(ok[0], 0.7)])
    page = write_report(clean_store.root).read_text()
    assert "fewer than 3 recovered strategies per target: no rank correlation" in page


def test_signal_rankings_per_run_and_target(clean_rows_factory):
    import dataclasses as dc

    import pandas as pd

    from multi_agent_pruning.stats.fidelity import signal_rankings

    ok = [r for r in clean_rows_factory() if r.method == "multi_agent" and r.status == "ok" and r.run == 0]
    # run 0's top-1 after: 0.60, 0.70, 0.65; adaptive BN in the same order, top-1 before reversed
    rows = [dc.replace(r, top1_adaptive_bn=a, top1_before=b) for r, a, b in zip(ok, (0.3, 0.5, 0.4), (0.5, 0.3, 0.4))]
    frame = pd.DataFrame([r.to_row() for r in rows])
    found = {(s.series, s.signal): s for s in signal_rankings(frame)}
    assert found[("multi_agent", "top1_adaptive_bn")].tau == pytest.approx(1.0)
    assert found[("multi_agent", "top1_before")].tau == pytest.approx(-1.0)
    assert found[("multi_agent", "top1_adaptive_bn")].groups == 1 and found[("multi_agent", "top1_adaptive_bn")].trials == 3
    # Fewer than 3 trials in every (run, target): no tau.
    assert signal_rankings(frame.iloc[:2])[0].tau is None


def test_the_early_signals_section_appears_when_adaptive_bn_was_measured(clean_store, clean_rows_factory, tmp_path):
    import dataclasses as dc

    assert 'id="signals"' not in write_report(clean_store.root).read_text()
    ok = [r for r in clean_rows_factory() if r.method == "multi_agent" and r.status == "ok" and r.run == 0]
    store = ResultStore(tmp_path / "adaptive")
    store.append([dc.replace(r, top1_adaptive_bn=a) for r, a in zip(ok, (0.3, 0.5, 0.4))])
    page = write_report(store.root).read_text()
    assert 'id="signals"' in page
    assert "<td>multi_agent</td><td>top-1 after adaptive BatchNorm</td><td>1</td><td>3</td><td>+1.00</td>" in page
