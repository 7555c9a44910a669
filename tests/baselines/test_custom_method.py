"""The API reference's "Custom Baseline Method", pasted with small offline stand-ins (compact_cnn
on digits), and the helpers it uses: load_model, compute_macs, fine_tune_and_evaluate."""

from __future__ import annotations

import logging

import pytest
import torch
from huggingface_hub import constants

from multi_agent_pruning.baselines import BasePruningMethod, MagnitudePruning
from multi_agent_pruning.core.engine import apply_strategy
from multi_agent_pruning.core.strategy import Strategy
from multi_agent_pruning.exceptions import ConfigurationError
from multi_agent_pruning.models import example_inputs, model_input_size
from multi_agent_pruning.utils.metrics import compute_macs
from support.hub_cache import fill_hub_cache

STEPS = 5  # the reference's fine-tuning, kept short for two CPUs


class CustomPruningMethod(BasePruningMethod):
    """The API reference's example; ``apply_custom_pruning`` is the user's own logic (here per-layer
    L1 pruning to the MACs target with torch-pruning through the engine)."""

    def __init__(self, custom_param=1.0):
        super().__init__()
        self.custom_param = custom_param

    def apply_custom_pruning(self, model, target_macs):
        strategy = Strategy(importance="l1", global_pruning=False, isomorphic=False, target_reduction=None,
                            target_budget=target_macs)
        return apply_strategy(model, strategy, example_inputs(model), tolerance=0.02).model

    def prune_to_target_macs(self, model_name: str, target_macs: float,
                             dataset: str) -> dict:
        # Custom pruning implementation
        model = self.load_model(model_name)

        # Apply custom pruning logic
        pruned_model = self.apply_custom_pruning(model, target_macs)

        # Fine-tune and evaluate
        final_accuracy = self.fine_tune_and_evaluate(pruned_model, dataset, steps=STEPS)

        return {
            'final_accuracy': final_accuracy,
            'final_macs': self.compute_macs(pruned_model),
            'method': 'custom_method'
        }


def test_the_reference_custom_method_runs_on_a_registry_model_and_dataset():
    method = CustomPruningMethod(custom_param=2.0)
    assert method.custom_param == 2.0
    dense_macs = method.compute_macs(method.load_model("compact_cnn"))
    assert dense_macs == compute_macs(method.load_model("compact_cnn"), (1, 1, 16, 16))
    torch.manual_seed(0)
    result = method.prune_to_target_macs("compact_cnn", 0.5 * dense_macs, "digits")
    assert set(result) == {"final_accuracy", "final_macs", "method"}
    assert result["method"] == "custom_method"
    assert 0.0 <= result["final_accuracy"] <= 1.0
    assert result["final_macs"] == pytest.approx(0.5 * dense_macs, rel=0.02)


def test_a_custom_method_has_no_strategy_for_the_shared_trial_function():
    with pytest.raises(NotImplementedError, match="CustomPruningMethod prunes with its own prune_to_target_macs.*"
                                                  "override make_strategy"):
        CustomPruningMethod().make_strategy(Strategy())


def test_a_method_must_override_make_strategy_or_prune_to_target_macs():
    class Neither(BasePruningMethod):
        def __init__(self, custom_param=1.0):
            super().__init__()

    with pytest.raises(TypeError, match="Neither cannot be instantiated: override make_strategy .* or "
                                        "prune_to_target_macs"):
        Neither()

    class StrategyOnly(BasePruningMethod):
        def make_strategy(self, base, kinds=()):
            return base.replace(importance="fpgm")

    assert StrategyOnly().make_strategy(Strategy()).importance == "fpgm"
    assert MagnitudePruning("l2").make_strategy(Strategy()).importance == "l2"  # the catalog's, not the stub

    class Subclass(CustomPruningMethod):  # inherits the custom run, so it is a custom method too
        pass

    with pytest.raises(NotImplementedError):
        Subclass().make_strategy(Strategy())


@pytest.mark.parametrize(("name", "dataset", "expected"), [
    ("compact_cnn", None, (1, 16, 16)),
    ("compact_cnn", "cifar10", (3, 32, 32)),
    ("deit_micro", "fashion_mnist", (1, 28, 28)),
])
def test_load_model_builds_for_the_dataset_and_compute_macs_uses_that_input(name, dataset, expected):
    method = CustomPruningMethod()
    model = method.load_model(name, dataset)
    assert model_input_size(model) == expected
    assert method.compute_macs(model) == compute_macs(model, (1, *expected))
    assert model(torch.zeros(1, *expected)).shape == (1, 10)


@pytest.mark.parametrize(("build", "dataset", "problem"), [
    ({"model_name": "compact_cnn"}, "cifar10", "it takes 1-channel images"),
    ({"model_name": "deit_micro"}, "fashion_mnist", "its forward pass fails on them"),
    ({"model_name": "compact_cnn", "num_classes": 5}, "digits", "it outputs 5 classes, not 10"),
])
def test_a_model_that_does_not_fit_the_dataset_is_one_clear_error(build, dataset, problem):
    method = CustomPruningMethod()
    model = method.load_model(**build)
    with pytest.raises(ConfigurationError) as info:
        method.fine_tune_and_evaluate(model, dataset, steps=1)
    message = str(info.value)
    assert f"does not fit dataset {dataset!r}" in message and problem in message
    assert f"load_model(model_name, dataset={dataset!r})" in message


def test_load_model_loads_pretrained_weights_by_default(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    method = CustomPruningMethod()
    with caplog.at_level(logging.WARNING):
        random = method.load_model("mobilenetv2_100", "cifar10")  # not in the cache: random init
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "'mobilenetv2_100'" in warnings[0] and "ModelDownloader" in warnings[0]
    source = fill_hub_cache(tmp_path, "mobilenetv2_100")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        loaded = method.load_model("mobilenetv2_100", "cifar10")
    assert not caplog.records
    assert torch.equal(loaded.conv_stem.weight, source.conv_stem.weight)
    assert not torch.equal(random.conv_stem.weight, source.conv_stem.weight)
    assert loaded.classifier.out_features == 10 and model_input_size(loaded) == (3, 32, 32)
    fresh = method.load_model("mobilenetv2_100", "cifar10", pretrained=False)
    assert not torch.equal(fresh.conv_stem.weight, source.conv_stem.weight)
