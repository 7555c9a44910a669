"""The timm families people prune: each one either lands on its MACs target and still runs, or is
refused with a PruningError naming its layers before anything is pruned (docs/architectures.md).

Random init and small inputs: shapes and MACs only. The quick cases take one small model per
family; the slow matrix (``make test-slow``) takes more variants at 30/50/70 % and every ranking
mode. Each case says whether its model prunes or raises, so a regression either way fails.
"""

from __future__ import annotations

import copy
import itertools

import pytest
import timm
import torch

import multi_agent_pruning.core.planner as planner_module
from multi_agent_pruning.core import Strategy, apply_strategy, count_macs_params, profile_model
from multi_agent_pruning.core.engine import check_prunable
from multi_agent_pruning.core.graph import graph_options
from multi_agent_pruning.exceptions import PruningError

TOL = 0.005
NUM_CLASSES = 10
SMALL_SWIN = dict(img_size=64, window_size=4, embed_dim=48, depths=(1, 1, 2, 1), num_heads=(2, 4, 8, 16))

#: family -> (timm name, create_model kwargs, input pixels) of the quick case.
PRUNES = {
    "vit": ("deit_tiny_patch16_224", dict(img_size=64), 64),
    "resnet": ("resnet18", {}, 64),
    "convnext": ("convnext_atto", {}, 64),
    "regnet": ("regnety_002", {}, 64),
    "mobilenet": ("mobilenetv3_small_050", {}, 64),
    "efficientnet": ("efficientnet_b0", {}, 64),
    "swin": ("swin_tiny_patch4_window7_224", SMALL_SWIN, 64),
}
#: model -> (create_model kwargs, input pixels, words the PruningError must contain).
RAISES = {
    "swinv2_tiny_window8_256": (SMALL_SWIN, 64, ["layers.0.blocks.0.attn", "WindowAttention", "F.linear",
                                                 "layers.1.downsample", "PatchMerging"]),
    "swinv2_cr_tiny_224": (SMALL_SWIN, 64, ["stages.0.blocks.0.attn", "WindowMultiHeadAttention", "logit_scale"]),
    "beit_base_patch16_224": (dict(img_size=64, embed_dim=96, depth=2, num_heads=3), 64,
                              ["blocks.0.attn", "blocks.1.attn", "F.linear"]),
}

_models: dict[tuple, torch.nn.Module] = {}


def dense(name: str, **kwargs) -> torch.nn.Module:
    key = (name, tuple(sorted(kwargs.items())))
    if key not in _models:
        torch.manual_seed(0)
        _models[key] = timm.create_model(name, num_classes=NUM_CLASSES, **kwargs).eval()
    return _models[key]


def batches(px: int) -> tuple[torch.Tensor, list]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, px, px, generator=g)
    return x, [(torch.randn(2, 3, px, px, generator=g), torch.randint(0, NUM_CLASSES, (2,), generator=g))]


def assert_on_target(model, strategy: Strategy, px: int) -> None:
    x, calibration = batches(px)
    result = apply_strategy(model, strategy, x, calibration)
    assert abs(result.error) <= TOL, f"{100 * result.error:.3f}% from the target"
    macs, params = count_macs_params(result.model, x)  # counted again, not taken from the result
    assert macs == pytest.approx(result.macs) and params == result.params
    assert abs(macs / (result.base_macs * (1 - strategy.target_reduction)) - 1) <= TOL
    with torch.no_grad():
        out = result.model(x)
    assert out.shape == (1, NUM_CLASSES) and torch.isfinite(out).all()
    assert count_macs_params(model, x)[0] == pytest.approx(result.base_macs)  # the dense model is untouched


def assert_refused(model, px: int, words: list[str]) -> None:
    x, calibration = batches(px)
    for attempt in (lambda: check_prunable(model, x), lambda: apply_strategy(model, Strategy(), x, calibration)):
        with pytest.raises(PruningError) as caught:
            attempt()
        for word in words:
            assert word in str(caught.value)


@pytest.mark.parametrize("family", PRUNES)
def test_each_family_prunes_to_a_50_percent_macs_target(family):
    name, kwargs, px = PRUNES[family]
    model = dense(name, **kwargs)
    check_prunable(model, batches(px)[0])
    assert_on_target(model, Strategy(target_reduction=0.5), px)


@pytest.mark.parametrize("name", RAISES)
def test_unsupported_models_are_refused_with_the_layers_and_why(name):
    kwargs, px, words = RAISES[name]
    assert_refused(dense(name, **kwargs), px, words)


def test_a_search_is_refused_at_profiling_before_any_trial():
    kwargs, px, words = RAISES["swinv2_tiny_window8_256"]
    with pytest.raises(PruningError, match="layers.0.blocks.0.attn"):
        profile_model(dense("swinv2_tiny_window8_256", **kwargs), batches(px)[0])


def test_a_layer_whose_pruned_shapes_disagree_is_named_not_a_raw_runtime_error(monkeypatch):
    """Swin's PatchMerging without its pruner (the engine before it had one): torch-pruning maps
    channel c to feature c of the 4 x dim merged features, and the model stops running."""
    monkeypatch.setattr(planner_module, "graph_options",
                        lambda model: {**graph_options(model), "customized_pruners": {}})
    model = dense(PRUNES["swin"][0], **SMALL_SWIN)
    x, calibration = batches(64)
    with pytest.raises(PruningError) as caught:
        check_prunable(model, x)
    message = str(caught.value)
    assert "layer 'layers.1.downsample.norm' (LayerNorm) fails with RuntimeError" in message
    assert "pruned with the groups of layers.0.blocks.0.mlp.fc2" in message
    with pytest.raises(PruningError, match=r"layers\.\d\.downsample\.norm"):
        apply_strategy(model, Strategy(importance="l2"), x, calibration)


