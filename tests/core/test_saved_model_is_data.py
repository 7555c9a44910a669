"""A saved pruned model is data: an edited model.json can neither run code nor change the network.

Each attack edits a real saved folder (registry models built by the real ``create_model``, pruned
by torch-pruning) the way an attacker could, recomputing every hash the folder holds, and checks
that ``load_pruned_model`` refuses it with a CheckpointError naming what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from multi_agent_pruning.core.engine import apply_strategy
from multi_agent_pruning.core.serialization import FORMAT_VERSION, load_pruned_model, save_pruned_model
from multi_agent_pruning.core.strategy import Strategy
from multi_agent_pruning.exceptions import CheckpointError, ConfigurationError
from multi_agent_pruning.models import create_model

# What the search saves with every best model (orchestrator.dense.model_kwargs_for).
KWARGS = {"num_classes": 10, "in_chans": 1, "input_size": 16}
STRATEGY = Strategy(importance="l2", target_reduction=0.5)


class MarkerPayload:
    """Unpickling this object writes ``marker``: proof that a file was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('unpickled')",)


def _pruned(name: str) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    dense = create_model(name, **KWARGS).eval()
    torch.manual_seed(0)
    pruned = apply_strategy(create_model(name, **KWARGS).eval(), STRATEGY, torch.randn(1, 1, 16, 16)).model.eval()
    return dense, pruned


@pytest.fixture(scope="module")
def cnn() -> tuple[nn.Module, nn.Module]:
    return _pruned("compact_cnn")


@pytest.fixture(scope="module")
def vit() -> tuple[nn.Module, nn.Module]:
    return _pruned("deit_micro")


@pytest.fixture(scope="module")
def convnext() -> tuple[nn.Module, nn.Module]:
    return _pruned("convnext_micro")


def _save(model: nn.Module, folder: Path, name: str) -> Path:
    return save_pruned_model(model, folder, base_model=name, model_kwargs=KWARGS, metadata={"top1": 0.5})


