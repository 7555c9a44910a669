"""API reference, Baseline Methods / TaylorPruning: Taylor expansion-based importance pruning.

    python examples/15_taylor_pruning.py            # DeiT-Small on ImageNet to 2.3 GMACs (IMAGENET_PATH, GPUs)
    python examples/15_taylor_pruning.py --small    # the compact CNN on digits to 6.1 MMACs (half its MACs)

One trial through the same trial function as the search: prune to the exact MACs, fine-tune,
evaluate; the row is stored under ``runs/``. The optional ``config_path`` (an addition to the
reference) sets what a search would use: weights, data path, fine-tuning budget; small mode
passes examples/small.yaml, whose compact CNN is trained briefly first (it has no pretrained
weights). A target the model cannot meet raises ``PruningError``.
"""

from _small import SMALL_CONFIG, pick

from multi_agent_pruning.baselines import TaylorPruning

CONFIG = pick(None, SMALL_CONFIG)
MODEL = pick("deit_small", "compact_cnn")
TARGET_MACS = pick(2.3e9, 6.1e6)
DATASET = pick("imagenet", "digits")

pruner = TaylorPruning()
result = pruner.prune_to_target_macs(
    model_name=MODEL,
    target_macs=TARGET_MACS,
    dataset=DATASET,
    config_path=CONFIG,  # None: the shipped defaults (pretrained weights where the model has them)
)

print(f"{result['method']}: {result['final_macs'] / 1e6:.2f}M MACs, final accuracy {result['final_accuracy']:.1%}")
