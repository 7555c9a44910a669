"""API reference, Performance Optimization / Memory Optimization: what the project has instead.

    python examples/26_memory_optimization.py    # the same in both modes (loads configs only)

The reference's three ``agents.pruning_agent`` keys were accepted and never read; they are now
refused, each with what to use instead (docs/configuration.md, "The API reference's shape").
Activation checkpointing is ``hardware.gpu.gradient_checkpointing``; pruning needs no memory
switch (torch-pruning prunes in place, one copy of the model per trial).
"""

from multi_agent_pruning.config import load_config_dict
from multi_agent_pruning.exceptions import ConfigurationError

# Enable memory optimizations (the reference's keys: refused)
config = {
    'agents': {
        'pruning_agent': {
            'memory_efficient': True,
            'gradient_checkpointing': True,
            'batch_processing': True
        }
    }
}

try:
    load_config_dict(config)
except ConfigurationError as e:
    print(f"Configuration error: {e}")

# The project's way
config = {
    'hardware': {
        'gpu': {
            'gradient_checkpointing': True,
            'mixed_precision': True,
        }
    }
}
cfg = load_config_dict(config)
print(f"gradient_checkpointing={cfg.hardware.gpu.gradient_checkpointing}, amp={cfg.effective_finetune().amp}")
