"""API reference, Configuration System / Loading Configuration: ``load_config``.

    IMAGENET_PATH=/data/imagenet python examples/12_load_config.py   # from the repository root
    python examples/12_load_config.py --small                         # IMAGENET_PATH may be unset

The file is validated as a whole into a frozen, typed ``ExperimentConfig`` (docs/configuration.md);
loading it reads no data, so small mode only fills ``IMAGENET_PATH`` with a placeholder.
"""

import os

from _small import REPO, SMALL, pick

from multi_agent_pruning.config import load_config

CONFIG_PATH = pick("configs/experiments/enhanced_multi_agent.yaml",
                   str(REPO / "configs/experiments/enhanced_multi_agent.yaml"))
if SMALL:
    os.environ.setdefault("IMAGENET_PATH", "/path/to/imagenet")

config = load_config(CONFIG_PATH)

print(f"Experiment: {config.experiment.name} (seed {config.experiment.seed})")
print(f"Model: {config.model.name} on {config.dataset.name} at {config.effective_dataset().path}")
print(f"Target: {config.target.kind} budget {config.target.budget:.3g}")
print(f"Master agent: max_iterations={config.effective_search().max_iterations}")
