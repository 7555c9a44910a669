"""MACs / params / latency and the metric registry."""

from __future__ import annotations

import math
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from multi_agent_pruning.exceptions import ConfigurationError, MultiAgentPruningError, UnknownNameError
from multi_agent_pruning.models import create_model
from multi_agent_pruning.utils import metrics
from multi_agent_pruning.utils.metrics import (
    compute_macs,
    compute_metrics,
    compute_params,
    get_metric,
    list_metrics,
    measure_latency,
    register_metric,
)


def tiny_model() -> nn.Module:
    # Conv(1->4, 3x3, bias) on 8x8 -> 4x6x6, ReLU, Linear(144 -> 3, bias)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 3))


# torch-pruning's convention: conv k*k*in*out per output position plus one per output for the
# bias, one per ReLU output, linear in*out per row plus out once for the bias.
TINY_MACS_ONE = 9 * 4 * 36 + 4 * 36 + 144 + (144 * 3 + 3)  # 2019
TINY_MACS_TWO = 2 * (9 * 4 * 36 + 4 * 36 + 144) + (2 * 144 * 3 + 3)  # 4035
TINY_PARAMS = (1 * 4 * 9 + 4) + (144 * 3 + 3)  # 475


@pytest.mark.parametrize(
    ("name", "published_gmacs"),
    [("deit_tiny", 1.26), ("deit_small", 4.61), ("deit_base", 17.58), ("resnet50", 4.11), ("convnext_tiny", 4.47)],
)
def test_compute_macs_matches_published_numbers(name: str, published_gmacs: float) -> None:
    model = create_model(name, device="meta")
    gmacs = compute_macs(model, (1, 3, 224, 224)) / 1e9
    assert gmacs == pytest.approx(published_gmacs, rel=0.01)


def test_compute_macs_same_on_cpu_and_meta() -> None:
    torch.manual_seed(0)
    cpu = create_model("deit_tiny")
    meta = create_model("deit_tiny", device="meta")
    assert compute_macs(cpu, (1, 3, 224, 224)) == compute_macs(meta, (1, 3, 224, 224)) == 1_259_215_468


def test_compute_macs_hand_counted() -> None:
    model = tiny_model()
    assert compute_macs(model, (1, 1, 8, 8)) == TINY_MACS_ONE == 2019
    assert compute_macs(model, (2, 1, 8, 8)) == TINY_MACS_TWO
    assert compute_macs(model, torch.zeros(1, 1, 8, 8)) == TINY_MACS_ONE


def test_compute_macs_leaves_model_untouched() -> None:
    model = tiny_model().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    compute_macs(model, (1, 1, 8, 8))
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(hasattr(m, "__flops__") for m in model.modules())
    model.eval()
    compute_macs(model, (1, 1, 8, 8))
    assert not model.training


@pytest.mark.parametrize("shape", [(1, 0, 8, 8), (8,), (1, 1, 8.0, 8)])
def test_compute_macs_rejects_bad_shapes(shape: tuple) -> None:
    with pytest.raises(ConfigurationError, match="input_shape must be a tuple of positive ints"):
        compute_macs(tiny_model(), shape)


def test_compute_params_hand_counted() -> None:
    assert compute_params(tiny_model()) == TINY_PARAMS == 475
    shared = nn.Linear(4, 4)
    assert compute_params(nn.Sequential(shared, shared)) == 20


def test_measure_latency_reports_measured_times() -> None:
    model = tiny_model().train()
    result = measure_latency(model, (2, 1, 8, 8), warmup=1, repeats=7)
    assert set(result) == {"median_ms", "p90_ms", "mean_ms", "repeats", "device", "batch_size"}
    assert (result["repeats"], result["device"], result["batch_size"]) == (7, "cpu", 2)
    assert 0 < result["median_ms"] <= result["p90_ms"]
    assert result["mean_ms"] > 0
    assert model.training


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_measure_latency_on_cuda_returns_model_to_cpu() -> None:
    model = create_model("compact_cnn")
    result = measure_latency(model, (4, 1, 16, 16), device="cuda", warmup=2, repeats=5)
    assert (result["device"], result["batch_size"], result["repeats"]) == ("cuda", 4, 5)
    assert result["median_ms"] > 0
    assert next(model.parameters()).device.type == "cpu"
    cuda_model = create_model("compact_cnn", device="cuda")
    assert compute_macs(cuda_model, (1, 1, 16, 16)) == compute_macs(model, (1, 1, 16, 16))


