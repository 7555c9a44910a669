"""The input a model takes (models.inputs) and create_model(pretrained="auto")."""

from __future__ import annotations

import logging

import pytest
import timm
import torch
from huggingface_hub import constants
from torch import nn

from multi_agent_pruning.exceptions import ConfigurationError
from multi_agent_pruning.models import (
    CompactResNet,
    create_model,
    example_inputs,
    has_pretrained_weights,
    model_input_size,
    resolve_input_size,
)
from support.hub_cache import fill_hub_cache


@pytest.mark.parametrize(("name", "kwargs", "expected"), [
    ("compact_cnn", {}, (1, 16, 16)),
    ("compact_cnn", {"in_chans": 3, "input_size": 32}, (3, 32, 32)),
    ("deit_micro", {"input_size": 28}, (1, 28, 28)),
    ("convnext_micro", {}, (1, 16, 16)),
    ("resnet18", {}, (3, 224, 224)),
    ("resnet18", {"in_chans": 1, "input_size": 32}, (1, 32, 32)),
    ("deit_tiny", {"input_size": 32}, (3, 32, 32)),
    ("vit_tiny_patch16_224", {"img_size": 64}, (3, 64, 64)),
])
def test_create_model_records_the_input_it_was_built_for(name, kwargs, expected) -> None:
    model = create_model(name, device="meta", **kwargs)
    assert model_input_size(model) == expected
    assert resolve_input_size(model) == expected
    assert example_inputs(model).shape == (1, *expected)


def test_timm_models_built_directly_read_their_config_corrected() -> None:
    # timm's pretrained_cfg keeps (3, 224, 224) whatever in_chans and img_size the model got.
    vit = timm.create_model("vit_tiny_patch16_224", img_size=64, in_chans=1, num_classes=10)
    assert vit.pretrained_cfg["input_size"] == (3, 224, 224)
    assert model_input_size(vit) == (1, 64, 64)
    assert model_input_size(timm.create_model("resnet18", num_classes=10)) == (3, 224, 224)


def test_an_int_input_size_is_a_square_image_with_the_models_channels() -> None:
    assert resolve_input_size(create_model("compact_cnn"), 28) == (1, 28, 28)
    assert resolve_input_size(create_model("resnet18", device="meta"), 32) == (3, 32, 32)
    assert resolve_input_size(CompactResNet(in_chans=3), 32) == (3, 32, 32)  # first convolution
    assert resolve_input_size(CompactResNet(), (1, 8, 8)) == (1, 8, 8)
    assert example_inputs(create_model("compact_cnn"), 8, batch_size=4).shape == (4, 1, 8, 8)


@pytest.mark.parametrize(("size", "message"), [
    (None, "cannot tell the input size of CompactResNet"),
    (0, "positive int"),
    ((16, 16), r"\(C, H, W\)"),
    ((1, 16, 16.0), r"\(C, H, W\)"),
    (True, r"\(C, H, W\)"),
])
def test_unknown_or_malformed_input_sizes_are_one_clear_error(size, message) -> None:
    with pytest.raises(ConfigurationError, match=message):
        resolve_input_size(CompactResNet(), size)
    with pytest.raises(ConfigurationError, match="channel count of Sequential"):
        resolve_input_size(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), 2)


class _FirstParameterElsewhere(nn.Module):
    """A model whose first parameter is on another device (meta) than the layer reading the input."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1, device="meta"))
        self.conv = nn.Conv2d(1, 4, 3)
        self.pretrained_cfg = {"input_size": (1, 8, 8)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_example_inputs_go_where_the_input_layer_is() -> None:
    model = _FirstParameterElsewhere()
    assert next(model.parameters()).device.type == "meta"
    inputs = example_inputs(model)
    assert (inputs.device.type, inputs.dtype, tuple(inputs.shape)) == ("cpu", torch.float32, (1, 1, 8, 8))
    assert model(inputs).shape == (1, 4, 6, 6)
    half = create_model("compact_cnn").to(torch.float64)
    assert example_inputs(half).dtype == torch.float64
    assert example_inputs(create_model("compact_cnn", device="meta")).device.type == "meta"


def test_has_pretrained_weights() -> None:
    assert has_pretrained_weights("deit_small") and has_pretrained_weights("resnet18")
    assert has_pretrained_weights("resnet18.a1_in1k")
    assert not has_pretrained_weights("compact_cnn") and not has_pretrained_weights("deit_micro")


def test_pretrained_auto_loads_cached_weights(tmp_path, monkeypatch, caplog) -> None:
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = fill_hub_cache(tmp_path, "mobilenetv2_100")
    with caplog.at_level(logging.WARNING):
        model = create_model("mobilenetv2_100", pretrained="auto", num_classes=10)
    assert torch.equal(model.conv_stem.weight, source.conv_stem.weight)
    assert model.classifier.out_features == 10
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_pretrained_auto_falls_back_offline_with_one_warning(tmp_path, monkeypatch, caplog) -> None:
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    with caplog.at_level(logging.WARNING):
        model = create_model("mobilenetv2_100", pretrained="auto", num_classes=10)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    text = warnings[0].getMessage()
    for part in ("'mobilenetv2_100'", "random initialisation", "ModelDownloader", str(tmp_path), "checkpoint=PATH"):
        assert part in text
    torch.manual_seed(0)
    assert torch.equal(model.conv_stem.weight, create_model("mobilenetv2_100", num_classes=10).conv_stem.weight)
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # nothing to load: no warning, no attempt
        create_model("compact_cnn", pretrained="auto")
        create_model("mobilenetv2_100", pretrained="auto", device="meta")
    assert not caplog.records


def test_pretrained_must_be_a_bool_or_auto() -> None:
    with pytest.raises(ConfigurationError, match="pretrained must be True, False or 'auto', got 'yes'"):
        create_model("compact_cnn", pretrained="yes")
