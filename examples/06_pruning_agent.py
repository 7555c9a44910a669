"""API reference, PruningAgent: applies a strategy with torch-pruning at the exact target.

    python examples/06_pruning_agent.py            # DeiT-Small, pretrained
    python examples/06_pruning_agent.py --small    # the compact CNN at random init

The reference only constructs the agent; the lines after it prune half of the model's MACs.
``backend`` accepts only ``torch_pruning`` (the one engine); ``global_pruning`` overrides the
strategy's ranking.
"""

from _small import pick

from multi_agent_pruning.agents import PruningAgent
from multi_agent_pruning.core import Strategy
from multi_agent_pruning.models import create_model
from multi_agent_pruning.utils.metrics import compute_macs

MODEL, PRETRAINED = pick(("deit_small", True), ("compact_cnn", False))
INPUT_SHAPE = pick((1, 3, 224, 224), (1, 1, 16, 16))

agent = PruningAgent(config={
    'backend': 'torch_pruning',
    'global_pruning': True
})

# Beyond the reference: remove half of the MACs (the magnitude criterion needs no data).
import torch

model = create_model(MODEL, pretrained=PRETRAINED)
dense_macs = compute_macs(model, INPUT_SHAPE)
result = agent.execute({
    'model': model,
    'strategy': Strategy(importance='l1', target_kind='macs', target_reduction=0.5),
    'example_inputs': torch.randn(INPUT_SHAPE),
})
pruned_macs = compute_macs(result['model'], INPUT_SHAPE)
print(f"MACs: {dense_macs / 1e6:.2f}M -> {pruned_macs / 1e6:.2f}M ({1 - pruned_macs / dense_macs:.1%} removed)")
