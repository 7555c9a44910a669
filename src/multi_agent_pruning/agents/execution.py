"""The three agents of a trial: prune, fine-tune, evaluate. Thin wrappers over the core.

Each accepts an optional ``deadline`` (:class:`~multi_agent_pruning.core.evaluation.Deadline`)
in its input and hands it to the loop it runs, so a trial's wall-clock limit bounds every stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from multi_agent_pruning.agents.base import BaseAgent
from multi_agent_pruning.core.distributed import DistributedSettings, distributed_fine_tune
from multi_agent_pruning.core.engine import apply_strategy
from multi_agent_pruning.core.evaluation import evaluate
from multi_agent_pruning.core.strategy import Strategy
from multi_agent_pruning.core.training import FineTuneConfig, fine_tune, set_gradient_checkpointing
from multi_agent_pruning.exceptions import ConfigurationError, PruningError
from multi_agent_pruning.models import example_inputs, resolve_input_size
from multi_agent_pruning.utils.metrics import compute_macs, compute_metrics, compute_params, measure_latency

__all__ = ["EvaluationAgent", "FineTuningAgent", "PruningAgent"]


def _strategy(value: Any) -> Strategy:
    return value if isinstance(value, Strategy) else Strategy.from_dict(dict(value))


class PruningAgent(BaseAgent):
    """Prunes a model with a strategy at its exact target.

    Config: ``backend`` (``torch_pruning``, the only one), ``tolerance`` (0.005) and
    ``global_pruning`` (when set, overrides the strategy's ranking: True ranks channels across
    layers, False within each layer, which also turns isomorphic ranking off).

    A model left above the budget by more than ``tolerance`` is an error (PruningError), so no
    method is ever credited with a model that does not meet the budget; below it is accepted.

    Input: ``model``, ``strategy``, optional ``example_inputs`` (by default one sample of
    ``input_size``, an int side or (C, H, W), or of the input the model was built for), optional
    ``calibration`` batches and ``deadline``.
    Output: ``model`` (pruned), ``prune`` (numbers of :class:`~multi_agent_pruning.core.PruneResult`)
    and ``strategy`` (the strategy applied, as a dict).
    """

    config_keys = frozenset({"backend", "tolerance", "global_pruning"})

    def get_agent_role(self) -> str:
        return "Pruner: applies a strategy with torch-pruning and hits the MACs/params target."

    def execute(self, input_data: dict[str, Any]) -> dict[str, Any]:
        if self.config.get("backend", "torch_pruning") != "torch_pruning":
            raise ConfigurationError(f"pruning backend {self.config['backend']!r} is not supported; use 'torch_pruning'")
        tolerance = float(self.config.get("tolerance", 0.005))
        strategy = self._strategy(input_data["strategy"])
        inputs = input_data.get("example_inputs")
        if inputs is None:
            inputs = example_inputs(input_data["model"], input_data.get("input_size"))
        with self.profiler.timer("prune"):
            result = apply_strategy(input_data["model"], strategy, inputs, input_data.get("calibration"),
                                    tolerance=tolerance, deadline=input_data.get("deadline"))
        if result.error > tolerance:
            # Over budget: comparing it with models that meet the budget would be unfair.
            raise PruningError(f"closest pruned model is {100 * result.error:.2f}% above the "
                               f"{result.target_kind} budget (tolerance {100 * tolerance:.1f}%); channel "
                               f"granularity or rounding cannot meet it")
        return self.result(model=result.model, prune=result.summary(), strategy=strategy.to_dict())

    def _strategy(self, value: Any) -> Strategy:
        strategy = _strategy(value)
        ranking = self.config.get("global_pruning")
        if ranking is None:
            return strategy
        if not isinstance(ranking, bool):
            raise ConfigurationError(f"PruningAgent config global_pruning must be true or false, got {ranking!r}")
        return strategy.replace(global_pruning=True) if ranking else strategy.replace(global_pruning=False,
                                                                                      isomorphic=False)


class FineTuningAgent(BaseAgent):
    """Recovers accuracy after pruning (config: ``optimizer``, ``scheduler``, and any
    :class:`~multi_agent_pruning.core.training.FineTuneConfig` field as an override).

    Input: ``model``, ``train_loader``, ``strategy``, optional ``teacher``, ``device`` and ``deadline``. With
    config ``distributed`` (a :class:`~multi_agent_pruning.core.distributed.DistributedSettings`
    dict) it trains data-parallel with Ray Train instead, reading ``train_dataset`` and
    ``batch_size`` (per worker). Config ``gradient_checkpointing`` (``hardware.gpu.gradient_checkpointing``
    in a search) checkpoints activations where the model supports it (timm's ``set_grad_checkpointing``).
    Input ``optimizer_state`` continues an earlier run's optimizer state, and
    ``keep_optimizer_state: True`` returns it in ``finetune["optimizer_state"]`` (a multi-fidelity
    trial continues its fine-tune rung after rung; one process only).
    Output: ``model`` and ``finetune`` (steps, losses, seconds).
    """

    config_keys = frozenset({*FineTuneConfig.model_fields, "distributed", "progress", "gradient_checkpointing"})

    def get_agent_role(self) -> str:
        return "Fine-tuner: short recovery training (AdamW + cosine, optional distillation)."

    def execute(self, input_data: dict[str, Any]) -> dict[str, Any]:
        overrides = {k: v for k, v in self.config.items() if k in FineTuneConfig.model_fields}
        config = FineTuneConfig.from_strategy(_strategy(input_data["strategy"]), **overrides)
        teacher = input_data.get("teacher") if config.kd_weight > 0 else None
        distributed = self.config.get("distributed")
        if distributed:
            return self._distributed(input_data, config, teacher, distributed)
        if self.config.get("gradient_checkpointing"):
            set_gradient_checkpointing(input_data["model"])
        with self.profiler.timer("finetune"):
            result = fine_tune(input_data["model"], input_data["train_loader"], config, teacher=teacher,
                               device=input_data.get("device"), progress=bool(self.config.get("progress", False)),
                               seed=int(input_data.get("seed", 0)), deadline=input_data.get("deadline"),
                               optimizer_state=input_data.get("optimizer_state"))
        summary = {"steps": result.steps, "final_loss": result.final_loss, "mean_loss": result.mean_loss,
                   "seconds": result.seconds}
        if input_data.get("keep_optimizer_state"):
            summary["optimizer_state"] = result.optimizer_state
        return self.result(model=input_data["model"], finetune=summary)

    def _distributed(self, input_data, config, teacher, settings) -> dict[str, Any]:
        model = input_data["model"]
        with self.profiler.timer("finetune"):
            summary = distributed_fine_tune(model, input_data["train_dataset"], config, DistributedSettings(**settings),
                                            batch_size=int(input_data["batch_size"]), teacher=teacher,
                                            seed=int(input_data.get("seed", 0)), deadline=input_data.get("deadline"))
        device = input_data.get("device")
        if device is not None:
            model.to(device)
        return self.result(model=model, finetune=summary)


class EvaluationAgent(BaseAgent):
    """Top-1/top-5, MACs, params, latency and registered custom metrics of a model.

    Config: ``comprehensive_metrics`` (latency too, default True), ``custom_metrics`` (names
    registered with :func:`~multi_agent_pruning.utils.metrics.register_metric`, or ``{name:
    function}`` as a search ships them to its trials), ``latency_repeats``.
    Input: ``model``, ``val_loader``, optional ``dataset_info``, ``device``, ``max_batches`` and
    ``deadline`` (checked per batch and between the measurements). MACs and latency are measured
    for one input of ``input_shape`` ((1, C, H, W)), else of ``input_size`` (an int side or
    (C, H, W)), else of ``dataset_info``'s input size, else of the input the model was built for.
    """

    config_keys = frozenset({"comprehensive_metrics", "custom_metrics", "latency_repeats"})

    def get_agent_role(self) -> str:
        return "Evaluator: measures accuracy, cost and custom metrics of a pruned model."

    def execute(self, input_data: dict[str, Any]) -> dict[str, Any]:
        model, shape = input_data["model"], _input_shape(input_data)
        deadline = input_data.get("deadline")
        check = deadline.check if deadline is not None else lambda: None
        with self.profiler.timer("evaluate"):
            metrics = evaluate(model, input_data["val_loader"], device=input_data.get("device"),
                               max_batches=input_data.get("max_batches"), deadline=deadline)
        metrics["macs"] = compute_macs(model, shape)
        metrics["params"] = compute_params(model)
        if self.config.get("comprehensive_metrics", True):
            check()
            with self.profiler.timer("latency"):
                latency = measure_latency(model, shape, device=input_data.get("device"),
                                          repeats=int(self.config.get("latency_repeats", 10)))
            metrics["latency_ms"] = latency["median_ms"]
        names = self.config.get("custom_metrics") or []
        if names:
            check()
            info = input_data.get("dataset_info") or {"input_size": shape[1:]}
            metrics["custom"] = compute_metrics(names, model, info)
        return self.result(metrics=metrics)


def _input_shape(input_data: Mapping[str, Any]) -> tuple[int, ...]:
    """The (1, C, H, W) an evaluation measures (see :class:`EvaluationAgent`)."""
    if input_data.get("input_shape") is not None:
        return tuple(input_data["input_shape"])
    size = input_data.get("input_size")
    info = input_data.get("dataset_info")
    if size is None and info is not None:
        size = info.get("input_size") if isinstance(info, Mapping) else getattr(info, "input_size", None)
        size = None if size is None else tuple(size)
    return (1, *resolve_input_size(input_data["model"], size))
