"""DependencyAnalyzer and IsomorphicAnalyzer read the traced graph, not layer names."""

from __future__ import annotations

import pytest
import timm
import torch

from multi_agent_pruning.core import DependencyAnalyzer, IsomorphicAnalyzer, count_macs_params
from multi_agent_pruning.exceptions import ConfigurationError, UnknownNameError


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
    groups = analyzer.create_isomorphic_groups(0.4, group_ratios={"mlp": 1.5})
    by_kind = {g.kind: g for g in groups.values()}
    assert set(by_kind) == {"embed", "attention", "mlp"}
    assert [len(by_kind[k].members) for k in ("embed", "attention", "mlp")] == [1, 12, 12]
    assert by_kind["mlp"].channels == 12 * 768 and by_kind["embed"].channels == 192
    assert by_kind["mlp"].ratio == pytest.approx(0.6) and by_kind["attention"].ratio == pytest.approx(0.4)
    assert sum(g.macs_share for g in groups.values()) == pytest.approx(1.0)
    assert sum(g.params_share for g in groups.values()) == pytest.approx(1.0)
    macs, params = count_macs_params(vit, torch.randn(1, 3, 64, 64))
    prunable = sum(g.macs for g in groups.values())
    assert 0.99 * macs <= prunable <= macs  # all but parameter-free ops
    assert sum(g.params for g in groups.values()) == pytest.approx(params)
    with pytest.raises(UnknownNameError):
        analyzer.create_isomorphic_groups(0.4, group_ratios={"conv": 1.0})
    with pytest.raises(ConfigurationError):
        analyzer.create_isomorphic_groups(1.2)


def test_cnn_stages_from_resolution():
    model = timm.create_model("resnet18", num_classes=10).eval()
    groups = IsomorphicAnalyzer(model, torch.randn(1, 3, 64, 64)).create_isomorphic_groups(0.5)
    kinds = {g.kind for g in groups.values()}
    assert {"stage2_hidden", "stage5_hidden", "stage5_residual"} <= kinds
    assert not any(k in kinds for k in ("attention", "mlp", "embed"))
