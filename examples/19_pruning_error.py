"""API reference, Error Handling / PruningError: raised when pruning cannot deliver a model.

    python examples/19_pruning_error.py            # DeiT-Small on ImageNet (IMAGENET_PATH)
    python examples/19_pruning_error.py --small    # the compact CNN on digits

Asks to remove 99.5 % of the MACs, which no structural pruning can do (every layer keeps at least
10 % of its channels): the search refuses it before Ray starts. A search whose trials all fail
raises ``PruningError`` too, after storing every failed row (``e.result`` holds the summary).
"""

from _small import SMALL_CONFIG, pick, scratch

from multi_agent_pruning import MultiAgentPruner
from multi_agent_pruning.exceptions import PruningError

CONFIG = pick("configs/experiments/enhanced_multi_agent.yaml", SMALL_CONFIG)
MODEL = pick("deit_small", "compact_cnn")
DATASET = pick("imagenet", "digits")
OUTPUT_DIR = pick("./results/impossible", scratch("impossible"))

pruner = MultiAgentPruner(config_path=CONFIG)

try:
    result = pruner.prune_model(model_name=MODEL, dataset=DATASET, target_ratio=0.995, output_dir=OUTPUT_DIR)
except PruningError as e:
    print(f"Pruning failed: {e}")
