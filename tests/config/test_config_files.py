"""Every shipped config loads and holds the values its comments promise."""

from __future__ import annotations

from pathlib import Path

import pytest

from multi_agent_pruning.config import load_config, validate_config_file
from multi_agent_pruning.exceptions import ConfigurationError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
SHIPPED = sorted(CONFIG_DIR.glob("**/*.yaml"))


def test_the_expected_configs_ship() -> None:
    names = {str(p.relative_to(CONFIG_DIR)) for p in SHIPPED}
    assert {
        "base.yaml",
        "quickstart.yaml",
        "deit_small_imagenet.yaml",
        "deit_base_imagenet.yaml",
        "convnext_tiny_imagenet.yaml",
        "experiments/enhanced_multi_agent.yaml",
    } <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(CONFIG_DIR)))
def test_every_shipped_config_loads(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGENET_PATH", "/datasets/imagenet")
    cfg = load_config(path)
    assert cfg.experiment.name
    summary = validate_config_file(path)
    assert summary.startswith(f"{path}: valid")
    assert cfg.model.name in summary


def test_quickstart_is_small_and_cpu_only() -> None:
    cfg = load_config(CONFIG_DIR / "quickstart.yaml")
    assert (cfg.model.name, cfg.dataset.name) == ("compact_cnn", "digits")
    # A sweep reaching a target where accuracy drops (issue 21): at least one at 85 % removed or more.
    assert (cfg.target.kind, cfg.target.reduction, cfg.target.budget) == ("macs", None, None)
    assert cfg.target.sweep == (0.5, 0.8, 0.9, 0.97) and max(cfg.target.sweep) >= 0.85
    assert cfg.safety_limits.max_overall_pruning >= max(cfg.target.sweep)
    assert (cfg.search.trials, cfg.search.max_iterations) == (16, 4)
    assert cfg.finetune.steps == 60
    assert cfg.dataset.batch_size == 128
    assert (cfg.hardware.device, cfg.hardware.cpus_per_trial, cfg.hardware.gpus_per_trial) == ("cpu", 1, 0)
    # inherited from base.yaml
    assert cfg.strategy_defaults.importance == "taylor"
    assert cfg.baselines.methods is None  # every method, multi_agent included


@pytest.mark.parametrize(
    ("name", "model", "budget", "reduction"),
    [
        ("deit_base_imagenet.yaml", "deit_base", 4.16e9, None),
        ("deit_small_imagenet.yaml", "deit_small", 2.3e9, None),
        ("convnext_tiny_imagenet.yaml", "convnext_tiny", None, 0.5),
    ],
)
def test_imagenet_configs(name: str, model: str, budget, reduction, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGENET_PATH", "/datasets/imagenet")
    cfg = load_config(CONFIG_DIR / name)
    assert (cfg.model.name, cfg.model.pretrained) == (model, True)
    dataset = cfg.dataset
    assert (dataset.name, dataset.path, dataset.batch_size) == ("imagenet", "/datasets/imagenet", 256)
    assert (cfg.target.budget, cfg.target.reduction) == (budget, reduction)
    assert cfg.hardware.gpus_per_trial == 1
    assert cfg.strategy_defaults.importance == "taylor"


def test_imagenet_config_without_imagenet_path_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMAGENET_PATH", raising=False)
    with pytest.raises(ConfigurationError) as info:
        load_config(CONFIG_DIR / "deit_small_imagenet.yaml")
    assert [issue.path for issue in info.value.issues] == ["dataset.path"]
    assert "IMAGENET_PATH" in str(info.value)


def test_enhanced_multi_agent_uses_the_reference_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGENET_PATH", "/datasets/imagenet")
    monkeypatch.delenv("CIFAR10_PATH", raising=False)
    cfg = load_config(CONFIG_DIR / "experiments" / "enhanced_multi_agent.yaml")
    dataset = cfg.effective_dataset()
    assert (dataset.path, dataset.batch_size) == ("/datasets/imagenet", 256)
    limits = cfg.effective_safety_limits()
    assert (limits.max_mlp_pruning, limits.max_attention_pruning) == (0.7, 0.5)
    assert limits.max_overall_pruning == cfg.safety_limits.max_overall_pruning == 0.8
    assert cfg.datasets["cifar10"].path == "data/cifar10"
    assert cfg.effective_search().max_iterations == 5
    assert cfg.llm.timeout == 60  # written under the `openai:` alias
    assert cfg.hardware.gpu.memory_limit_bytes() == 40 * 10**9
    assert cfg.profile_cache().max_age_s == 3600
