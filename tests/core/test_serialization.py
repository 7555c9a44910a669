"""Pruned models saved as safetensors + JSON and rebuilt exactly; unsafe and broken loads refused."""

from __future__ import annotations

import hashlib
import json

import pytest
import timm
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from multi_agent_pruning.core.engine import apply_strategy
from multi_agent_pruning.core.serialization import (
    FORMAT_VERSION,
    load_pickled_model,
    load_pruned_model,
    save_pruned_model,
)
from multi_agent_pruning.core.strategy import Strategy
from multi_agent_pruning.exceptions import CheckpointError, ConfigurationError

VIT_NAME = "vit_tiny_patch16_224"
VIT_KWARGS = {"img_size": 16, "patch_size": 4, "in_chans": 1, "num_classes": 10, "embed_dim": 48, "depth": 2,
              "num_heads": 3}
STRATEGY = Strategy(importance="l2", target_reduction=0.5)


class ConvNet(nn.Module):
    """Conv + BatchNorm, optionally with a depthwise 3x3 (groups == channels) in the middle."""

    def __init__(self, width: int = 16, depthwise: bool = False, num_classes: int = 10) -> None:
        super().__init__()
        layers = [nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        if depthwise:
            depthwise_conv = nn.Conv2d(width, width, 3, padding=1, groups=width, bias=False)
            layers += [depthwise_conv, nn.BatchNorm2d(width), nn.ReLU()]
        layers += [nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def build(name: str, **kwargs) -> nn.Module:
    """The build_fn the loader calls: timm names, plus this file's ConvNet (``convnet_depthwise``)."""
    if name in ("convnet", "convnet_depthwise"):
        return ConvNet(depthwise=name == "convnet_depthwise", **kwargs)
    return timm.create_model(name, pretrained=False, **kwargs)


def _rewrite(path, document: dict) -> None:
    """Writes an edited model.json with its document hash recomputed, as the format defines it."""
    body = {k: v for k, v in document.items() if k != "document_sha256"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    document["document_sha256"] = hashlib.sha256(canonical.encode("ascii")).hexdigest()
    path.write_text(json.dumps(document))


def _prune(model: nn.Module) -> nn.Module:
    result = apply_strategy(model.eval(), STRATEGY, torch.randn(1, 1, 16, 16))
    return result.model.eval(), result


def _set_bn_statistics(model: nn.Module) -> None:
    generator = torch.Generator().manual_seed(3)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator))
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.num_batches_tracked.fill_(7)


@pytest.fixture(scope="module")
def pruned_vit():
    torch.manual_seed(0)
    return _prune(build(VIT_NAME, **VIT_KWARGS))


def test_pruned_vit_round_trip_is_exact(pruned_vit, tmp_path):
    model, result = pruned_vit
    dense = build(VIT_NAME, **VIT_KWARGS)
    assert model.blocks[0].attn.qkv.out_features < dense.blocks[0].attn.qkv.out_features
    metadata = {"strategy": STRATEGY, "macs": result.macs, "params": result.params, "accuracy": None}
    save_pruned_model(model, tmp_path / "vit", base_model=VIT_NAME, model_kwargs=VIT_KWARGS, metadata=metadata)
    loaded, meta = load_pruned_model(tmp_path / "vit", build_fn=build)

    x = torch.randn(5, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert not loaded.training
    for saved_block, loaded_block in zip(model.blocks, loaded.blocks):
        saved_attn, loaded_attn = saved_block.attn, loaded_block.attn
        assert (loaded_attn.num_heads, loaded_attn.head_dim) == (saved_attn.num_heads, saved_attn.head_dim)
    assert model.blocks[0].attn.head_dim != dense.blocks[0].attn.head_dim
    assert loaded.pos_embed.shape == model.pos_embed.shape
    assert sum(p.numel() for p in loaded.parameters()) == result.params
    assert Strategy.from_dict(meta["strategy"]) == STRATEGY
    assert (meta["macs"], meta["params"], meta["accuracy"]) == (result.macs, result.params, None)
    assert meta["versions"]["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert meta["versions"]["timm"] == timm.__version__
    assert meta["created"].endswith("+00:00")


def test_model_json_describes_structure_and_weights(pruned_vit, tmp_path):
    model, _ = pruned_vit
    save_pruned_model(model, tmp_path, base_model=VIT_NAME, model_kwargs=VIT_KWARGS, metadata={})
    document = json.loads((tmp_path / "model.json").read_text())
    assert document["format_version"] == FORMAT_VERSION
    assert (document["base_model"], document["model_kwargs"]) == (VIT_NAME, VIT_KWARGS)
    attn = document["structure"]["blocks.1.attn"]
    assert attn["class"].startswith("timm.") and attn["class"].endswith(".Attention")
    assert attn["attributes"]["head_dim"] == model.blocks[1].attn.head_dim
    assert document["structure"]["blocks.1.norm1"]["attributes"]["normalized_shape"] == [model.pos_embed.shape[-1]]
    assert document["weights"]["tensors"] == len(model.state_dict())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.safetensors"]  # no temp files left


@pytest.mark.parametrize("depthwise", [False, True])
def test_pruned_cnn_round_trip_restores_batchnorm_and_groups(depthwise, tmp_path):
    torch.manual_seed(0)
    dense = ConvNet(depthwise=depthwise)
    _set_bn_statistics(dense)
    model, _ = _prune(dense)
    name = "convnet_depthwise" if depthwise else "convnet"
    save_pruned_model(model, tmp_path, base_model=name, model_kwargs={}, metadata={})
    loaded, _ = load_pruned_model(tmp_path, build_fn=build)

    x = torch.randn(3, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    pairs = [(a, b) for a, b in zip(model.modules(), loaded.modules()) if isinstance(a, nn.BatchNorm2d)]
    assert pairs and any(a.num_features < 16 for a, _ in pairs)
    for saved, restored in pairs:
        assert torch.equal(saved.running_mean, restored.running_mean)
        assert torch.equal(saved.running_var, restored.running_var)
        assert int(restored.num_batches_tracked) == 7
    if depthwise:
        conv = loaded.features[3]
        assert conv.groups == conv.in_channels == conv.out_channels == model.features[3].groups < 16


def _tied(name: str, width: int = 4) -> nn.Module:
    model = nn.Sequential(nn.Linear(width, width), nn.Linear(width, width))
    model[1].weight = model[0].weight
    return model


def test_shared_weights_are_saved_and_stay_tied(tmp_path):
    model = _tied("tied", width=3)
    save_pruned_model(model, tmp_path, base_model="tied", model_kwargs={}, metadata={})
    loaded, _ = load_pruned_model(tmp_path, build_fn=_tied)  # built at width 4, saved at 3
    assert torch.equal(loaded[0].weight, model[0].weight)
    assert loaded[0].weight is loaded[1].weight


def test_overwrite_replaces_both_files(tmp_path):
    first, second = ConvNet(width=4), ConvNet(width=4)
    save_pruned_model(first, tmp_path, base_model="convnet", model_kwargs={"width": 4}, metadata={"run": 1})
    save_pruned_model(second, tmp_path, base_model="convnet", model_kwargs={"width": 4}, metadata={"run": 2})
    loaded, meta = load_pruned_model(tmp_path, build_fn=build)
    assert meta["run"] == 2
    assert torch.equal(loaded.head.weight, second.head.weight)


def test_unserialisable_metadata_writes_nothing(tmp_path):
    with pytest.raises(ConfigurationError, match=r"metadata.callback: must be JSON-serialisable"):
        save_pruned_model(ConvNet(width=4), tmp_path / "out", base_model="convnet", model_kwargs={},
                          metadata={"callback": print})
    assert not (tmp_path / "out").exists()


def test_missing_files_are_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="model.json not found"):
        load_pruned_model(tmp_path / "nowhere", build_fn=build)
    save_pruned_model(ConvNet(width=4), tmp_path, base_model="convnet", model_kwargs={"width": 4}, metadata={})
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors not found"):
        load_pruned_model(tmp_path, build_fn=build)


def test_different_architecture_is_named(pruned_vit, tmp_path):
    model, _ = pruned_vit
    save_pruned_model(model, tmp_path, base_model=VIT_NAME, model_kwargs=VIT_KWARGS, metadata={})
    document = json.loads((tmp_path / "model.json").read_text())
    document["model_kwargs"]["depth"] = 1
    _rewrite(tmp_path / "model.json", document)
    with pytest.raises(CheckpointError, match=r"saved modules missing from it 'blocks.1'"):
        load_pruned_model(tmp_path, build_fn=build)


def test_other_class_and_unknown_base_model_are_errors(tmp_path):
    save_pruned_model(ConvNet(width=4), tmp_path, base_model="convnet", model_kwargs={"width": 4}, metadata={})
    document = json.loads((tmp_path / "model.json").read_text())
    document["structure"]["features.1"]["class"] = "torch.nn.modules.batchnorm.BatchNorm1d"
    _rewrite(tmp_path / "model.json", document)
    with pytest.raises(CheckpointError, match=r"Module 'features.1' is a torch.nn.modules.batchnorm.BatchNorm2d"):
        load_pruned_model(tmp_path, build_fn=build)
    document["base_model"] = "no_such_model_xyz"
    _rewrite(tmp_path / "model.json", document)
    with pytest.raises(CheckpointError, match=r"Could not build the base model 'no_such_model_xyz'"):
        load_pruned_model(tmp_path, build_fn=build)


def test_weights_that_do_not_fit_fail_the_strict_load(tmp_path):
    save_pruned_model(ConvNet(width=4), tmp_path, base_model="convnet", model_kwargs={"width": 4}, metadata={})
    state = load_file(str(tmp_path / "model.safetensors"))
    state["head.extra"] = torch.zeros(2)
    del state["head.bias"]
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="files come from different saves or the weights were modified"):
        load_pruned_model(tmp_path, build_fn=build)
    # With matching checksums the strict load itself reports the keys.
    document = json.loads((tmp_path / "model.json").read_text())
    document["weights"]["sha256"] = hashlib.sha256((tmp_path / "model.safetensors").read_bytes()).hexdigest()
    _rewrite(tmp_path / "model.json", document)
    with pytest.raises(CheckpointError, match=r"(?s)do not fit the rebuilt model: .*head\.bias.*head\.extra"):
        load_pruned_model(tmp_path, build_fn=build)


def test_newer_format_version_is_refused(tmp_path):
    save_pruned_model(ConvNet(width=4), tmp_path, base_model="convnet", model_kwargs={"width": 4}, metadata={})
    document = json.loads((tmp_path / "model.json").read_text())
    document["format_version"] = FORMAT_VERSION + 1
    (tmp_path / "model.json").write_text(json.dumps(document))
    with pytest.raises(CheckpointError, match=f"format_version {FORMAT_VERSION + 1}"):
        load_pruned_model(tmp_path, build_fn=build)


def test_pickled_model_needs_trust(tmp_path):
    model = ConvNet(width=4).eval()
    torch.save(model, tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="can execute arbitrary code"):
        load_pickled_model(tmp_path / "model.pt")
    loaded = load_pickled_model(tmp_path / "model.pt", trust=True)
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    torch.save(model.state_dict(), tmp_path / "state.pt")
    with pytest.raises(CheckpointError, match="of type OrderedDict, not an nn.Module"):
        load_pickled_model(tmp_path / "state.pt", trust=True)
    with pytest.raises(CheckpointError, match="not found"):
        load_pickled_model(tmp_path / "missing.pt", trust=True)
