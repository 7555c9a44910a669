"""What the agents accept, as the API reference shows it: input sizes (an int is a square image
with the model's channels), the master's dataset_info, and config keys (used or rejected)."""

from __future__ import annotations

import pytest
import timm
import torch

from multi_agent_pruning.agents import (
    AnalysisAgent,
    EvaluationAgent,
    FineTuningAgent,
    MasterAgent,
    ProfilingAgent,
    PruningAgent,
)
from multi_agent_pruning.core.strategy import Strategy
from multi_agent_pruning.data import create_loaders, get_dataset_info, load_dataset
from multi_agent_pruning.exceptions import ConfigurationError
from multi_agent_pruning.models import create_model
from multi_agent_pruning.testing.tiny import TinyResNet, tiny_profile
from multi_agent_pruning.utils.metrics import compute_macs

VIEW = ("importance_criterion", "pruning_ratio")


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    """A TinyResNet (10 classes) profiled on digits (1 x 16 x 16)."""
    return tiny_profile(str(tmp_path_factory.mktemp("cache")), steps=20)


# -- ProfilingAgent: input_size ------------------------------------------------------------------
@pytest.mark.parametrize(("build", "input_size", "expected"), [
    (lambda: timm.create_model("resnet18", num_classes=10), 32, [3, 32, 32]),  # timm: 3 channels
    (lambda: create_model("compact_cnn"), 24, [1, 24, 24]),  # registry model: its in_chans
    (lambda: create_model("compact_cnn"), None, [1, 16, 16]),  # the input it was built for
    (lambda: create_model("deit_micro", input_size=28), None, [1, 28, 28]),
    (lambda: TinyResNet(in_chans=1), 16, [1, 16, 16]),  # any model: its first convolution
    (lambda: TinyResNet(in_chans=1), (1, 12, 12), [1, 12, 12]),  # (C, H, W) as given
])
def test_profiling_agent_takes_an_int_or_a_shape_or_nothing(build, input_size, expected):
    torch.manual_seed(0)
    agent = ProfilingAgent(config={"enable_caching": False})
    data = {"model": build().eval(), "model_name": "stand-in", "dataset": "digits"}
    if input_size is not None:
        data["input_size"] = input_size
    result = agent.execute(data)
    profile = result["profile"]
    assert result["success"] and result["cached"] is False
    assert profile["input_size"] == expected and profile["num_classes"] == 10
    assert profile["base_macs"] == pytest.approx(compute_macs(data["model"], (1, *expected)))
    assert len(profile["prunable_layers"]) > 0


def test_profiling_agent_says_what_to_pass_for_a_model_of_unknown_input():
    with pytest.raises(ConfigurationError, match="cannot tell the input size of TinyResNet"):
        ProfilingAgent({"enable_caching": False}).execute({"model": TinyResNet(), "model_name": "t", "dataset": "d"})


# -- MasterAgent: dataset_info -------------------------------------------------------------------
def _run(profile, target_ratio, dataset_info=None, **extra):
    data = {"profile_results": profile, "target_ratio": target_ratio, "history": [], "revision_number": 0, **extra}
    if dataset_info is not None:
        data["dataset_info"] = dataset_info
    return MasterAgent({"max_iterations": 5, "convergence_threshold": 0.005}).execute(data)


def _keys(result):
    return [Strategy.from_dict({k: v for k, v in s.items() if k not in VIEW}).key() for s in result["strategies"]]


def test_master_reference_call_bounds_the_proposal_by_the_datasets_safety_limits(profile):
    plain = _run(profile, 0.5)
    limited = _run(profile, 0.5, {"num_classes": 10, "safety_limits": {"max_overall_pruning": 0.8}})
    assert limited["success"] and limited["continue_iterations"]
    strategy = limited["strategy"]
    assert strategy["pruning_ratio"] == 0.5 and strategy["importance_criterion"] == plain["strategy"]["importance"]
    assert _keys(limited) == _keys(plain)  # the same search points ...
    kinds = set(profile["kinds"])
    for s in limited["strategies"]:  # ... now carrying the limits' per-kind caps and channel minimum
        assert s["kind_max_pruning"] == {k: 0.9 for k in kinds} and s["min_channels"] == 4
    assert all(s["kind_max_pruning"] == {} and s["min_channels"] == 1 for s in plain["strategies"])
    assert limited["directives"]["safety_limits"]["max_overall_pruning"] == 0.8
    assert limited["directives"]["target_capped"] is None and "safety_limits" not in plain["directives"]


def test_master_caps_a_target_beyond_max_overall_pruning(profile):
    assert {s["pruning_ratio"] for s in _run(profile, 0.9)["strategies"]} == {0.9}
    capped = _run(profile, 0.9, {"num_classes": 10, "safety_limits": {"max_overall_pruning": 0.8}})
    assert {s["pruning_ratio"] for s in capped["strategies"]} == {0.8}
    assert capped["directives"]["target_capped"] == {"requested": 0.9, "proposed": 0.8, "max_overall_pruning": 0.8}
    tighter = _run(profile, 0.5, {"safety_limits": {"max_conv_pruning": 0.4, "min_channels": 6}},
                   safety_limits={"max_conv_pruning": 0.3})  # the top-level limits win
    assert all(set(s["kind_max_pruning"].values()) == {0.3} and s["min_channels"] == 6 for s in tighter["strategies"])
    budget = MasterAgent({}).execute({"profile_results": profile, "history": [], "revision_number": 0,
                                      "base_strategy": Strategy(target_reduction=None,
                                                                target_budget=0.1 * profile["base_macs"]),
                                      "dataset_info": {"safety_limits": {"max_overall_pruning": 0.75}}})
    assert budget["strategy"]["target_budget"] == pytest.approx(0.25 * profile["base_macs"])


