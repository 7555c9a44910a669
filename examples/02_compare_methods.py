"""API reference, MultiAgentPruner.compare_methods: several methods on the same target.

    python examples/02_compare_methods.py            # DeiT-Small on ImageNet (IMAGENET_PATH, GPUs)
    python examples/02_compare_methods.py --small    # compact_cnn on digits, 2 trials per method

Every method gets the same trial budget, seeds and fine-tuning budget; all trials land in one
result table. Each entry also holds ``best_accuracy``, ``mean`` and ``std`` over the runs.
"""

from _small import SMALL_CONFIG, pick

from multi_agent_pruning import MultiAgentPruner

CONFIG = pick("configs/experiments/enhanced_multi_agent.yaml", SMALL_CONFIG)
MODEL = pick("deit_small", "compact_cnn")
DATASET = pick("imagenet", "digits")

pruner = MultiAgentPruner(config_path=CONFIG)

comparison = pruner.compare_methods(
    model_name=MODEL,
    dataset=DATASET,
    target_ratio=0.5,
    methods=["multi_agent", "magnitude_l1", "taylor"]
)

for method, result in comparison.items():
    print(f"{method}: {result['final_accuracy']:.1%} accuracy")
