"""API reference, Advanced Usage / Distributed Training: the ``hardware`` section of a config.

    python examples/24_distributed_training.py            # nccl, 4 processes per trial (needs CUDA)
    python examples/24_distributed_training.py --small    # gloo on CPU, 2 processes per trial

With ``distributed.enabled`` and ``world_size`` > 1, every trial fine-tunes data-parallel with Ray
Train (``world_size`` workers, ``backend`` nccl for GPUs, gloo for CPUs; nccl is refused on a
machine without CUDA). ``gpu.memory_limit`` caps each trial's GPU memory, ``mixed_precision:
false`` turns ``finetune.amp`` off, and ``gradient_checkpointing`` checkpoints activations of the
data-parallel fine-tuning (timm models).
"""

import tempfile
from pathlib import Path

from _small import pick

from multi_agent_pruning.config import load_config

BACKEND, WORLD_SIZE, DEVICE = pick(("nccl", 4, "cuda"), ("gloo", 2, "cpu"))

CONFIG = f"""
# In your configuration file
hardware:
  device: {DEVICE}
  distributed:
    enabled: true
    backend: "{BACKEND}"
    world_size: {WORLD_SIZE}

  gpu:
    memory_limit: "40GB"
    mixed_precision: true
    gradient_checkpointing: true
"""

path = Path(tempfile.mkdtemp()) / "distributed.yaml"
path.write_text(CONFIG)
config = load_config(path)

distributed, gpu = config.hardware.distributed, config.hardware.gpu
print(f"Distributed: enabled={distributed.enabled}, backend={distributed.backend}, world_size={distributed.world_size}")
print(f"GPU: memory limit {gpu.memory_limit_bytes() / 2**30:.1f} GiB, mixed precision "
      f"{config.effective_finetune().amp}, gradient checkpointing {gpu.gradient_checkpointing}")
