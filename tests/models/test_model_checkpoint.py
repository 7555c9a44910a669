"""Checkpoint loading through create_model(checkpoint=...): formats, heads, safety."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from multi_agent_pruning.exceptions import CheckpointError
from multi_agent_pruning.models import create_model, read_state_dict, save_checkpoint
from multi_agent_pruning.models.checkpoint import classifier_names

INPUT = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(1))


def trained_like_model(num_classes: int = 10) -> torch.nn.Module:
    """compact_cnn with non-default BatchNorm statistics, so buffers must load too."""
    torch.manual_seed(0)
    model = create_model("compact_cnn", num_classes=num_classes)
    with torch.no_grad():
        model.train()(torch.randn(8, 1, 16, 16))
    return model.eval()


def outputs(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(INPUT)


@pytest.mark.parametrize("wrapper", [None, "model", "state_dict"])
def test_state_dict_round_trip(tmp_path: Path, wrapper: str | None) -> None:
    source = trained_like_model()
    state = source.state_dict()
    path = tmp_path / "weights.pth"
    torch.save(state if wrapper is None else {wrapper: state, "epoch": 3}, path)
    torch.manual_seed(123)  # a different random init, overwritten by the checkpoint
    loaded = create_model("compact_cnn", checkpoint=path)
    assert torch.equal(outputs(loaded), outputs(source))
    assert torch.equal(loaded.stem[1].running_mean, source.stem[1].running_mean)


def test_data_parallel_prefix_is_stripped(tmp_path: Path) -> None:
    source = trained_like_model()
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "ddp.pt")
    assert torch.equal(outputs(create_model("compact_cnn", checkpoint=tmp_path / "ddp.pt")), outputs(source))


def test_safetensors_files(tmp_path: Path) -> None:
    source = trained_like_model()
    written = save_checkpoint(source, tmp_path / "sub" / "weights.safetensors")
    assert written == tmp_path / "sub" / "weights.safetensors"
    assert [p.name for p in written.parent.iterdir()] == ["weights.safetensors"]  # no temp file left
    assert torch.equal(outputs(create_model("compact_cnn", checkpoint=written)), outputs(source))
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "plain.safetensors"))
    assert torch.equal(outputs(create_model("compact_cnn", checkpoint=tmp_path / "plain.safetensors")), outputs(source))


def test_head_of_another_size_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = trained_like_model(num_classes=10)
    path = save_checkpoint(source, tmp_path / "ten_classes.pth")
    with caplog.at_level(logging.WARNING, logger="multi_agent_pruning.models.checkpoint"):
        loaded = create_model("compact_cnn", num_classes=4, checkpoint=path)
    assert loaded.head.weight.shape == (4, 128)
    assert torch.equal(loaded.stages[2][0].conv2.weight, source.stages[2][0].conv2.weight)
    assert not torch.equal(loaded.head.weight, source.head.weight[:4])
    assert "classifier of another size" in caplog.text
    assert "head.weight, head.bias" in caplog.text


def test_timm_head_names() -> None:
    assert classifier_names(create_model("deit_base_distilled", device="meta")) == ["head", "head_dist"]
    assert classifier_names(create_model("resnet18", device="meta")) == ["fc"]
    assert classifier_names(create_model("deit_micro")) == ["head"]


def test_timm_model_head_mismatch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = create_model("deit_micro", num_classes=10)
    path = save_checkpoint(source, tmp_path / "vit.pth")
    loaded = create_model("deit_micro", num_classes=3, checkpoint=path)
    assert loaded.head.out_features == 3
    assert torch.equal(loaded.blocks[3].mlp.fc2.weight, source.blocks[3].mlp.fc2.weight)
    assert torch.equal(loaded.pos_embed, source.pos_embed)


def test_other_architecture_is_rejected(tmp_path: Path) -> None:
    path = save_checkpoint(create_model("deit_micro"), tmp_path / "vit.pth")
    with pytest.raises(CheckpointError) as info:
        create_model("compact_cnn", checkpoint=path)
    message = str(info.value)
    assert "does not match the model CompactResNet" in message
    assert "missing keys: stem.0.weight, stem.1.weight" in message
    assert "unexpected keys: cls_token, pos_embed, patch_embed.proj.weight" in message
    assert "more)" in message


def test_wrong_width_is_rejected(tmp_path: Path) -> None:
    path = save_checkpoint(create_model("compact_cnn", widths=(16, 32, 64)), tmp_path / "narrow.pth")
    with pytest.raises(CheckpointError, match=r"shape mismatches .*stem\.0\.weight \(16, 1, 3, 3\) vs \(32, 1, 3, 3\)"):
        create_model("compact_cnn", checkpoint=path)


def test_pickled_module_needs_trust(tmp_path: Path) -> None:
    source = trained_like_model()
    path = tmp_path / "full_model.pth"
    torch.save(source, path)
    with pytest.raises(CheckpointError, match="pickled Python objects .*trust_checkpoint=True"):
        create_model("compact_cnn", checkpoint=path)
    loaded = create_model("compact_cnn", checkpoint=path, trust_checkpoint=True)
    assert torch.equal(outputs(loaded), outputs(source))


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "weights.pth"
    with pytest.raises(CheckpointError, match=f"Checkpoint file not found: {missing}"):
        create_model("compact_cnn", checkpoint=missing)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match=f"Could not read checkpoint {garbage}"):
        create_model("compact_cnn", checkpoint=garbage, trust_checkpoint=True)
    bad_safetensors = tmp_path / "bad.safetensors"
    bad_safetensors.write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError, match="Could not read safetensors checkpoint"):
        read_state_dict(bad_safetensors)


def test_non_state_dict_content(tmp_path: Path) -> None:
    torch.save({"weights": [1, 2, 3]}, tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="non-tensor entries: weights"):
        read_state_dict(tmp_path / "list.pth")
    torch.save(torch.ones(3), tmp_path / "tensor.pth")
    with pytest.raises(CheckpointError, match="holds Tensor, not a model state dict"):
        read_state_dict(tmp_path / "tensor.pth")
