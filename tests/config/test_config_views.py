"""Views that resolve one setting from several sections."""

from __future__ import annotations

from pathlib import Path

from multi_agent_pruning.config import CacheSettings, load_config_dict


def test_master_agent_overrides_search() -> None:
    cfg = load_config_dict({
        "search": {"max_iterations": 4, "convergence_threshold": 0.01},
        "agents": {"master_agent": {"max_iterations": 7}},
    })
    search = cfg.effective_search()
    assert (search.max_iterations, search.convergence_threshold) == (7, 0.01)


def test_pruning_agent_overrides_global_pruning() -> None:
    assert load_config_dict({}).effective_strategy_defaults().global_pruning is True
    cfg = load_config_dict({"agents": {"pruning_agent": {"global_pruning": False}}})
    assert cfg.effective_strategy_defaults().global_pruning is False


def test_mixed_precision_switch_turns_amp_off() -> None:
    assert load_config_dict({}).effective_finetune().amp is True
    cfg = load_config_dict({"hardware": {"gpu": {"mixed_precision": False}}})
    assert cfg.effective_finetune().amp is False


def test_custom_metrics_from_both_places_without_repeats() -> None:
    cfg = load_config_dict({
        "evaluation": {"custom_metrics": ["a", "b"]},
        "agents": {"evaluation_agent": {"custom_metrics": ["b", "c"]}},
    })
    assert cfg.custom_metrics() == ("a", "b", "c")


def test_cache_settings() -> None:
    cfg = load_config_dict({
        "precomputation": {"cache_dir": "/tmp/c", "model_analysis": {"cache_duration": 100}},
    })
    assert cfg.profile_cache() == CacheSettings(True, "/tmp/c", 100)
    off = load_config_dict({"agents": {"profiling_agent": {"enable_caching": False}}})
    assert off.profile_cache().enabled is False
    assert load_config_dict({"precomputation": {"enabled": False}}).profile_cache().enabled is False


def test_output_path_and_memory_limit() -> None:
    cfg = load_config_dict({
        "experiment": {"name": "run-1", "output_dir": "out"},
        "hardware": {"gpu": {"memory_limit": "1.5GiB"}},
    })
    assert cfg.output_path() == Path("out/run-1")
    assert cfg.hardware.gpu.memory_limit_bytes() == int(1.5 * 2**30)
    assert load_config_dict({}).hardware.gpu.memory_limit_bytes() is None
