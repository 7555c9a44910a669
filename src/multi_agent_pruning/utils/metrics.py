"""Model cost metrics (MACs, parameters, latency) and the registry of evaluation metrics.

MACs follow torch-pruning's counter (``tp.utils.count_ops_and_params``), the convention of
the DepGraph and Isomorphic Pruning papers whose numbers we compare to: at 224 px it gives
DeiT-Tiny 1.26 G, DeiT-Small 4.61 G, DeiT-Base 17.59 G, ResNet-50 4.12 G, ConvNeXt-T 4.46 G.

A metric is a function ``fn(model, dataset_info) -> float``. ``dataset_info`` is a mapping or
an object with at least ``input_size``, the (C, H, W) of one input image.
"""

from __future__ import annotations

import math
import numbers
import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from multi_agent_pruning.exceptions import ConfigurationError, MultiAgentPruningError
from multi_agent_pruning.utils.registry import Registry

__all__ = [
    "compute_macs",
    "compute_metrics",
    "compute_params",
    "get_metric",
    "resolve_metrics",
    "input_size_of",
    "list_metrics",
    "measure_latency",
    "register_metric",
]

MetricFn = Callable[[nn.Module, Any], float]
_METRICS: Registry[MetricFn] = Registry("metric")


def _model_device(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _model_dtype(model: nn.Module) -> torch.dtype:
    for tensor in model.parameters():
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.get_default_dtype()


def _example_input(model: nn.Module, input_shape: tuple[int, ...] | torch.Tensor) -> torch.Tensor:
    if isinstance(input_shape, torch.Tensor):
        return input_shape
    shape = tuple(input_shape)
    if len(shape) < 2 or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise ConfigurationError(f"input_shape must be a tuple of positive ints like (1, 3, 224, 224), got {shape}")
    device, dtype = _model_device(model), _model_dtype(model)
    if device.type == "meta":
        return torch.empty(shape, device=device, dtype=dtype)
    return torch.randn(shape, device=device, dtype=dtype)


def compute_macs(model: nn.Module, input_shape: tuple[int, ...] | torch.Tensor) -> float:
    """Multiply-accumulate operations of one forward pass over an input of ``input_shape``.

    The count is for the whole given shape: ``(1, 3, 224, 224)`` gives the per-image MACs,
    ``(8, 3, 224, 224)`` eight times that. Works on models on the ``meta`` device. The model is
    not modified (torch-pruning counts on a deep copy) and keeps its training mode.

    Args:
        model: The network.
        input_shape: Shape of the input tensor, batch first, or an example tensor.
    """
    example = _example_input(model, input_shape)
    was_training = model.training
    try:
        with torch.no_grad():
            # torch-pruning divides by the batch size; multiply back to count the given shape.
            per_sample, _ = tp.utils.count_ops_and_params(model, example)
    finally:
        model.train(was_training)
    return float(per_sample) * example.shape[0]


def compute_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not); shared parameters count once."""
    return sum(p.numel() for p in model.parameters())


def measure_latency(
    model: nn.Module,
    input_shape: tuple[int, ...],
    device: str | torch.device | None = None,
    warmup: int = 3,
    repeats: int = 10,
) -> dict[str, Any]:
    """Wall-clock time of ``model(x)`` in eval mode under ``torch.no_grad``.

    Args:
        model: The network; moved to ``device`` for the measurement and back afterwards.
        input_shape: Input shape, batch first.
        device: Where to run; None uses the model's device.
        warmup: Untimed runs first (caches, cuDNN autotuning).
        repeats: Timed runs.

    Returns:
        ``median_ms``, ``p90_ms`` (nearest rank), ``mean_ms``, ``repeats``, ``device`` (str),
        ``batch_size``.
    """
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ConfigurationError(f"warmup must be an integer >= 0, got {warmup!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ConfigurationError(f"repeats must be an integer >= 1, got {repeats!r}")
    original_device, was_training = _model_device(model), model.training
    target = torch.device(device) if device is not None else original_device
    model.to(target).eval()
    try:
        example = _example_input(model, input_shape)
        times = [_time_once(model, example, target) for _ in range(warmup + repeats)][warmup:]
    finally:
        model.to(original_device).train(was_training)
    ordered = sorted(times)
    return {
        "median_ms": statistics.median(ordered),
        "p90_ms": ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)],
        "mean_ms": statistics.fmean(ordered),
        "repeats": repeats,
        "device": str(target),
        "batch_size": int(example.shape[0]),
    }


def _time_once(model: nn.Module, example: torch.Tensor, device: torch.device) -> float:
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.no_grad():
        synchronize()
        start = time.perf_counter()
        model(example)
        synchronize()
    return (time.perf_counter() - start) * 1000.0


def register_metric(name: str) -> Callable[[MetricFn], MetricFn]:
    """Decorator registering ``fn(model, dataset_info) -> float`` under ``name``."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError(f"metric name must be a non-empty string, got {name!r}")
    return _METRICS.register(name)


