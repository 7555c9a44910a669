"""ModelDownloader against a real (empty or pre-filled) Hugging Face cache, offline."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants

from multi_agent_pruning.exceptions import ConfigurationError
from multi_agent_pruning.models import create_model
from multi_agent_pruning.models.pretrained import hub_reachable
from multi_agent_pruning.tools import ModelDownloader
from support.hub_cache import fill_hub_cache


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    return tmp_path


def test_offline_batch_reports_each_failure(empty_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    names = ["deit_tiny", "resnet18", "deit_smal", "compact_cnn", "resnet18"]
    results = ModelDownloader(num_workers=2).download_models(names)
    assert time.perf_counter() - start < 30
    assert list(results) == ["deit_tiny", "resnet18", "deit_smal", "compact_cnn"]
    assert {r["status"] for r in results.values()} == {"failed"}
    expected = "model 'deit_tiny' (timm model 'deit_tiny_patch16_224') could not be fetched"
    assert expected in results["deit_tiny"]["error"]
    assert "not in the local cache" in results["resnet18"]["error"]
    assert results["deit_smal"]["error"].startswith("Unknown model 'deit_smal'. Did you mean: deit_small")
    assert "no pretrained weights" in results["compact_cnn"]["error"]
    assert all(0 <= r["seconds"] < 30 for r in results.values())


def test_plain_offline_fails_fast(empty_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if hub_reachable(2.0):
        pytest.skip("this machine can reach the Hugging Face Hub")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    start = time.perf_counter()
    results = ModelDownloader(timeout=2.0).download_models(["mobilenetv2_100"], parallel=False)
    assert time.perf_counter() - start < 30
    assert results["mobilenetv2_100"]["status"] == "failed"
    assert "unreachable" in results["mobilenetv2_100"]["error"]


def test_cached_weights_load_without_network(empty_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = fill_hub_cache(empty_cache, "mobilenetv2_100")
    results = ModelDownloader().download_models(["mobilenetv2_100", "efficientnet_b0"])
    assert (results["mobilenetv2_100"]["status"], results["mobilenetv2_100"]["error"]) == ("ok", None)
    assert results["efficientnet_b0"]["status"] == "failed"
    loaded = create_model("mobilenetv2_100", pretrained=True, num_classes=10)
    assert loaded.classifier.out_features == 10
    assert torch.equal(loaded.conv_stem.weight, source.conv_stem.weight)
    assert torch.equal(loaded.blocks[6][0].conv_pwl.weight, source.blocks[6][0].conv_pwl.weight)


@pytest.mark.parametrize(("kwargs", "message"), [({"num_workers": 0}, "num_workers"), ({"timeout": 0}, "timeout")])
def test_invalid_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ModelDownloader(**kwargs)
