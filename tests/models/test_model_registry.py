"""Registry lookups, timm names, create_model arguments and pretrained loading offline."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from multi_agent_pruning.exceptions import (
    ConfigurationError,
    ModelDownloadError,
    MultiAgentPruningError,
    UnknownNameError,
)
from multi_agent_pruning.models import (
    ModelSpec,
    create_model,
    get_model_spec,
    list_models,
    register_model,
    register_model_spec,
)
from multi_agent_pruning.models import registry
from multi_agent_pruning.models.pretrained import hub_offline_mode, hub_reachable

SHORT_NAMES = {
    "deit_tiny": "deit_tiny_patch16_224",
    "deit_small": "deit_small_patch16_224",
    "deit_base": "deit_base_patch16_224",
    "deit_base_distilled": "deit_base_distilled_patch16_224",
    "vit_tiny": "vit_tiny_patch16_224",
    "vit_small": "vit_small_patch16_224",
    "vit_base": "vit_base_patch16_224",
    "resnet18": "resnet18",
    "resnet34": "resnet34",
    "resnet50": "resnet50",
    "resnet101": "resnet101",
    "resnet152": "resnet152",
    "convnext_tiny": "convnext_tiny",
    "convnext_small": "convnext_small",
    "convnext_base": "convnext_base",
    "mobilenetv2_100": "mobilenetv2_100",
    "efficientnet_b0": "efficientnet_b0",
}


def test_deit_small_spec() -> None:
    spec = get_model_spec("deit_small")
    assert (spec.timm_name, spec.input_size, spec.family, spec.builder) == (
        "deit_small_patch16_224",
        (3, 224, 224),
        "vit",
        None,
    )


def test_short_names_map_to_timm() -> None:
    assert {name: get_model_spec(name).timm_name for name in SHORT_NAMES} == SHORT_NAMES
    assert set(SHORT_NAMES) | {"compact_cnn", "deit_micro", "convnext_micro"} == set(list_models())
    assert list_models("deit_*") == ["deit_base", "deit_base_distilled", "deit_micro", "deit_small", "deit_tiny"]


def test_small_model_specs() -> None:
    for name, family in [("compact_cnn", "cnn"), ("deit_micro", "vit"), ("convnext_micro", "convnext")]:
        spec = get_model_spec(name)
        assert (spec.timm_name, spec.input_size, spec.family) == (None, (1, 16, 16), family)
        assert spec.description


def test_unknown_name_suggests_closest() -> None:
    with pytest.raises(UnknownNameError) as info:
        get_model_spec("deit_smal")
    assert info.value.suggestions[0] == "deit_small"
    assert "Unknown model 'deit_smal'. Did you mean: deit_small" in str(info.value)
    assert isinstance(info.value, KeyError)
    with pytest.raises(UnknownNameError, match="Did you mean: .*resnet50"):
        create_model("resnet5O")


def test_raw_timm_name_is_accepted() -> None:
    spec = get_model_spec("deit_tiny_patch16_224")
    assert (spec.timm_name, spec.input_size, spec.family) == ("deit_tiny_patch16_224", (3, 224, 224), "vit")
    model = create_model("deit_tiny_patch16_224", num_classes=7, device="meta")
    assert model.head.out_features == 7
    assert get_model_spec("convnext_atto").family == "convnext"


def test_vit_is_built_for_input_size_and_cnn_ignores_it() -> None:
    vit = create_model("deit_small", num_classes=10, in_chans=1, input_size=32, device="meta")
    assert vit.patch_embed.img_size == (32, 32)
    assert vit.pos_embed.shape == (1, 1 + 4, 384)
    assert vit.patch_embed.proj.in_channels == 1
    cnn = create_model("resnet18", num_classes=10, input_size=32)
    assert cnn(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", ["compact_cnn", "deit_micro", "convnext_micro"])
@pytest.mark.parametrize(("channels", "side", "classes"), [(1, 16, 10), (3, 32, 10), (1, 28, 7)])
def test_small_models_output_shape(name: str, channels: int, side: int, classes: int) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=classes, in_chans=channels, input_size=side)
    out = model(torch.randn(2, channels, side, side))
    assert out.shape == (2, classes)
    assert torch.isfinite(out).all()


def test_deit_micro_token_count() -> None:
    assert create_model("deit_micro").patch_embed.num_patches == 64  # 16 px, patch 2
    assert create_model("deit_micro", input_size=28).patch_embed.num_patches == 49  # patch 4
    assert create_model("deit_micro", in_chans=3, input_size=32).patch_embed.num_patches == 64


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 0}, "num_classes must be a positive integer, got 0"),
        ({"in_chans": -1}, "in_chans must be a positive integer, got -1"),
        ({"input_size": 16.5}, "input_size must be a positive integer, got 16.5"),
        ({"device": "gpu:7"}, "device must be a torch device"),
        ({"pretrained": True}, "'compact_cnn' has no pretrained weights"),
        ({"device": "meta", "checkpoint": "x.pth"}, "device='meta' builds an empty model"),
        ({"widths": (8, 16)}, "one depth per stage width"),
        ({"not_an_option": 3}, "cannot be built with"),
    ],
)
def test_create_model_rejects_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        create_model("compact_cnn", **kwargs)


def test_register_model_decorator_and_duplicates() -> None:
    @register_model("test_linear_probe", family="cnn", input_size=(1, 8, 8))
    def linear_probe(num_classes: int = 10, in_chans: int = 1, img_size: int = 8) -> nn.Module:
        """Flatten and one linear layer."""
        return nn.Sequential(nn.Flatten(), nn.Linear(in_chans * img_size * img_size, num_classes))

    try:
        spec = get_model_spec("test_linear_probe")
        assert (spec.builder, spec.description) == (linear_probe, "Flatten and one linear layer.")
        model = create_model("test_linear_probe", num_classes=4, in_chans=2, input_size=6)
        assert model[1].in_features == 72 and model[1].out_features == 4
        with pytest.raises(MultiAgentPruningError, match="model 'test_linear_probe' is already registered"):
            register_model("test_linear_probe")(linear_probe)
    finally:
        registry._MODELS.remove("test_linear_probe")
    with pytest.raises(MultiAgentPruningError, match="already registered"):
        register_model_spec(ModelSpec("deit_small", "deit_small_patch16_224", (3, 224, 224), "vit"))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"family": "rnn"}, "family must be one of"),
        ({"input_size": (3, 224)}, r"input_size must be \(C, H, W\)"),
        ({"timm_name": None}, "needs a timm_name or a builder"),
    ],
)
def test_model_spec_validation(fields: dict, message: str) -> None:
    base = {"name": "x", "timm_name": "resnet18", "input_size": (3, 224, 224), "family": "cnn"}
    with pytest.raises(ConfigurationError, match=message):
        ModelSpec(**{**base, **fields})


def test_spec_kwargs_are_read_only() -> None:
    spec = ModelSpec("x", "resnet18", (3, 224, 224), "cnn", kwargs={"drop_rate": 0.1})
    with pytest.raises(TypeError):
        spec.kwargs["drop_rate"] = 0.5  # type: ignore[index]


def test_pretrained_fails_fast_with_hf_offline(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # an empty cache
    start = time.perf_counter()
    with pytest.raises(ModelDownloadError, match="model 'deit_tiny' .*deit_tiny_patch16_224.* could not be fetched"):
        create_model("deit_tiny", pretrained=True)
    assert time.perf_counter() - start < 30


def test_pretrained_fails_fast_without_network(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    if hub_reachable(2.0):
        pytest.skip("this machine can reach the Hugging Face Hub")
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    original = constants.HF_HUB_OFFLINE
    start = time.perf_counter()
    with pytest.raises(ModelDownloadError, match="'resnet18'.*unreachable"):
        create_model("resnet18", pretrained=True)
    assert time.perf_counter() - start < 30
    assert constants.HF_HUB_OFFLINE == original  # the temporary offline switch was undone


def test_hub_offline_mode_nests_and_restores() -> None:
    from huggingface_hub import constants

    original = constants.HF_HUB_OFFLINE
    with hub_offline_mode():
        with hub_offline_mode():
            assert constants.HF_HUB_OFFLINE is True
        assert constants.HF_HUB_OFFLINE is True
    assert constants.HF_HUB_OFFLINE == original
