"""Model registry: short names for timm models and small models for the embedded datasets.

``create_model("deit_small")`` builds timm's ``deit_small_patch16_224``;
``create_model("compact_cnn", in_chans=3, input_size=32, num_classes=10)`` a CIFAR-10 CNN.
"""

from multi_agent_pruning.models import catalog as _catalog  # noqa: F401  (registers the models)
from multi_agent_pruning.models.checkpoint import load_checkpoint, read_state_dict, save_checkpoint
from multi_agent_pruning.models.describe import describe_models, format_model_table
from multi_agent_pruning.models.inputs import example_inputs, model_input_size, record_input_size, resolve_input_size
from multi_agent_pruning.models.registry import (
    FAMILIES,
    ModelSpec,
    create_model,
    get_model_spec,
    has_pretrained_weights,
    list_models,
    register_model,
    register_model_spec,
)
from multi_agent_pruning.models.small import CompactResNet

__all__ = [
    "FAMILIES",
    "CompactResNet",
    "ModelSpec",
    "create_model",
    "describe_models",
    "example_inputs",
    "format_model_table",
    "get_model_spec",
    "has_pretrained_weights",
    "list_models",
    "load_checkpoint",
    "model_input_size",
    "read_state_dict",
    "record_input_size",
    "register_model",
    "register_model_spec",
    "resolve_input_size",
    "save_checkpoint",
]
