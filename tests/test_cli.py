"""The CLI: exit codes and one clear message per bad input; nothing written on bad input."""

from __future__ import annotations

import pytest

from multi_agent_pruning.cli import main


@pytest.mark.parametrize("argv,needle", [
    (["--model", "deit_smal"], "Did you mean: deit_small"),
    (["--dataset", "imagnet"], "imagenet"),
    (["--target-ratio", "1.5"], "target_ratio"),
    (["--target-ratio", "0"], "target_ratio"),
    (["--target-ratio", "nan"], "target_ratio"),
    (["--target-ratio", "half"], "target_ratio"),
    (["--target-macs", "-3"], "target_macs"),
    (["--trials", "-1"], "--trials"),
    (["--set", "serach.trials=3"], "did you mean 'search'"),
])
def test_prune_bad_input_exits_2_and_writes_nothing(argv, needle, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["prune", "--config", "tests/support/quickstart_single.yaml", "--output-dir", str(out), *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert needle in err
    assert err.count("\n") <= 4  # one clear message, not a traceback
    assert not out.exists()


def test_validate_config_reports_every_problem(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MAPRUNER_TEST_MISSING", raising=False)
    bad = tmp_path / "bad.yaml"
    bad.write_text("search:\n  trials: 0\n  trails: 3\ndataset:\n  path: ${MAPRUNER_TEST_MISSING}\n")
    assert main(["validate-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "search.trials" in err and "trails" in err and "MAPRUNER_TEST_MISSING" in err


def test_models_lists_computed_macs(capsys):
    assert main(["models", "deit_small"]) == 0
    out = capsys.readouterr().out
    assert "deit_small_patch16_224" in out and "4.61" in out and "22.05" in out


@pytest.mark.parametrize("module", ["multi_agent_pruning", "multi_agent_pruning.cli"])
def test_python_dash_m_runs_the_registered_commands(module, tmp_path):
    """``python -m`` runs the same commands as the ``mapruner`` entry point (the subcommands
    register on the imported module, not on the ``__main__`` copy)."""
    import subprocess
    import sys
    from pathlib import Path

    config = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"
    done = subprocess.run([sys.executable, "-m", module, "validate-config", str(config)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "KeyError" not in done.stderr
    # ``prune`` registers from cli_commands: the old ``python -m multi_agent_pruning.cli`` died
    # here with KeyError: 'prune' before reading any argument.
    bad = subprocess.run([sys.executable, "-m", module, "prune", "--config", str(tmp_path / "missing.yaml")],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert bad.returncode == 2, bad.stderr
    assert "KeyError" not in bad.stderr
    assert "missing.yaml" in bad.stderr
