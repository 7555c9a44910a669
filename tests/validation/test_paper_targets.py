"""The paper targets as data: values, sources, verification flags, lookups."""

from __future__ import annotations

import json

import pytest

from multi_agent_pruning.exceptions import UnknownNameError
from multi_agent_pruning.models import get_model_spec
from multi_agent_pruning.validation import (PAPER_TARGETS, get_paper_target, list_paper_targets,
                                            targets_for)

ISOMORPHIC = {  # name: (MACs, params, top-1)
    "isomorphic_deit_4.2g": (4.16e9, 20.69e6, 0.8241),
    "isomorphic_deit_2.6g": (2.61e9, 13.07e6, 0.8113),
    "isomorphic_deit_1.2g": (1.21e9, 5.74e6, 0.7750),
    "isomorphic_deit_0.6g": (0.62e9, 3.08e6, 0.7260),
    "isomorphic_convnext_8.5g": (8.48e9, 47.36e6, 0.8317),
    "isomorphic_convnext_4.2g": (4.19e9, 25.32e6, 0.8219),
}


def test_names_in_table_order():
    assert list_paper_targets() == [*ISOMORPHIC, "depgraph_resnet56_cifar10"]


@pytest.mark.parametrize("name", list(ISOMORPHIC))
def test_isomorphic_values_and_source(name):
    target = get_paper_target(name)
    assert (target.macs, target.params, target.top1) == ISOMORPHIC[name]
    assert target.dataset == "imagenet" and target.speedup is None
    assert (target.source.venue, target.source.year, target.source.arxiv_id) == ("ECCV", 2024, "2407.04616")
    assert target.source.title == "Isomorphic Pruning for Vision Models"


def test_deit_targets_come_from_deit_base():
    for name in ("isomorphic_deit_4.2g", "isomorphic_deit_2.6g", "isomorphic_deit_1.2g", "isomorphic_deit_0.6g"):
        target = get_paper_target(name)
        assert (target.base_model, target.base_macs, target.base_params, target.base_top1) == (
            "deit_base", 17.58e9, 86.6e6, 0.818)
        assert target.models == ("deit_base", "deit_base_distilled")


def test_depgraph_resnet56():
    target = get_paper_target("depgraph_resnet56_cifar10")
    assert (target.base_model, target.dataset) == ("resnet56", "cifar10")
    assert (target.base_top1, target.top1, target.speedup, target.macs) == (0.9353, 0.9377, 2.13, None)
    assert (target.source.venue, target.source.year, target.source.arxiv_id) == ("CVPR", 2023, "2301.12900")


def test_unverified_targets_say_why():
    unverified = {t.name for t in PAPER_TARGETS if not t.verified}
    assert unverified == {"isomorphic_deit_0.6g", "isomorphic_convnext_4.2g", "depgraph_resnet56_cifar10"}
    assert all(len(t.note) > 40 for t in PAPER_TARGETS)
    assert "deit_tiny_distilled" in get_paper_target("isomorphic_deit_0.6g").note
    assert "ConvNeXt-Small" in get_paper_target("isomorphic_convnext_4.2g").note


def test_base_models_are_registered_except_resnet56():
    for target in PAPER_TARGETS:
        for model in target.models:
            if model == "resnet56":
                with pytest.raises(UnknownNameError):
                    get_model_spec(model)
            else:
                assert get_model_spec(model).name == model


def test_lookup_errors_and_filters():
    with pytest.raises(UnknownNameError, match="isomorphic_deit_4.2g"):
        get_paper_target("isomorphic_deit_4.2")
    assert [t.name for t in targets_for("deit_base_distilled", "imagenet")] == list(ISOMORPHIC)[:4]
    assert [t.name for t in targets_for("convnext_small", "imagenet")] == ["isomorphic_convnext_4.2g"]
    assert targets_for("deit_base", "cifar10") == []


def test_to_dict_is_json():
    data = json.loads(json.dumps(get_paper_target("isomorphic_convnext_4.2g").to_dict()))
    assert data["model_aliases"] == ["convnext_small"]
    assert data["source"]["arxiv_id"] == "2407.04616"
    assert data["verified"] is False