@pytest.mark.parametrize(("warmup", "repeats"), [(-1, 5), (1, 0), (1, 2.5)])
def test_measure_latency_rejects_bad_counts(warmup: int, repeats: int) -> None:
    with pytest.raises(ConfigurationError):
        measure_latency(tiny_model(), (1, 1, 8, 8), warmup=warmup, repeats=repeats)


@pytest.fixture
def scratch_metrics() -> Iterator[list[str]]:
    added: list[str] = []
    yield added
    for name in added:
        metrics._METRICS.remove(name)


def test_builtin_metrics_from_mapping_and_object() -> None:
    assert {"params_m", "gmacs", "latency_ms"} <= set(list_metrics())
    model = tiny_model()
    values = compute_metrics(["params_m", "gmacs"], model, {"input_size": (1, 8, 8)})
    assert values == {"params_m": TINY_PARAMS / 1e6, "gmacs": TINY_MACS_ONE / 1e9}
    latency = compute_metrics(["latency_ms"], model, SimpleNamespace(input_size=(1, 8, 8)))
    assert latency["latency_ms"] > 0


def test_builtin_metric_needs_input_size() -> None:
    with pytest.raises(MultiAgentPruningError, match="metric 'gmacs' failed.*input_size must be"):
        compute_metrics(["gmacs"], tiny_model(), {"num_classes": 10})


def test_custom_metric_is_computed(scratch_metrics: list[str]) -> None:
    @register_metric("test_weights_per_output")
    def weights_per_output(model: nn.Module, dataset_info: dict) -> float:
        return compute_params(model) / dataset_info["num_classes"]

    scratch_metrics.append("test_weights_per_output")
    assert get_metric("test_weights_per_output") is weights_per_output
    info = {"num_classes": 5, "input_size": (1, 8, 8)}
    values = compute_metrics(["test_weights_per_output", "params_m"], tiny_model(), info)
    assert values == {"test_weights_per_output": 95.0, "params_m": 0.000475}


def test_duplicate_metric_rejected() -> None:
    with pytest.raises(MultiAgentPruningError, match="metric 'params_m' is already registered"):
        register_metric("params_m")(lambda model, info: 0.0)
    with pytest.raises(ConfigurationError, match="non-empty string"):
        register_metric(" ")


def test_unknown_metric_suggests_names() -> None:
    with pytest.raises(UnknownNameError, match="Unknown metric 'param_m'. Did you mean: params_m"):
        compute_metrics(["gmacs", "param_m"], tiny_model(), {"input_size": (1, 8, 8)})


@pytest.mark.parametrize("bad", [math.nan, math.inf, "12", None, True])
def test_metric_must_return_finite_number(scratch_metrics: list[str], bad: object) -> None:
    register_metric("test_bad_value")(lambda model, info: bad)
    scratch_metrics.append("test_bad_value")
    with pytest.raises(MultiAgentPruningError, match="metric 'test_bad_value' returned .*expected a finite number"):
        compute_metrics(["test_bad_value"], tiny_model(), {})


def test_metric_raising_is_named(scratch_metrics: list[str]) -> None:
    def broken(model: nn.Module, info: dict) -> float:
        raise ZeroDivisionError("division by zero")

    register_metric("test_broken")(broken)
    scratch_metrics.append("test_broken")
    expected = "metric 'test_broken' failed: ZeroDivisionError: division by zero"
    with pytest.raises(MultiAgentPruningError, match=expected):
        compute_metrics(["test_broken"], tiny_model(), {})


def test_tensor_metric_value_is_accepted(scratch_metrics: list[str]) -> None:
    register_metric("test_tensor")(lambda model, info: torch.tensor(2.5))
    scratch_metrics.append("test_tensor")
    assert compute_metrics(["test_tensor"], tiny_model(), {}) == {"test_tensor": 2.5}
