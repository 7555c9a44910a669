"""The API reference's baseline classes: the method descriptions of :mod:`multi_agent_pruning.methods`
made runnable (``prune_to_target_macs``), plus the helpers a custom method uses."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from multi_agent_pruning.core.evaluation import evaluate
from multi_agent_pruning.core.training import FineTuneConfig, fine_tune
from multi_agent_pruning.data import create_loaders, load_dataset
from multi_agent_pruning.methods.base import PruningMethod
from multi_agent_pruning.models import create_model
from multi_agent_pruning.orchestrator.compare import run_single_strategy
from multi_agent_pruning.utils.metrics import compute_macs

__all__ = ["BasePruningMethod"]


class BasePruningMethod(PruningMethod):
    """A pruning method for comparisons and user extensions.

    Subclasses implement :meth:`make_strategy` (the method's default strategy) and may extend
    :meth:`search_space` with the hyperparameters Optuna may tune. The default
    :meth:`prune_to_target_macs` runs the strategy through the same trial function as the
    agents; a custom method may override it completely (see the API reference), using the
    helpers :meth:`load_model`, :meth:`compute_macs` and :meth:`fine_tune_and_evaluate`.
    """

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

    def load_model(self, model_name: str, **kwargs: Any):
        """A registry model (no weights are downloaded unless ``pretrained=True``)."""
        return create_model(model_name, **kwargs)

    def compute_macs(self, model, input_shape: tuple[int, ...] = (1, 3, 224, 224)) -> float:
        return compute_macs(model, input_shape)

    def fine_tune_and_evaluate(self, model, dataset: str, *, steps: int = 100, lr: float = 1e-3,
                               batch_size: int = 128, path: str | None = None) -> float:
        """Fine-tunes ``model`` briefly on ``dataset`` and returns its top-1 on the val split."""
        bundle = load_dataset(dataset, path=path)
        train, val = create_loaders(bundle, batch_size)
        fine_tune(model, train, FineTuneConfig(epochs=0.0, steps=steps, lr=lr))
        return float(evaluate(model, val)["top1"])
