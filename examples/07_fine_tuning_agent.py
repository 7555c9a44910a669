"""API reference, FineTuningAgent: the short recovery training after pruning.

    python examples/07_fine_tuning_agent.py            # DeiT-Small on ImageNet (IMAGENET_PATH)
    python examples/07_fine_tuning_agent.py --small    # the compact CNN on digits, 30 steps

The reference only constructs the agent; the lines after it train a model for the strategy's
fine-tuning budget and print the loss.
"""

from _small import pick

from multi_agent_pruning.agents import FineTuningAgent
from multi_agent_pruning.core import Strategy
from multi_agent_pruning.data import create_loaders, load_dataset
from multi_agent_pruning.models import create_model

MODEL, PRETRAINED = pick(("deit_small", True), ("compact_cnn", False))
DATASET, BATCH_SIZE, STEPS = pick(("imagenet", 256, 1000), ("digits", 64, 30))

agent = FineTuningAgent(config={
    'optimizer': 'adamw',
    'scheduler': 'cosine'
})

# Beyond the reference: fine-tune for the strategy's budget.
model = create_model(MODEL, pretrained=PRETRAINED)
train_loader, _ = create_loaders(load_dataset(DATASET), BATCH_SIZE)
result = agent.execute({
    'model': model,
    'train_loader': train_loader,
    'strategy': Strategy(finetune_steps=STEPS, learning_rate=3e-3),
})
finetune = result['finetune']
print(f"Fine-tuned {finetune['steps']} steps, final loss {finetune['final_loss']:.3f}")