def _canonical_sha256(document: dict[str, Any]) -> str:
    """The document hash as the docs define it, recomputed independently as an attacker would."""
    body = {k: v for k, v in document.items() if k != "document_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _edit(folder: Path, change: Callable[[dict[str, Any]], None], *, rehash: bool = True) -> None:
    """Applies ``change`` to model.json and, with ``rehash``, fixes up every hash in the folder."""
    path = folder / "model.json"
    document = json.loads(path.read_text())
    change(document)
    if rehash:
        document["weights"]["sha256"] = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
        document["document_sha256"] = _canonical_sha256(document)
    path.write_text(json.dumps(document, indent=1))


def _set(module: str, attribute: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        document["structure"][module]["attributes"][attribute] = value
    return change


def _set_kwargs(**kwargs: Any) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        document["model_kwargs"].update(kwargs)
    return change


def _pickle_trap(tmp_path: Path) -> tuple[Path, Path]:
    """A checkpoint that writes ``marker`` when unpickled; checked to be live on a decoy marker."""
    decoy = tmp_path / "decoy-marker"
    pickle.loads(pickle.dumps(MarkerPayload(decoy)))
    assert decoy.read_text() == "unpickled"  # the trap works, so its absence below means something
    marker, trap = tmp_path / "marker", tmp_path / "evil.pt"
    torch.save(MarkerPayload(marker), trap)
    return trap, marker


@pytest.mark.parametrize("attack", ["checkpoint", "pretrained", "pretrained_cfg_overlay", "checkpoint_path",
                                    "hf_hub_base_model", "local_dir_base_model"])
def test_model_kwargs_that_load_files_are_refused_and_nothing_is_unpickled(attack, cnn, tmp_path):
    _, pruned = cnn
    folder = _save(pruned, tmp_path / "best_model", "compact_cnn")
    trap, marker = _pickle_trap(tmp_path)
    edits = {
        "checkpoint": (_set_kwargs(checkpoint=str(trap), trust_checkpoint=True), "model_kwargs.checkpoint"),
        "pretrained": (_set_kwargs(pretrained=True), "model_kwargs.pretrained"),
        "pretrained_cfg_overlay": (_set_kwargs(pretrained_cfg_overlay={"file": str(trap)}),
                                   "model_kwargs.pretrained_cfg_overlay"),
        "checkpoint_path": (_set_kwargs(checkpoint_path=str(trap)), "model_kwargs.checkpoint_path"),
        "hf_hub_base_model": (lambda d: d.update(base_model="hf-hub:attacker/model"), "base_model"),
        "local_dir_base_model": (lambda d: d.update(base_model=f"local-dir:{tmp_path}"), "base_model"),
    }
    change, named = edits[attack]
    _edit(folder, change)
    refusal = rf"{named}: (not an allowed model keyword argument|String should match pattern)"
    with pytest.raises(CheckpointError, match=refusal) as error:
        load_pruned_model(folder)
    assert str(folder / "model.json") in str(error.value)
    assert not marker.exists()


def test_checkpoint_and_trust_checkpoint_are_both_named(cnn, tmp_path):
    _, pruned = cnn
    folder = _save(pruned, tmp_path, "compact_cnn")
    trap, marker = _pickle_trap(tmp_path)
    _edit(folder, _set_kwargs(checkpoint=str(trap), trust_checkpoint=True))
    with pytest.raises(CheckpointError) as error:
        load_pruned_model(folder)
    message = str(error.value)
    assert "model_kwargs.checkpoint: not an allowed model keyword argument" in message
    assert "model_kwargs.trust_checkpoint: not an allowed model keyword argument" in message
    assert "allowed model keyword arguments: num_classes, in_chans, input_size, img_size" in message
    assert not marker.exists()


@pytest.mark.parametrize("module, attribute, value, expected", [
    ("stem.0", "padding", [2, 2], r"module 'stem.0' attribute 'padding' is \[2, 2\]; expected \[1, 1\]"),
    ("stem.0", "dilation", [3, 3], r"module 'stem.0' attribute 'dilation' is \[3, 3\]; expected \[1, 1\]"),
    ("stem.0", "stride", [4, 4], r"module 'stem.0' attribute 'stride' is \[4, 4\]; expected \[1, 1\]"),
    ("stem.0", "kernel_size", 1, r"module 'stem.0' attribute 'kernel_size' is 1; expected \[3, 3\]"),
    ("stem.1", "eps", 1.0, r"module 'stem.1' attribute 'eps' is 1.0; expected 1e-05"),
    ("stem.0", "groups", 2, r"module 'stem.0' attribute 'groups' is 2; expected 1"),
    ("stem.0", "forward", "print", r"module 'stem.0' attribute 'forward': not an allowed shape attribute"),
    ("stem.0", "weight_file", "/etc/passwd", r"module 'stem.0' attribute 'weight_file': not an allowed shape"),
    ("stem.0", "out_channels", 10**9,
     r"module 'stem.0' attribute 'out_channels' is 1000000000; expected at most 32 \(the dense model's value"),
    ("stem.0", "out_channels", True, r"module 'stem.0' attribute 'out_channels': Input should be a valid integer"),
    ("stem.0", "out_channels", "16", r"module 'stem.0' attribute 'out_channels': Input should be a valid integer"),
    ("stem.0", "out_channels", 0, r"module 'stem.0' attribute 'out_channels' is 0; expected at least 1"),
    ("head", "out_features", 5, r"module 'head' attribute 'out_features' is 5; expected 10"),
    ("pool", "in_features", 7, r"module 'pool' attribute 'in_features': the rebuilt AdaptiveAvgPool2d has no"),
])
def test_edited_cnn_attributes_are_refused(module, attribute, value, expected, cnn, tmp_path):
    _, pruned = cnn
    folder = _save(pruned, tmp_path, "compact_cnn")
    _edit(folder, _set(module, attribute, value))
    with pytest.raises(CheckpointError, match=expected):
        load_pruned_model(folder)


def test_dimension_that_disagrees_with_its_weights_is_refused(cnn, tmp_path):
    _, pruned = cnn
    width = pruned.stem[0].out_channels
    folder = _save(pruned, tmp_path, "compact_cnn")
    _edit(folder, _set("stem.0", "out_channels", width - 1))  # still under the dense 32
    with pytest.raises(CheckpointError,
                       match=rf"module 'stem.0' attribute 'out_channels' is {width - 1}; expected {width} "
                             rf"\(dimension 0 of tensor 'stem.0.weight'"):
        load_pruned_model(folder)


def test_class_name_must_match_the_rebuilt_module(cnn, tmp_path):
    _, pruned = cnn
    folder = _save(pruned, tmp_path, "compact_cnn")

    def change(document: dict[str, Any]) -> None:
        document["structure"]["head"]["class"] = "os.system"

    _edit(folder, change)
    with pytest.raises(CheckpointError, match=r"Module 'head' is a torch.nn.modules.linear.Linear in the rebuilt "
                                              r"model but was saved as a os.system"):
        load_pruned_model(folder)


@pytest.mark.parametrize("change, expected", [
    (_set("blocks.0.attn", "num_heads", 2),
     r"module 'blocks.0.attn' attributes num_heads \* head_dim = 2 \* \d+ = \d+; expected attn_dim = \d+"),
    (_set("blocks.0.attn", "head_dim", 4),
     r"module 'blocks.0.attn' attributes num_heads \* head_dim = 3 \* 4 = 12; expected attn_dim = \d+"),
    (_set("blocks.1.attn", "scale", 1.0), r"module 'blocks.1.attn' attribute 'scale' is 1.0; expected 0.17"),
    (_set("blocks.0.attn", "num_heads", 300),
     r"module 'blocks.0.attn' attribute 'num_heads' is 300; expected at most 3"),
    (_set("blocks.0.norm1", "normalized_shape", [96, 2]),
     r"module 'blocks.0.norm1' attribute 'normalized_shape' is \[96, 2\]; expected a list of 1"),
    (_set("", "num_prefix_tokens", 0), r"module '' attribute 'num_prefix_tokens' is 0; expected 1"),
])
def test_edited_vit_attributes_are_refused(change, expected, vit, tmp_path):
    _, pruned = vit
    folder = _save(pruned, tmp_path, "deit_micro")
    _edit(folder, change)
    with pytest.raises(CheckpointError, match=expected):
        load_pruned_model(folder)


def test_heads_and_head_dim_must_agree_with_qkv(vit, tmp_path):
    _, pruned = vit
    attn = pruned.blocks[0].attn
    heads, head_dim = attn.num_heads, attn.head_dim
    assert head_dim % 2 == 0  # so that doubling the heads keeps num_heads * head_dim
    folder = _save(pruned, tmp_path, "deit_micro")

    def change(document: dict[str, Any]) -> None:
        attributes = document["structure"]["blocks.0.attn"]["attributes"]
        attributes["num_heads"], attributes["head_dim"] = heads * 2, head_dim // 2

    _edit(folder, change)
    # 2 * 3 heads is more than the dense model's 3: a pruned model only shrinks.
    with pytest.raises(CheckpointError, match=r"module 'blocks.0.attn' attribute 'num_heads' is 6; expected at most 3"):
        load_pruned_model(folder)


def test_depthwise_groups_may_shrink_but_must_fit_the_weights(convnext, tmp_path):
    dense, pruned = convnext
    conv = pruned.stages[1].blocks[0].conv_dw
    assert conv.groups == conv.in_channels < dense.stages[1].blocks[0].conv_dw.groups  # pruning changed groups
    folder = _save(pruned, tmp_path, "convnext_micro")
    loaded, _ = load_pruned_model(folder)
    assert loaded.stages[1].blocks[0].conv_dw.groups == conv.groups
    _edit(folder, _set("stages.1.blocks.0.conv_dw", "groups", 1))
    with pytest.raises(CheckpointError,
                       match=rf"module 'stages.1.blocks.0.conv_dw' attribute 'in_channels' is {conv.in_channels}; "
                             rf"expected 1 \(dimension 1 of tensor 'stages.1.blocks.0.conv_dw.weight', "
                             rf"shape \({conv.out_channels}, 1, 7, 7\)"):
        load_pruned_model(folder)
    half = conv.groups // 2
    _edit(folder, _set("stages.1.blocks.0.conv_dw", "groups", half))  # divides the channels, not the weights
    with pytest.raises(CheckpointError, match=rf"attribute 'in_channels' is {conv.in_channels}; expected {half} "
                                              rf"\(dimension 1 of tensor '[\w.]+conv_dw.weight' times groups {half}"):
        load_pruned_model(folder)
    _edit(folder, _set("stages.1.blocks.0.conv_dw", "groups", 5))
    with pytest.raises(CheckpointError, match=rf"attribute 'groups' is 5; expected a divisor of in_channels "
                                              rf"{conv.in_channels} and out_channels {conv.out_channels}"):
        load_pruned_model(folder)


def test_tensor_larger_than_the_dense_one_is_refused(cnn, tmp_path):
    dense, pruned = cnn
    folder = _save(pruned, tmp_path, "compact_cnn")
    state = load_file(str(folder / "model.safetensors"))
    rows, dense_in = dense.head.weight.shape
    state["head.weight"] = torch.zeros(rows, dense_in * 4)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    _edit(folder, _set("head", "in_features", dense_in * 4))  # consistent with the new weights
    with pytest.raises(CheckpointError) as error:
        load_pruned_model(folder)
    message = str(error.value)
    assert f"module 'head' attribute 'in_features' is {dense_in * 4}; expected at most {dense_in}" in message
    assert f"tensor 'head.weight' has shape ({rows}, {dense_in * 4}); expected at most ({rows}, {dense_in})" in message


def test_tensor_larger_than_dense_without_an_attribute_is_refused(vit, tmp_path):
    dense, pruned = vit
    folder = _save(pruned, tmp_path, "deit_micro")
    state = load_file(str(folder / "model.safetensors"))
    _, tokens, width = dense.pos_embed.shape
    state["pos_embed"] = torch.zeros(1, tokens * 100, state["pos_embed"].shape[-1])
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    _edit(folder, lambda d: d["weights"].update(tensors=len(state)))
    with pytest.raises(CheckpointError, match=rf"tensor 'pos_embed' has shape \(1, {tokens * 100}, \d+\); "
                                              rf"expected at most \(1, {tokens}, {width}\)"):
        load_pruned_model(folder)


@pytest.mark.parametrize("change", [
    lambda d: d["metadata"].update(top1=0.99),
    lambda d: d["metadata"].update(note="harmless-looking"),
    lambda d: d["structure"]["stem.0"]["attributes"].update(padding=[2, 2]),
])
def test_model_json_edited_without_its_hash_is_refused(change, cnn, tmp_path):
    _, pruned = cnn
    folder = _save(pruned, tmp_path, "compact_cnn")
    _edit(folder, change, rehash=False)
    with pytest.raises(CheckpointError, match=r"model.json was modified after it was saved \(its SHA-256"):
        load_pruned_model(folder)


def test_missing_document_hash_is_refused(cnn, tmp_path):
    _, pruned = cnn
    folder = _save(pruned, tmp_path, "compact_cnn")
    _edit(folder, lambda d: d.pop("document_sha256"), rehash=False)
    with pytest.raises(CheckpointError, match=r"has no document_sha256"):
        load_pruned_model(folder)


def test_format_1_folder_loads_under_the_strict_schema(cnn, tmp_path, caplog):
    _, pruned = cnn
    folder = _save(pruned, tmp_path, "compact_cnn")

    def downgrade(document: dict[str, Any]) -> None:
        document["format_version"] = 1
        document.pop("document_sha256")

    _edit(folder, downgrade, rehash=False)
    with caplog.at_level(logging.WARNING, logger="multi_agent_pruning.core.serialization"):
        loaded, meta = load_pruned_model(folder)
    assert meta["top1"] == 0.5
    assert "format_version 1" in caplog.text and "no integrity record" in caplog.text
    assert torch.equal(loaded.head.weight, pruned.head.weight)
    trap, marker = _pickle_trap(tmp_path)
    _edit(folder, _set_kwargs(checkpoint=str(trap), trust_checkpoint=True), rehash=False)
    with pytest.raises(CheckpointError, match="model_kwargs.checkpoint: not an allowed"):
        load_pruned_model(folder)
    assert not marker.exists()


def test_oversized_model_json_is_refused_before_reading(cnn, tmp_path):
    _, pruned = cnn
    folder = _save(pruned, tmp_path, "compact_cnn")
    with open(folder / "model.json", "r+b") as stream:
        stream.truncate(65 * 1024 * 1024)  # sparse: no 65 MB written
    with pytest.raises(CheckpointError, match=r"model.json is \d+ bytes; a pruned-model description is at most"):
        load_pruned_model(folder)


@pytest.mark.parametrize("kwargs, named", [
    ({**KWARGS, "checkpoint": "/tmp/x.pt"}, "model_kwargs.checkpoint"),
    ({**KWARGS, "pretrained": True}, "model_kwargs.pretrained"),
    ({**KWARGS, "num_classes": "10"}, "model_kwargs.num_classes"),
])
def test_save_refuses_model_kwargs_it_could_not_load(kwargs, named, cnn, tmp_path):
    _, pruned = cnn
    with pytest.raises(ConfigurationError, match=rf"load_pruned_model would refuse it:\n  - {named}: "):
        save_pruned_model(pruned, tmp_path / "out", base_model="compact_cnn", model_kwargs=kwargs, metadata={})
    assert not (tmp_path / "out").exists()


def test_save_refuses_a_base_model_that_names_a_download(cnn, tmp_path):
    _, pruned = cnn
    with pytest.raises(ConfigurationError, match=r"base_model: String should match pattern"):
        save_pruned_model(pruned, tmp_path / "out", base_model="hf-hub:someone/model", model_kwargs=KWARGS,
                          metadata={})
    assert not (tmp_path / "out").exists()


@pytest.fixture
def no_unpickling(monkeypatch):
    """Makes every unpickling entry point fail loudly for the duration of a test."""
    def refuse(*args, **kwargs):
        raise AssertionError("load_pruned_model tried to unpickle")

    for target, name in ((torch, "load"), (torch.serialization, "load"), (pickle, "load"), (pickle, "loads"),
                         (pickle, "Unpickler")):
        monkeypatch.setattr(target, name, refuse)


@pytest.mark.parametrize("fixture, name", [("cnn", "compact_cnn"), ("vit", "deit_micro"),
                                           ("convnext", "convnext_micro")])
def test_round_trip_with_the_default_builder_and_no_unpickling(fixture, name, request, tmp_path):
    dense, pruned = request.getfixturevalue(fixture)
    folder = _save(pruned, tmp_path, name)
    document = json.loads((folder / "model.json").read_text())
    assert document["format_version"] == FORMAT_VERSION == 2
    assert document["document_sha256"] == _canonical_sha256(document)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in dense.parameters())
    request.getfixturevalue("no_unpickling")
    loaded, meta = load_pruned_model(folder)
    x = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded(x), pruned(x))
    assert meta["top1"] == 0.5
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in pruned.parameters())
