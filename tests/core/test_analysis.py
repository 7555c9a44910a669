"""DependencyAnalyzer and IsomorphicAnalyzer read the traced graph, not layer names."""

from __future__ import annotations

import pytest
import timm
import torch

from multi_agent_pruning.core import DependencyAnalyzer, IsomorphicAnalyzer, count_macs_params
from multi_agent_pruning.exceptions import ConfigurationError, UnknownNameError
from multi_agent_pruning.models import CompactResNet, create_model


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", img_size=64, num_classes=10).eval()


def test_dependency_analyzer_on_a_vit(vit):
    analyzer = DependencyAnalyzer(vit, torch.randn(1, 3, 64, 64))
    assert analyzer.get_coupled_layers("blocks.0.mlp.fc1") == ["blocks.0.mlp.fc2"]
    assert analyzer.get_coupled_layers("head") == []  # the classifier is never pruned
    residual = analyzer.get_coupled_layers("patch_embed.proj")
    assert "blocks.11.mlp.fc2" in residual and "blocks.0.attn.qkv" in residual and "head" in residual
    constraints = analyzer.get_coupling_constraints()
    assert len(constraints) == 25  # residual stream + 12 attention + 12 MLP groups
    attention = [c for c in constraints if c["kind"] == "attention"]
    assert len(attention) == 12 and all(c["num_heads"] == 3 for c in attention)
    assert "attention heads" in attention[0]["description"]
    graph = analyzer.get_dependency_graph()
    assert graph["blocks.3.mlp.fc1"]["out_channels"] == 768 and graph["blocks.3.mlp.fc1"]["type"] == "Linear"
    assert "blocks.3.mlp.fc2" in graph["blocks.3.mlp.fc1"]["out_coupled"]
    with pytest.raises(UnknownNameError, match="blocks.0.mlp.fc1"):
        analyzer.get_coupled_layers("blocks.0.mlp.fc3")


def test_isomorphic_groups_shares_and_ratios(vit):
    analyzer = IsomorphicAnalyzer(vit, torch.randn(1, 3, 64, 64))
    groups = analyzer.create_isomorphic_groups(0.4, group_ratios={"mlp": 0.6})
    by_kind = {g.kind: g for g in groups.values()}
    assert set(by_kind) == {"embed", "attention", "mlp"}
    assert [len(by_kind[k].members) for k in ("embed", "attention", "mlp")] == [1, 12, 12]
    assert by_kind["mlp"].channels == 12 * 768 and by_kind["embed"].channels == 192
    assert by_kind["mlp"].ratio == pytest.approx(0.6) and by_kind["attention"].ratio == pytest.approx(0.4)
    assert by_kind["embed"].ratio == pytest.approx(0.4)
    assert sum(g.macs_share for g in groups.values()) == pytest.approx(1.0)
    assert sum(g.params_share for g in groups.values()) == pytest.approx(1.0)
    macs, params = count_macs_params(vit, torch.randn(1, 3, 64, 64))
    prunable = sum(g.macs for g in groups.values())
    assert 0.99 * macs <= prunable <= macs  # all but parameter-free ops
    assert sum(g.params for g in groups.values()) == pytest.approx(params)
    with pytest.raises(UnknownNameError):
        analyzer.create_isomorphic_groups(0.4, group_ratios={"conv": 0.5})
    with pytest.raises(ConfigurationError):
        analyzer.create_isomorphic_groups(1.2)


def test_group_ratios_are_ratios_by_kind_or_by_group_name(vit):
    # The API reference: group_ratios are "custom ratios for different group types".
    analyzer = IsomorphicAnalyzer(vit, torch.randn(1, 3, 64, 64))
    names = {g.kind: name for name, g in analyzer.create_isomorphic_groups(0.5).items()}
    groups = analyzer.create_isomorphic_groups(0.5, group_ratios={"mlp": 0.3, "attention": 0.0,
                                                                  names["embed"]: 0.1})
    assert {g.kind: g.ratio for g in groups.values()} == {"mlp": 0.3, "attention": 0.0, "embed": 0.1}
    by_name = analyzer.create_isomorphic_groups(0.5, group_ratios={"mlp": 0.3, names["mlp"]: 0.2})
    assert by_name[names["mlp"]].ratio == 0.2  # a group's own ratio wins over its kind's
    for bad in (1.0, 1.5, -0.1, True, "0.3", float("nan")):
        with pytest.raises(ConfigurationError, match=r"group_ratios\['mlp'\] must be a pruning ratio in \[0, 1\)"):
            analyzer.create_isomorphic_groups(0.5, group_ratios={"mlp": bad})
    with pytest.raises(UnknownNameError, match="Unknown group 'mpl'. Did you mean: mlp"):
        analyzer.create_isomorphic_groups(0.5, group_ratios={"mpl": 0.3})


def test_analyzers_infer_the_input_of_timm_models(vit):
    # vit was built with img_size=64, which timm's pretrained_cfg (3, 224, 224) does not show
    analyzer = DependencyAnalyzer(vit)
    assert tuple(analyzer.example_inputs.shape) == (1, 3, 64, 64)
    assert analyzer.get_coupled_layers("blocks.0.mlp.fc1") == ["blocks.0.mlp.fc2"]


@pytest.mark.parametrize(("name", "kwargs", "shape", "kinds"), [
    ("compact_cnn", {}, (1, 1, 16, 16), {"stage1_residual", "stage1_hidden", "stage2_hidden", "stage3_residual"}),
    ("compact_cnn", {"in_chans": 3, "input_size": 32}, (1, 3, 32, 32), {"stage1_residual", "stage3_residual"}),
    ("deit_micro", {}, (1, 1, 16, 16), {"embed", "attention", "mlp"}),
    ("convnext_micro", {}, (1, 1, 16, 16), {"stage1_hidden", "stage4_residual"}),
])
def test_analyzers_infer_the_input_of_registry_models(name, kwargs, shape, kinds):
    torch.manual_seed(0)
    model = create_model(name, **kwargs).eval()
    dependency = DependencyAnalyzer(model)
    assert tuple(dependency.example_inputs.shape) == shape
    assert dependency.get_coupling_constraints()
    isomorphic = IsomorphicAnalyzer(model)
    assert tuple(isomorphic.example_inputs.shape) == shape
    groups = isomorphic.create_isomorphic_groups(target_ratio=0.5)
    assert kinds <= {g.kind for g in groups.values()}
    assert all(g.ratio == 0.5 for g in groups.values())
    macs, _ = count_macs_params(model, torch.randn(shape))
    assert 0.9 * macs <= sum(g.macs for g in groups.values()) <= macs


def test_analyzers_without_a_known_input_say_what_to_pass():
    with pytest.raises(ConfigurationError, match="cannot tell the input size of CompactResNet.*example_inputs"):
        DependencyAnalyzer(CompactResNet())


def test_cnn_stages_from_resolution():
    model = timm.create_model("resnet18", num_classes=10).eval()
    groups = IsomorphicAnalyzer(model, torch.randn(1, 3, 64, 64)).create_isomorphic_groups(0.5)
    kinds = {g.kind for g in groups.values()}
    assert {"stage2_hidden", "stage5_hidden", "stage5_residual"} <= kinds
    assert not any(k in kinds for k in ("attention", "mlp", "embed"))
