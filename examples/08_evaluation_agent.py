"""API reference, EvaluationAgent: accuracy, MACs, parameters and latency of a model.

    python examples/08_evaluation_agent.py            # DeiT-Small, pretrained, on ImageNet val
    python examples/08_evaluation_agent.py --small    # the compact CNN on digits (random init: ~10 %)

The reference only constructs the agent; the lines after it evaluate a model.
``comprehensive_metrics`` adds the latency; in a config file that key is refused, use
``evaluation.latency`` and ``evaluation.custom_metrics`` there (docs/api.md).
"""

from _small import pick

from multi_agent_pruning.agents import EvaluationAgent
from multi_agent_pruning.data import create_loaders, load_dataset
from multi_agent_pruning.models import create_model

MODEL, PRETRAINED = pick(("deit_small", True), ("compact_cnn", False))
DATASET, BATCH_SIZE = pick(("imagenet", 256), ("digits", 128))
INPUT_SHAPE = pick((1, 3, 224, 224), (1, 1, 16, 16))

agent = EvaluationAgent(config={'comprehensive_metrics': True})

# Beyond the reference: evaluate a model on the validation split.
model = create_model(MODEL, pretrained=PRETRAINED)
_, val_loader = create_loaders(load_dataset(DATASET), BATCH_SIZE)
metrics = agent.execute({'model': model, 'val_loader': val_loader, 'input_shape': INPUT_SHAPE})['metrics']
print(f"Top-1: {metrics['top1']:.1%}, MACs: {metrics['macs'] / 1e6:.2f}M, "
      f"params: {metrics['params'] / 1e6:.2f}M, latency: {metrics['latency_ms']:.2f} ms")