def test_master_accepts_a_dataset_info_that_fits_the_profile(profile):
    out = _run(profile, 0.5, get_dataset_info("digits"))
    assert out["success"] and "safety_limits" not in out["directives"]  # no limits given: none applied


@pytest.mark.parametrize(("dataset_info", "message"), [
    ({"num_classes": 1000, "safety_limits": {"max_overall_pruning": 0.8}},
     r"dataset_info.num_classes: must match the profiled model 'tiny', which outputs 10 classes \(got 1000\)"),
    ({"input_size": (3, 224, 224)}, r"dataset_info.input_size: must match the profiled input \(1, 16, 16\)"),
    ({"name": "imagenet"}, "dataset_info.name: must be the profiled dataset 'digits'"),
    ({"num_clases": 10}, "dataset_info.num_clases: unknown key; did you mean num_classes?"),
    ({"safety_limits": {"max_overall": 0.8}},
     "dataset_info.safety_limits.max_overall: unknown safety limit; did you mean max_overall_pruning?"),
    ({"safety_limits": {"max_overall_pruning": 1.5}}, r"max_overall_pruning: must be a number in \[0, 1\]"),
    ([10], "dataset_info must be a DatasetInfo or a dict of its fields, got list"),
])
def test_master_rejects_a_dataset_info_that_contradicts_the_profile(profile, dataset_info, message):
    with pytest.raises(ConfigurationError, match=message):
        _run(profile, 0.5, dataset_info)


# -- execution agents: inputs and the reference's configs ----------------------------------------
@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_pruning_agent_reference_config_and_inferred_inputs(digits):
    torch.manual_seed(0)
    model = create_model("compact_cnn").eval()
    strategy = Strategy(importance="l1", global_pruning=False, isomorphic=False, target_reduction=0.4)
    agent = PruningAgent(config={"backend": "torch_pruning", "global_pruning": True})
    out = agent.execute({"model": model, "strategy": strategy})  # no example_inputs: the model's own
    assert out["strategy"]["global_pruning"] is True and out["strategy"]["isomorphic"] is False
    assert out["prune"]["macs_reduction"] == pytest.approx(0.4, abs=0.01)
    assert out["prune"]["base_macs"] == pytest.approx(compute_macs(model, (1, 1, 16, 16)))
    local = PruningAgent({"global_pruning": False}).execute(
        {"model": TinyResNet(), "strategy": Strategy(importance="l2", target_reduction=0.4), "input_size": 16})
    assert (local["strategy"]["global_pruning"], local["strategy"]["isomorphic"]) == (False, False)
    assert local["prune"]["macs_reduction"] == pytest.approx(0.4, abs=0.01)
    with pytest.raises(ConfigurationError, match="global_pruning must be true or false"):
        PruningAgent({"global_pruning": "yes"}).execute({"model": model, "strategy": strategy})


def test_evaluation_agent_measures_the_datasets_or_the_models_input(digits):
    model = create_model("compact_cnn").eval()
    _, val = create_loaders(digits, batch_size=256)
    macs_16 = compute_macs(model, (1, 1, 16, 16))
    agent = EvaluationAgent(config={"comprehensive_metrics": False})
    assert agent.execute({"model": model, "val_loader": val, "max_batches": 1})["metrics"]["macs"] == macs_16
    by_info = agent.execute({"model": model, "val_loader": val, "max_batches": 1, "dataset_info": digits.info})
    assert by_info["metrics"]["macs"] == macs_16
    by_int = agent.execute({"model": model, "val_loader": val, "max_batches": 1, "input_size": 32})
    assert by_int["metrics"]["macs"] == pytest.approx(4 * macs_16, rel=0.01)


@pytest.mark.parametrize(("agent", "config"), [
    (ProfilingAgent, {"enable_caching": True}),
    (MasterAgent, {"max_iterations": 5, "convergence_threshold": 0.005}),
    (AnalysisAgent, {"safety_enforcement": "strict"}),
    (PruningAgent, {"backend": "torch_pruning", "global_pruning": True}),
    (FineTuningAgent, {"optimizer": "adamw", "scheduler": "cosine"}),
    (EvaluationAgent, {"comprehensive_metrics": True}),
    (EvaluationAgent, {"custom_metrics": ["custom_efficiency"]}),
])
def test_the_reference_agent_configs_are_accepted_and_a_misspelt_key_is_not(agent, config):
    assert agent(config=config).config == config
    key = next(iter(config))
    misspelt = {key[:-1]: config[key]}
    with pytest.raises(ConfigurationError, match=rf"{agent.__name__}.{key[:-1]}: unknown key; did you mean {key}[,?]"):
        agent(config=misspelt)


def test_an_unknown_agent_key_never_shows_a_secret():
    with pytest.raises(ConfigurationError) as info:
        MasterAgent({"api_key": "sk-live-0123456789abcdef0123456789"})
    assert "sk-live" not in str(info.value) and "MasterAgent.api_key: unknown key" in str(info.value)
