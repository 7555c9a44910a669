"""Issue 18, round two of bad input to a run: impossible targets and trial resources found before
Ray starts, resumes that do not match the run they continue, a damaged experiment record, rows
edited in the table, report outputs that cannot be written, and an empty --methods list. Each is
one message and exit 2 (CLI) or a ConfigurationError (API), and nothing stored is changed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from multi_agent_pruning.cli import main
from multi_agent_pruning.utils.atomic import atomic_write_json
from multi_agent_pruning.orchestrator.tune_run import usable_history
from multi_agent_pruning.results import ResultStore, TrialResult
from multi_agent_pruning.results.schema import RESULT_SCHEMA

QUICKSTART = "tests/support/quickstart_single.yaml"


@pytest.fixture
def fast(tmp_path) -> list[str]:
    """A quickstart that trains its dense CNN briefly, cached under tmp_path."""
    return ["--set", "model.train_steps=5", "--set", f"precomputation.cache_dir={tmp_path / 'cache'}"]


def _snapshot(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _one_error(err: str, command: str, *needles: str) -> None:
    assert err.startswith(f"mapruner {command}: error: "), err
    assert "Traceback" not in err and err.count(f"mapruner {command}:") == 1, err
    for needle in needles:
        assert needle in err, (needle, err)


@pytest.mark.parametrize(("argv", "needles"), [
    (["--target-macs", "1.5"], ["target.budget", "must keep at least", "max_layer_pruning"]),
    (["--target-macs", "2G"], ["target.budget", "must keep fewer MACs than the dense compact_cnn"]),
    (["--target-ratio", "0.999999"], ["target.reduction", "must keep at least", "0.999999"]),
    (["--set", "hardware.cpus_per_trial=64"], ["hardware.cpus_per_trial", "must be at most the", "(got 64.0)"]),
])
def test_impossible_run_is_refused_before_ray_starts(argv, needles, tmp_path, fast, capsys, monkeypatch):
    import ray

    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray was started"))
    out = tmp_path / "out"
    code = main(["prune", "--config", QUICKSTART, "--output-dir", str(out), *fast, *argv])
    _one_error(capsys.readouterr().err, "prune", *needles)
    assert code == 2
    assert not out.exists()


def _finished_run(out: Path, target: float = 0.5) -> None:
    """An experiment directory as a finished run leaves it (record + one row), written directly."""
    from multi_agent_pruning.config import config_to_dict, load_config

    cfg = load_config(QUICKSTART, overrides=[f"target.reduction={target}"])
    atomic_write_json(out / "experiment.json", {"experiment": cfg.experiment.name, "status": "finished",
                                                "config": config_to_dict(cfg), "method": "multi_agent"})
    ResultStore(out / "results").append(TrialResult.failed(
        error="x", experiment=cfg.experiment.name, run=0, method="multi_agent", model="compact_cnn",
        dataset="digits", seed=0, trial_id="t0", iteration=0, target_kind="macs"))


@pytest.mark.parametrize(("argv", "needles"), [
    (["--target-ratio", "0.7"], ["target.reduction: the run being resumed has 0.5 (got 0.7"]),
    (["--model", "compact_resnet"], ["model.name: the run being resumed has 'compact_cnn' (got 'compact_resnet')"]),
])
def test_resume_with_another_target_or_model_is_refused(argv, needles, tmp_path, fast, capsys):
    out = tmp_path / "out"
    _finished_run(out)
    before = _snapshot(out)
    code = main(["prune", "--config", QUICKSTART, "--output-dir", str(out), "--resume", *fast, *argv])
    _one_error(capsys.readouterr().err, "prune", "--resume", *needles)
    assert code == 2
    assert _snapshot(out) == before


@pytest.mark.parametrize("content", [b'{"experiment": "quick', b"\x00\xff\xfe binary", b"[1, 2]", b'{"status": 1}'])
def test_damaged_experiment_record_is_one_message(content, tmp_path, fast, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "experiment.json").write_bytes(content)
    for extra in ([], ["--resume"]):
        code = main(["prune", "--config", QUICKSTART, "--output-dir", str(out), *fast, *extra])
        _one_error(capsys.readouterr().err, "prune", "unreadable experiment.json", "left as it is")
        assert code == 2
    assert (out / "experiment.json").read_bytes() == content


def _row(trial_id: str, **values) -> dict:
    row = TrialResult.failed(error="x", experiment="e", run=0, method="m", model="compact_cnn", dataset="digits",
                             seed=0, trial_id=trial_id, iteration=0, target_kind="macs").to_row()
    return {**row, **values}


def test_rows_that_break_the_schema_are_skipped_and_counted(tmp_path, caplog):
    store = ResultStore(tmp_path / "results")
    store.append(TrialResult.failed(error="x", experiment="e", run=0, method="m", model="compact_cnn",
                                    dataset="digits", seed=0, trial_id="good", iteration=0, target_kind="macs"))
    folder = next((tmp_path / "results").rglob("method=m"))
    edited = [_row("top1-150", status="ok", error=None, error_type=None, top1_after=1.5),
              _row("not-json", strategy_json="{importance: l2"), _row("fine-too")]
    pq.write_table(pa.Table.from_pylist(edited, schema=RESULT_SCHEMA), folder / "part-edited.parquet")
    rows = store.rows(experiment="e")
    assert sorted(r.trial_id for r in rows) == ["fine-too", "good"]
    report = store.last_read_report
    assert report.rows == 2 and len(report.invalid_rows) == 2
    reasons = {r.trial_id: " ".join(r.problems) for r in report.invalid_rows}
    assert "top1_after: must be a fraction in [0, 1] (got 1.5)" in reasons["top1-150"]
    assert "strategy_json: must be valid JSON" in reasons["not-json"]
    assert "Skipped 2 invalid result row(s)" in caplog.text


def test_resume_skips_a_row_whose_strategy_cannot_be_rebuilt(caplog):
    good = _row("good", strategy_json=json.dumps({"importance": "l2"}))
    bad = _row("bad", strategy_json=json.dumps({"importance": "no-such-criterion"}))
    assert [r["trial_id"] for r in usable_history([good, bad])] == ["good"]
    assert "Skipped 1 stored row(s) whose strategy cannot be read" in caplog.text and "'bad'" in caplog.text


@pytest.fixture
def results_dir(tmp_path) -> Path:
    ResultStore(tmp_path / "exp" / "results").append(TrialResult.failed(
        error="x", experiment="e", run=0, method="m", model="compact_cnn", dataset="digits", seed=0,
        trial_id="t", iteration=0, target_kind="macs"))
    return tmp_path / "exp"


@pytest.mark.parametrize("where", ["directory", "under_a_file"])
def test_report_output_that_cannot_be_written_is_one_message(where, results_dir, tmp_path, capsys):
    blocker = tmp_path / "blocker"
    if where == "directory":
        blocker.mkdir()
        output, needle = blocker, "is a directory"
    else:
        blocker.write_text("a file")
        output, needle = blocker / "report.html", f"File exists: {blocker}"
    code = main(["report", str(results_dir), "-o", str(output)])
    _one_error(capsys.readouterr().err, "report", f"Could not write the report to {output}", needle)
    assert code == 2
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_methods_list_without_a_method_is_refused(tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(["compare", "--config", QUICKSTART, "--output-dir", str(out), "--methods", ",,"])
    _one_error(capsys.readouterr().err, "compare", "--methods: must name at least one method", "',,'")
    assert code == 2 and not out.exists()
    assert os.environ.get("RAY_ADDRESS") is None
