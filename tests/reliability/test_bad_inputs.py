"""Bad input through the CLI and the Python API: one clear message naming the problem, exit code
2 (CLI) or a ConfigurationError / CheckpointError (API), and nothing written or overwritten.

Only the cases no other test covers; docs/reliability.md lists all of them with their tests
(tests/test_cli.py has unknown model/dataset, target 1.5/0/NaN/"half", negative MACs and trials,
and a misspelt --set key).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from multi_agent_pruning import MultiAgentPruner
from multi_agent_pruning.cli import main
from multi_agent_pruning.exceptions import (
    CheckpointError,
    ConfigurationError,
    DatasetNotFoundError,
    UnknownNameError,
)
from multi_agent_pruning.models import create_model
from multi_agent_pruning.utils.atomic import atomic_write_json
from multi_agent_pruning.results import ResultStore, TrialResult

QUICKSTART = "tests/support/quickstart_single.yaml"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    torch.save(create_model("deit_micro", num_classes=10).state_dict(), root / "vit.pth")
    torch.save(create_model("compact_cnn", num_classes=10, in_chans=1, input_size=16), root / "pickled.pth")
    return {"other_architecture": root / "vit.pth", "pickled": root / "pickled.pth",
            "missing": root / "nowhere" / "weights.pth"}


@pytest.fixture
def write_yaml(tmp_path):
    def write(text: str) -> Path:
        path = tmp_path / "config.yaml"
        path.write_text(f"extends: {Path(QUICKSTART).resolve()}\n{text}")
        return path

    return write


def _snapshot(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    code = main(["prune", *argv])
    err = capsys.readouterr().err
    return code, err


def _assert_one_message(err: str, *needles: str) -> None:
    assert err.startswith("mapruner prune: error: "), err
    assert "Traceback" not in err and err.count("mapruner prune:") == 1, err
    for needle in needles:
        assert needle in err, (needle, err)


# -- CLI: flags and --set values -------------------------------------------------------------

@pytest.mark.parametrize(("argv", "needles"), [
    (["--dataset", "imagenet", "--set", "dataset.path=/nonexistent"],
     ["ImageNet folders missing", "/nonexistent/train", "/nonexistent/val"]),
    (["--dataset", "fashion_mnist", "--set", "dataset.path=/nonexistent/fmnist"],
     ["Fashion-MNIST idx files not found", "/nonexistent/fmnist", "apt-get install dataset-fashion-mnist"]),
    (["--target-ratio", "1"], ["target_ratio: must be in (0, 1)", "'1'"]),
    (["--target-ratio", "-0.2"], ["target_ratio: must be in (0, 1)", "'-0.2'"]),
    (["--target-ratio", "inf"], ["target_ratio: must be a finite number"]),
    (["--target-macs", "0"], ["target_macs: must be > 0"]),
    (["--target-macs", "2.3X"], ["target_macs: must be a number (e.g. 0.5, 2.3e9, 2.3G)", "'2.3X'"]),
    (["--trials", "0"], ["--trials: must be >= 1 (got 0)"]),
    (["--max-iterations", "0"], ["--max-iterations: must be >= 1 (got 0)"]),
    (["--set", "search.trials=many"], ["search.trials"]),
    (["--set", "model.checkpoint=/nonexistent/weights.pth"], ["Checkpoint file not found: /nonexistent/weights.pth"]),
    (["--resume"], ["holds no experiment to resume"]),
])
def test_cli_bad_value_exits_2_and_writes_nothing(argv, needles, tmp_path, capsys):
    out = tmp_path / "out"
    code, err = _cli(["--config", QUICKSTART, "--output-dir", str(out), *argv], capsys)
    assert code == 2, err
    _assert_one_message(err, *needles)
    assert not out.exists()


@pytest.mark.parametrize(("kind", "needles"), [
    ("other_architecture", ["does not match the model CompactResNet", "unexpected keys: cls_token, pos_embed"]),
    ("pickled", ["pickled Python objects", "trust_checkpoint"]),
])
def test_cli_bad_checkpoint_exits_2_and_writes_nothing(kind, needles, checkpoints, tmp_path, capsys):
    out = tmp_path / "out"
    code, err = _cli(["--config", QUICKSTART, "--output-dir", str(out),
                      "--set", f"model.checkpoint={checkpoints[kind]}"], capsys)
    assert code == 2, err
    _assert_one_message(err, str(checkpoints[kind]), *needles)
    assert not out.exists()


# -- CLI: config files ----------------------------------------------------------------------

def test_cli_yaml_syntax_error_names_file_and_line(write_yaml, tmp_path, capsys):
    path = write_yaml("search:\n  trials: 3\n bad: indent\n")  # line 4: extends is line 1
    code, err = _cli(["--config", str(path), "--output-dir", str(tmp_path / "out")], capsys)
    assert code == 2
    _assert_one_message(err, str(path), "line 4")
    assert not (tmp_path / "out").exists()


def test_cli_unknown_config_key_suggests_the_right_one(write_yaml, tmp_path, capsys):
    path = write_yaml("finetune:\n  stepz: 5\n")
    code, err = _cli(["--config", str(path), "--output-dir", str(tmp_path / "out")], capsys)
    assert code == 2
    _assert_one_message(err, "finetune.stepz", "steps")
    assert not (tmp_path / "out").exists()


def test_cli_missing_environment_variable_names_it_and_the_key(write_yaml, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MAPRUNER_RELIABILITY_MISSING", raising=False)
    path = write_yaml("dataset:\n  path: ${MAPRUNER_RELIABILITY_MISSING}\n")
    code, err = _cli(["--config", str(path), "--output-dir", str(tmp_path / "out")], capsys)
    assert code == 2
    _assert_one_message(err, "MAPRUNER_RELIABILITY_MISSING", "dataset.path")
    assert not (tmp_path / "out").exists()


# -- CLI: output directories that hold something else ------------------------------------------

def _other_experiment(out: Path) -> None:
    atomic_write_json(out / "experiment.json", {"experiment": "someone-else", "status": "finished"})
    (out / "summary.json").write_text('{"final_accuracy": 0.9}')


def _unknown_results(out: Path) -> None:
    row = TrialResult.failed(error="x", target_kind="macs", experiment="unknown", run=0, method="m", model="m",
                             dataset="d", seed=0, trial_id="t", iteration=0)
    ResultStore(out / "results").append(row)


@pytest.mark.parametrize(("prepare", "needle"), [
    (_other_experiment, "holds a different experiment ('someone-else')"),
    (_unknown_results, "already holds results of an unknown experiment"),
])
def test_cli_output_dir_of_something_else_is_left_untouched(prepare, needle, tmp_path, capsys):
    out = tmp_path / "out"
    prepare(out)
    before = _snapshot(out)
    for extra in ([], ["--resume"]):
        code, err = _cli(["--config", QUICKSTART, "--output-dir", str(out), *extra], capsys)
        assert code == 2
        _assert_one_message(err, str(out))
        assert needle in err or "no experiment to resume" in err
    assert _snapshot(out) == before


# -- Python API ----------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "error", "needle"), [
    ({"model_name": "deit_smal"}, UnknownNameError, "Unknown model 'deit_smal'. Did you mean: deit_small"),
    ({"dataset": "digitz"}, UnknownNameError, "Unknown dataset 'digitz'. Did you mean: digits?"),
    ({"target_ratio": 0}, ConfigurationError, "target_ratio: must be in (0, 1)"),
    ({"target_ratio": 1.0}, ConfigurationError, "target_ratio: must be in (0, 1)"),
    ({"target_ratio": -0.5}, ConfigurationError, "target_ratio: must be in (0, 1)"),
    ({"target_ratio": math.nan}, ConfigurationError, "target_ratio: must be a finite number"),
    ({"target_ratio": "half"}, ConfigurationError, "target_ratio: must be a number"),
    ({"target_macs": -3}, ConfigurationError, "target_macs: must be > 0"),
    ({"trials": -1}, ConfigurationError, "search.trials: must be >= 1"),
    ({"max_iterations": 0}, ConfigurationError, "search.max_iterations: must be >= 1"),
    ({"dataset": "imagenet"}, DatasetNotFoundError, "No ImageNet path given and IMAGENET_PATH is not set"),
    ({"resume": True}, ConfigurationError, "holds no experiment to resume"),
])
def test_api_bad_argument_raises_and_writes_nothing(kwargs, error, needle, tmp_path, monkeypatch):
    monkeypatch.delenv("IMAGENET_PATH", raising=False)
    args = {"model_name": "compact_cnn", "dataset": "digits", "target_ratio": 0.5, **kwargs}
    if "target_macs" in kwargs:
        args.pop("target_ratio")
    with pytest.raises(error) as info:
        MultiAgentPruner(QUICKSTART).prune_model(output_dir=tmp_path / "out", **args)
    assert needle in str(info.value)
    assert not (tmp_path / "out").exists()


def test_api_unknown_names_are_also_key_errors_with_suggestions(tmp_path):
    with pytest.raises(KeyError) as info:
        MultiAgentPruner(QUICKSTART).prune_model("resnet5O", "digits", 0.5, output_dir=tmp_path / "out")
    assert isinstance(info.value, ConfigurationError) and "resnet50" in info.value.suggestions
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("overrides", "error", "needles"), [
    (["dataset.name=imagenet", "dataset.path=/nonexistent"], DatasetNotFoundError, ["/nonexistent/train"]),
    (["dataset.name=fashion_mnist", "dataset.path=/nonexistent/fmnist"], DatasetNotFoundError, ["/nonexistent/fmnist"]),
    (["model.checkpoint={other_architecture}"], CheckpointError, ["does not match the model CompactResNet"]),
    (["model.checkpoint={pickled}"], CheckpointError, ["trust_checkpoint"]),
    (["model.checkpoint={missing}"], CheckpointError, ["Checkpoint file not found"]),
])
def test_api_bad_data_or_checkpoint_raises_and_writes_nothing(overrides, error, needles, checkpoints, tmp_path):
    overrides = [o.format(**{k: str(v) for k, v in checkpoints.items()}) for o in overrides]
    pruner = MultiAgentPruner(QUICKSTART, overrides=overrides)
    with pytest.raises(error) as info:
        pruner.prune_model(None, None, output_dir=tmp_path / "out")
    for needle in needles:
        assert needle in str(info.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("text", "needles"), [
    ("search:\n  trials: 3\n bad: indent\n", ["{path}", "line 4"]),
    ("finetune:\n  stepz: 5\n", ["finetune.stepz", "steps"]),
    ("dataset:\n  path: ${MAPRUNER_RELIABILITY_MISSING}\n", ["MAPRUNER_RELIABILITY_MISSING", "dataset.path"]),
])
def test_api_bad_config_file_fails_at_construction(text, needles, write_yaml, monkeypatch):
    monkeypatch.delenv("MAPRUNER_RELIABILITY_MISSING", raising=False)
    path = write_yaml(text)
    with pytest.raises(ConfigurationError) as info:
        MultiAgentPruner(path)
    for needle in needles:
        assert needle.format(path=path) in str(info.value), str(info.value)


def test_api_misspelt_override_suggests_the_section():
    with pytest.raises(ConfigurationError, match="did you mean 'search'"):
        MultiAgentPruner(QUICKSTART, overrides=["serach.trials=3"])


def test_api_output_dir_of_another_experiment_is_left_untouched(tmp_path):
    out = tmp_path / "out"
    _other_experiment(out)
    before = _snapshot(out)
    with pytest.raises(ConfigurationError, match="holds a different experiment"):
        MultiAgentPruner(QUICKSTART).prune_model("compact_cnn", "digits", 0.5, output_dir=out)
    assert _snapshot(out) == before


# -- CLI: config files that are not text YAML, or expand without bound (issue 18) ----------------

_ALIAS_BOMB = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{n}: &{n} [{','.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi"))


def _png() -> bytes:
    return b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x00\x00\x00\x00"


def _checkpoint(path: Path) -> bytes:
    torch.save({"weight": torch.zeros(2)}, path.with_suffix(".pt"))
    data = path.with_suffix(".pt").read_bytes()
    path.with_suffix(".pt").unlink()
    return data


@pytest.mark.parametrize(("make", "needles"), [
    (lambda path: _png(),
     ["is not a text YAML file (it looks like a PNG image)", "save the configuration as UTF-8"]),
    (_checkpoint, ["is not a text YAML file (it looks like a zip archive, such as a torch checkpoint)"]),
    (lambda path: f"extends: {Path(QUICKSTART).resolve()}\nsearch: {{trials: 3}}\n".encode("utf-16-le"),
     ["is not a text YAML file (it contains NUL bytes", "UTF-16/UTF-32 text without a byte-order mark"]),
    (lambda path: _ALIAS_BOMB.encode(), ["Invalid YAML in", "at line 5, column 8",
                                         "aliases expand to more than 10000 values"]),
], ids=["png", "torch-checkpoint", "utf16-without-bom", "alias-bomb"])
@pytest.mark.parametrize("command", ["validate-config", "prune"])
def test_cli_config_that_is_not_text_yaml_exits_2(make, needles, command, tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_bytes(make(path))
    before = _snapshot(tmp_path)
    out = tmp_path / "out"
    argv = [str(path)] if command == "validate-config" else ["--config", str(path), "--output-dir", str(out)]
    code = main([command, *argv])
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert captured.err.startswith(f"mapruner {command}: error: {path}" if "YAML file" in needles[0]
                                   else f"mapruner {command}: error: Invalid YAML in {path}"), captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err and captured.out == ""
    for needle in needles:
        assert needle in captured.err, (needle, captured.err)
    assert _snapshot(tmp_path) == before and not out.exists()


def test_cli_utf16_config_with_a_byte_order_mark_is_read(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text(f"extends: {Path(QUICKSTART).resolve()}\nsearch: {{trials: 3}}\n", encoding="utf-16")
    assert main(["validate-config", str(path)]) == 0
    assert "trials:     3 in at most 2 iterations" in capsys.readouterr().out
