"""The API reference's baseline classes: the method descriptions of :mod:`multi_agent_pruning.methods`
made runnable (``prune_to_target_macs``), plus the helpers a custom method uses."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from multi_agent_pruning.core.evaluation import evaluate
from multi_agent_pruning.core.strategy import Strategy
from multi_agent_pruning.core.training import FineTuneConfig, fine_tune
from multi_agent_pruning.data import DatasetInfo, create_loaders, get_dataset_info, load_dataset
from multi_agent_pruning.exceptions import ConfigurationError
from multi_agent_pruning.methods.base import PruningMethod
from multi_agent_pruning.models import create_model, example_inputs, model_input_size, resolve_input_size
from multi_agent_pruning.orchestrator.compare import run_single_strategy
from multi_agent_pruning.utils.metrics import compute_macs

__all__ = ["BasePruningMethod"]

_NEEDS_ONE = ("override make_strategy (the strategy the default prune_to_target_macs runs through the shared "
              "trial function) or prune_to_target_macs (a pruning run of your own)")


class BasePruningMethod(PruningMethod):
    """A pruning method for comparisons and user extensions.

    A subclass overrides one of two methods:

    * :meth:`make_strategy` (the method's default strategy), and may extend :meth:`search_space`
      with the hyperparameters Optuna may tune. The default :meth:`prune_to_target_macs` runs the
      strategy through the same trial function as the agents.
    * :meth:`prune_to_target_macs`, for a pruning run of its own (see the API reference), using
      the helpers :meth:`load_model`, :meth:`compute_macs` and :meth:`fine_tune_and_evaluate`.
      Such a method has no strategy: calling its :meth:`make_strategy` raises NotImplementedError.

    A subclass that overrides neither cannot be instantiated (TypeError saying so).
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.runs_own_pruning = cls.prune_to_target_macs is not BasePruningMethod.prune_to_target_macs
        if cls.runs_own_pruning and getattr(cls.make_strategy, "__isabstractmethod__", False):
            # Set before ABCMeta collects the abstract methods, so the class is instantiable.
            cls.make_strategy = _no_strategy  # type: ignore[method-assign]

    def __new__(cls, *args: Any, **kwargs: Any) -> BasePruningMethod:
        if getattr(cls.make_strategy, "__isabstractmethod__", False):
            raise TypeError(f"{cls.__name__} cannot be instantiated: {_NEEDS_ONE}")
        return super().__new__(cls)

    def prune_to_target_macs(self, model_name: str, target_macs: float, dataset: str, *,
                             config_path: str | Path | None = None, output_dir: str | Path | None = None,
                             overrides: Sequence[str] = ()) -> dict[str, Any]:
        """Prunes ``model_name`` to ``target_macs`` (absolute MACs, or a fraction < 1 of the dense
        MACs to keep) with this method's strategy; one trial through the shared trial function.

        Returns:
            ``final_accuracy``, ``final_macs``, ``params``, ``macs_reduction``, ``method``,
            ``status``, ``error`` and ``results_path`` (the row is stored there).
        """
        return run_single_strategy(self, model_name, target_macs, dataset, config_path=config_path,
                                   output_dir=output_dir, overrides=list(overrides))

    # -- helpers of custom methods ---------------------------------------------------------------
    def load_model(self, model_name: str, dataset: str | None = None, *,
                   pretrained: bool | Literal["auto"] = "auto", **kwargs: Any) -> nn.Module:
        """A registry (or timm) model, with its pretrained weights where it has them.

        Args:
            model_name: Registry name (``compact_cnn``, ``deit_small``) or timm name.
            dataset: A registered dataset to build the model for: its classes, channels and image
                size (as the search does); None keeps the model's defaults.
            pretrained: ``"auto"`` loads timm's pretrained weights where the model has them, and
                where they cannot be fetched (offline) keeps the random initialisation with one
                warning saying how to get them; True requires them; False never loads them.
            **kwargs: Further :func:`~multi_agent_pruning.models.create_model` arguments
                (``num_classes``, ``in_chans``, ``input_size``, ``checkpoint`` ...), over those
                from ``dataset``.
        """
        if dataset is not None:
            info = get_dataset_info(dataset)
            kwargs = {"num_classes": info.num_classes, "in_chans": info.in_chans, "input_size": info.input_size[-1],
                      **kwargs}
        return create_model(model_name, pretrained=pretrained, **kwargs)

    def compute_macs(self, model: nn.Module, input_shape: tuple[int, ...] | None = None) -> float:
        """MACs of one forward pass over ``input_shape`` (batch first); by default one input of
        the size the model was built for (:func:`~multi_agent_pruning.models.model_input_size`)."""
        return compute_macs(model, input_shape if input_shape is not None else (1, *resolve_input_size(model)))

    def fine_tune_and_evaluate(self, model: nn.Module, dataset: str, *, steps: int = 100, lr: float = 1e-3,
                               batch_size: int = 128, path: str | None = None,
                               image_size: int | None = None) -> float:
        """Fine-tunes ``model`` briefly on ``dataset`` and returns its top-1 on the val split.

        The dataset is loaded at its own image size (or ``image_size``); the model must take it.

        Raises:
            ConfigurationError: The model does not fit the dataset (channels, image size or
                classes), naming both sides; build it with ``load_model(name, dataset=...)``.
        """
        info = get_dataset_info(dataset, image_size)
        _check_fits(model, dataset, info)
        bundle = load_dataset(dataset, path=path, image_size=image_size)
        train, val = create_loaders(bundle, batch_size)
        fine_tune(model, train, FineTuneConfig(epochs=0.0, steps=steps, lr=lr))
        return float(evaluate(model, val)["top1"])


def _no_strategy(self: BasePruningMethod, base: Strategy, kinds: Sequence[str] = ()) -> Strategy:
    raise NotImplementedError(
        f"{type(self).__name__} prunes with its own prune_to_target_macs and has no strategy for the shared trial "
        f"function (the search, Optuna, run_single_strategy); to use it there, {_NEEDS_ONE.split(' or ')[0]}")


def _check_fits(model: nn.Module, dataset: str, info: DatasetInfo) -> None:
    """One ConfigurationError when ``model`` cannot classify ``dataset``'s images into its classes."""
    built_for = model_input_size(model)
    problem = None
    if built_for is not None and built_for[0] != info.in_chans:
        problem = f"it takes {built_for[0]}-channel images"
    else:
        probe = example_inputs(model, info.input_size)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                out = model(probe)
        except Exception as error:  # noqa: BLE001 - any failure of the forward pass is a mismatch
            problem = f"its forward pass fails on them ({type(error).__name__}: {str(error)[:200]})"
        finally:
            model.train(was_training)
        if problem is None and (not isinstance(out, torch.Tensor) or out.shape[-1] != info.num_classes):
            got = out.shape[-1] if isinstance(out, torch.Tensor) else type(out).__name__
            problem = f"it outputs {got} classes, not {info.num_classes}"
    if problem is not None:
        built = f"built for input {built_for}" if built_for is not None else type(model).__name__
        raise ConfigurationError(
            f"the model ({built}) does not fit dataset {dataset!r} ({info.num_classes} classes, input "
            f"{tuple(info.input_size)}): {problem}. Build it for the dataset with "
            f"load_model(model_name, dataset={dataset!r}).")
