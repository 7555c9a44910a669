"""API reference, Configuration Structure and Environment Variables: the YAML shape and ``${VAR}``.

    IMAGENET_PATH=/data/imagenet OPENAI_API_KEY=... python examples/13_config_structure.py
    python examples/13_config_structure.py --small     # placeholders for both variables

Writes the reference's two YAML snippets to a file, loads it and shows where each value lands.
``openai:`` is accepted as an alias of the ``llm:`` section; ``datasets.<name>`` applies when
``dataset.name`` selects that dataset; the API key is held as a secret and never printed.
"""

import os
import tempfile
from pathlib import Path

from _small import SMALL

from multi_agent_pruning.config import load_config

if SMALL:
    os.environ.setdefault("IMAGENET_PATH", "/path/to/imagenet")
    os.environ.setdefault("OPENAI_API_KEY", "placeholder-key")

CONFIG = """
# Main experiment configuration
experiment:
  name: "experiment_name"
  seed: 42

# Agent-specific configurations
agents:
  profiling_agent:
    enable_caching: true
    cache_duration: 3600

  master_agent:
    max_iterations: 5
    convergence_threshold: 0.005

# Dataset configurations
datasets:
  imagenet:
    path: "/path/to/imagenet"
    batch_size: 256
    safety_limits:
      max_mlp_pruning: 0.15
      max_attention_pruning: 0.10
"""

ENVIRONMENT = """
datasets:
  imagenet:
    path: ${IMAGENET_PATH}  # Reads from environment

openai:
  api_key: ${OPENAI_API_KEY}
"""

folder = Path(tempfile.mkdtemp())
(folder / "structure.yaml").write_text(CONFIG)
(folder / "environment.yaml").write_text("extends: structure.yaml\n" + ENVIRONMENT)

config = load_config(folder / "structure.yaml", overrides=["dataset.name=imagenet"])
print(f"Experiment: {config.experiment.name}, seed {config.experiment.seed}")
print(f"Profiling cache: {config.agents.profiling_agent.enable_caching}, "
      f"{config.agents.profiling_agent.cache_duration:.0f} s")
print(f"Master agent: {config.effective_search().max_iterations} iterations, "
      f"threshold {config.effective_search().convergence_threshold}")
print(f"ImageNet: {config.effective_dataset().path}, batch {config.effective_dataset().batch_size}")
limits = config.effective_safety_limits()
print(f"Safety limits: mlp {limits.max_mlp_pruning}, attention {limits.max_attention_pruning}")

config = load_config(folder / "environment.yaml", overrides=["dataset.name=imagenet"])
print(f"ImageNet from $IMAGENET_PATH: {config.effective_dataset().path}")
print(f"LLM key from $OPENAI_API_KEY: {'set' if config.llm_api_key() else 'unset'} (shown as {config.llm.api_key})")