def get_metric(name: str) -> MetricFn:
    """The metric function registered as ``name``; unknown names raise UnknownNameError."""
    return _METRICS.get(name)


def list_metrics() -> list[str]:
    """Registered metric names, sorted."""
    return _METRICS.names()


def resolve_metrics(names: Iterable[str] | Mapping[str, MetricFn]) -> dict[str, MetricFn]:
    """``{name: function}`` of registered metric names (a mapping is returned as it is).

    A search resolves its metrics here, in the driver where the user registered them, and ships
    the functions to the trials with the trial context: a metric registered in the user's script
    is then known in every Ray worker, which never runs that script.

    Raises:
        UnknownNameError: A name is not registered.
    """
    if isinstance(names, Mapping):
        return dict(names)
    return {name: get_metric(name) for name in names}


def compute_metrics(names: Iterable[str] | Mapping[str, MetricFn], model: nn.Module,
                    dataset_info: Any) -> dict[str, float]:
    """Runs each metric (registered names, or ``{name: function}`` from :func:`resolve_metrics`)
    and returns ``{name: value}``.

    All names are resolved before any metric runs, so a typo fails fast.

    Raises:
        UnknownNameError: A name is not registered.
        MultiAgentPruningError: A metric raised, or returned something other than a finite number.
    """
    functions = resolve_metrics(names)
    return {name: _run_metric(name, fn, model, dataset_info) for name, fn in functions.items()}


def _run_metric(name: str, fn: MetricFn, model: nn.Module, dataset_info: Any) -> float:
    try:
        value = fn(model, dataset_info)
    except Exception as error:
        raise MultiAgentPruningError(f"metric {name!r} failed: {type(error).__name__}: {error}") from error
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise MultiAgentPruningError(f"metric {name!r} returned {value!r}; expected a finite number")
    return float(value)


def input_size_of(dataset_info: Any) -> tuple[int, int, int]:
    """``dataset_info.input_size`` (mapping key or attribute) as a (C, H, W) tuple."""
    if isinstance(dataset_info, Mapping):
        size = dataset_info.get("input_size")
    else:
        size = getattr(dataset_info, "input_size", None)
    if size is None or len(tuple(size)) != 3:
        raise ConfigurationError(f"dataset_info.input_size must be (C, H, W), got {size!r}")
    return tuple(int(d) for d in size)  # type: ignore[return-value]


@register_metric("params_m")
def _params_m(model: nn.Module, dataset_info: Any) -> float:
    """Parameters in millions."""
    return compute_params(model) / 1e6


@register_metric("gmacs")
def _gmacs(model: nn.Module, dataset_info: Any) -> float:
    """GMACs for one image of ``dataset_info.input_size``."""
    return compute_macs(model, (1, *input_size_of(dataset_info))) / 1e9


@register_metric("latency_ms")
def _latency_ms(model: nn.Module, dataset_info: Any) -> float:
    """Median latency for one image of ``dataset_info.input_size`` on the model's device."""
    return measure_latency(model, (1, *input_size_of(dataset_info)))["median_ms"]
