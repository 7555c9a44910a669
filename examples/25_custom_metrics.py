"""API reference, Advanced Usage / Custom Metrics: ``register_metric`` and the evaluation agent.

    python examples/25_custom_metrics.py            # DeiT-Small, pretrained, on ImageNet val
    python examples/25_custom_metrics.py --small    # the compact CNN on digits

A metric is ``fn(model, dataset_info) -> float``; ``dataset_info`` holds the ``input_size``
(C, H, W). The name can also go in a config (``evaluation.custom_metrics``): a search resolves it
here, in the script that registered it, and ships the function to its Ray workers with the trial
context, so a metric defined in this script works in every trial.
"""

from _small import pick

from multi_agent_pruning.agents import EvaluationAgent
from multi_agent_pruning.data import create_loaders, load_dataset
from multi_agent_pruning.models import create_model
from multi_agent_pruning.utils.metrics import compute_macs, compute_params, register_metric

MODEL, PRETRAINED = pick(("deit_small", True), ("compact_cnn", False))
DATASET, BATCH_SIZE = pick(("imagenet", 256), ("digits", 128))
INPUT_SHAPE = pick((1, 3, 224, 224), (1, 1, 16, 16))


@register_metric("custom_efficiency")
def compute_custom_efficiency(model, dataset_info):
    """Custom efficiency metric."""
    macs = compute_macs(model, INPUT_SHAPE)
    params = compute_params(model)

    # Custom efficiency calculation
    efficiency = (params / 1e6) / (macs / 1e9)
    return efficiency

# Use in evaluation
evaluation_agent = EvaluationAgent(config={
    'custom_metrics': ['custom_efficiency']
})

# Beyond the reference: evaluate a model with it.
model = create_model(MODEL, pretrained=PRETRAINED)
_, val_loader = create_loaders(load_dataset(DATASET), BATCH_SIZE)
metrics = evaluation_agent.execute({'model': model, 'val_loader': val_loader, 'input_shape': INPUT_SHAPE})['metrics']
print(f"custom_efficiency: {metrics['custom']['custom_efficiency']:.2f} M params per GMAC")
