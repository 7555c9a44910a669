"""A Hugging Face cache filled the way huggingface_hub fills it, for pretrained loading offline."""

from __future__ import annotations

from pathlib import Path

import timm
import torch


def fill_hub_cache(cache: Path, timm_name: str, seed: int = 0) -> torch.nn.Module:
    """Writes random weights of ``timm_name`` (seeded) in the cache layout of a downloaded repo
    and returns the model they come from."""
    hub_id = timm.models.get_pretrained_cfg(timm_name).hf_hub_id
    repo = cache / f"models--{hub_id.replace('/', '--')}"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    torch.manual_seed(seed)
    model = timm.create_model(timm_name)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(repo / "snapshots" / commit / "model.safetensors"))
    return model
