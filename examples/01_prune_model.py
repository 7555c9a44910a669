"""API reference, MultiAgentPruner.prune_model: search the best pruned model at a target.

    python examples/01_prune_model.py            # DeiT-Small on ImageNet (IMAGENET_PATH, GPUs)
    python examples/01_prune_model.py --small    # compact_cnn on digits, 2 trials (about a minute)

``target_ratio`` is the fraction of MACs removed unless ``target_kind="params"``; the reference
describes a parameter reduction, so this example asks for one (docs/api.md).
"""

from _small import SMALL_CONFIG, pick, scratch

from multi_agent_pruning import MultiAgentPruner

CONFIG = pick("configs/experiments/enhanced_multi_agent.yaml", SMALL_CONFIG)
MODEL = pick("deit_small", "compact_cnn")
DATASET = pick("imagenet", "digits")
OUTPUT_DIR = pick("./results/deit_small_50pct", scratch("deit_small_50pct"))

pruner = MultiAgentPruner(config_path=CONFIG)

result = pruner.prune_model(
    model_name=MODEL,
    dataset=DATASET,
    target_ratio=0.5,
    target_kind="params",  # the reference's meaning; the default is a MACs reduction
    output_dir=OUTPUT_DIR
)

print(f"Achieved {result['params_reduction']:.1%} reduction")
print(f"Final accuracy: {result['final_accuracy']:.1%}")