def test_swin_keeps_the_position_bias_of_the_heads_it_keeps():
    model = copy.deepcopy(dense(PRUNES["swin"][0], **SMALL_SWIN))
    with torch.no_grad():  # timm starts biases at 0: make each head's query bias tell it apart
        for attn in (m for m in model.modules() if type(m).__name__ == "WindowAttention"):
            attn.qkv.bias.copy_(torch.randn(attn.qkv.out_features, generator=torch.Generator().manual_seed(1)))
    strategy = Strategy(importance="l2", prune_num_heads=True, head_pruning_ratio=0.5, prune_head_dims=False,
                        target_reduction=0.3)
    x, _ = batches(64)
    result = apply_strategy(model, strategy, x)
    assert abs(result.error) <= TOL
    dense_attn = {n: m for n, m in model.named_modules() if type(m).__name__ == "WindowAttention"}
    removed = 0
    for name, attn in ((n, m) for n, m in result.model.named_modules() if type(m).__name__ == "WindowAttention"):
        before = dense_attn[name]
        head_dim = before.qkv.out_features // (3 * before.num_heads)
        assert attn.qkv.out_features == 3 * attn.num_heads * head_dim  # whole heads only
        assert attn.relative_position_bias_table.shape == (before.relative_position_bias_table.shape[0],
                                                           attn.num_heads)
        # Each kept head is an original head: its query bias and its bias-table column come from it.
        for head in range(attn.num_heads):
            q_bias = attn.qkv.bias[head * head_dim:(head + 1) * head_dim]
            matches = [h for h in range(before.num_heads)
                       if torch.equal(before.qkv.bias[h * head_dim:(h + 1) * head_dim], q_bias)]
            assert len(matches) == 1
            assert torch.equal(attn.relative_position_bias_table[:, head],
                               before.relative_position_bias_table[:, matches[0]])
        removed += before.num_heads - attn.num_heads
    assert removed > 0


@pytest.mark.parametrize("family", ["vit", "regnet"])
def test_iterative_pruning_with_gradients_between_steps(family):
    """Between steps the pruned model runs again (taylor): attention heads and grouped convolutions
    must be consistent after every step, not only after the last."""
    name, kwargs, px = PRUNES[family]
    assert_on_target(dense(name, **kwargs), Strategy(iterative_steps=2, target_reduction=0.5), px)


# -- the full matrix (slow) ------------------------------------------------------------------------

SLOW_PRUNES = [
    ("deit_tiny_patch16_224", dict(img_size=64), 64),
    ("deit_small_patch16_224", dict(img_size=64), 64),
    ("deit_tiny_distilled_patch16_224", dict(img_size=64), 64),
    ("resnet18", {}, 64),
    ("resnet50", {}, 64),
    ("resnext26ts", {}, 64),
    ("convnext_atto", {}, 64),
    ("convnext_tiny", {}, 64),
    ("regnetx_002", {}, 64),
    ("regnety_002", {}, 64),
    ("mobilenetv2_050", {}, 64),
    ("mobilenetv3_small_050", {}, 64),
    ("mobilenetv3_large_075", {}, 64),
    ("efficientnet_b0", {}, 64),
    ("tf_efficientnet_lite0", {}, 64),
    ("swin_tiny_patch4_window7_224", SMALL_SWIN, 64),
    ("swin_tiny_patch4_window7_224", {}, 224),
    ("swin_s3_tiny_224", dict(img_size=64), 64),
]
MODES = {"isomorphic": dict(global_pruning=True, isomorphic=True), "global": dict(global_pruning=True, isomorphic=False),
         "local": dict(global_pruning=False, isomorphic=False)}
#: Cases whose target falls between two prunable steps: the engine returns the closest model under
#: the budget and warns. Strict: a case that starts hitting its target fails until removed here.
GRANULARITY_MISSES = {
    ("regnetx_002", "global", 0.7): "one more channel offset of a grouped convolution (one channel in each of its "
                                    "groups) moves the MACs by 0.94 %: +0.43 % or -0.51 % of the target",
}


@pytest.mark.slow
@pytest.mark.parametrize("name,kwargs,px", SLOW_PRUNES, ids=[f"{n}-{px}" for n, _, px in SLOW_PRUNES])
@pytest.mark.parametrize("mode,reduction", list(itertools.product(MODES, [0.3, 0.5, 0.7])))
def test_matrix_prunes_to_target(request, name, kwargs, px, mode, reduction):
    if (name, mode, reduction) in GRANULARITY_MISSES:
        request.applymarker(pytest.mark.xfail(strict=True, reason=GRANULARITY_MISSES[name, mode, reduction]))
    assert_on_target(dense(name, **kwargs), Strategy(target_reduction=reduction, **MODES[mode]), px)


@pytest.mark.slow
@pytest.mark.parametrize("name,kwargs,px", SLOW_PRUNES, ids=[f"{n}-{px}" for n, _, px in SLOW_PRUNES])
def test_matrix_prunes_heads_and_passes_the_preflight(name, kwargs, px):
    model = dense(name, **kwargs)
    check_prunable(model, batches(px)[0])
    assert_on_target(model, Strategy(importance="l2", prune_num_heads=True, head_pruning_ratio=0.25), px)
